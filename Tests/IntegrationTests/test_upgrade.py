"""SIGUSR2, zero-downtime upgrade (README "Upgrade"): the binary is started again on the same sockets; the old
process stops once the new one serves, finishing what it has in flight; backends move over; no client request
fails. Also the start-up wait: right after a start, a request waits for its vhost's node to connect."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from helpers import (HTTPHandler, LoadClient, RawConn, hello_app, http_request, port_accepts, request_bytes,
                     request_in_background, socket_inodes, tcp_inodes, wait_until)


def wait_log(gw, pattern: str, timeout: float = 10.0, after: int = 0) -> re.Match:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = rx.search(gw.stderr()[after:])
        if match:
            return match
        time.sleep(0.02)
    raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:\n{gw.stderr()[after:]}")


def serving_pid_on(port: int) -> int:
    """The pid of the process whose listening socket holds ``port`` (the serving one)."""
    listening = tcp_inodes(port, "0A")
    assert listening, f"nothing listens on {port}"
    pids = [int(pid) for pid in filter(str.isdigit, os.listdir("/proc")) if socket_inodes(int(pid)) & listening]
    # The privileged parent keeps a copy of the socket but serves nothing: the serving process is its child.
    children = [p for p in pids if any(str(p) in open(f"/proc/{q}/task/{q}/children").read().split() for q in pids
                                       if os.path.exists(f"/proc/{q}/task/{q}/children"))]
    return (children or pids)[0]


class Upgraded:
    """Stops the processes an upgrade started (they are not the test's Gateway object's)."""

    def __init__(self):
        self.pids: list[int] = []

    def stop(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for pid in self.pids:
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG) != (0, 0):
                        break
                except ChildProcessError:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().split(") ")[1].startswith("Z"):
                            break
                time.sleep(0.05)


@pytest.fixture
def upgraded():
    started = Upgraded()
    yield started
    started.stop()


def upgrade(gw, upgraded: Upgraded) -> int:
    """SIGUSR2 and the wait until the old process has exited; returns the new process's pid."""
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGUSR2)
    new = int(wait_log(gw, r"SIGUSR2: started \S+ as pid (\d+)", after=offset).group(1))
    upgraded.pids.append(new)
    wait_log(gw, rf"SIGUSR2: pid {new} serves", after=offset)
    assert gw.proc.wait(15) == 0, "the old gateway exits 0 once its requests are done"
    gw.returncode = 0
    return new


@pytest.mark.parametrize("parent", [True, False], ids=["privileged-parent", "single-process"])
def test_upgrade_under_load_fails_no_request(make_gateway, make_backend, upgraded, parent):
    """Three keep-alive clients and one opening a connection per request keep running across the upgrade: no
    request fails, and afterwards another process serves the port (with the same backend, which moved)."""
    if parent and os.geteuid() != 0:
        pytest.skip("the privileged parent needs root")
    options = {} if parent else {"uid": "root", "gid": "root"}  # uid = root: no parent, one process
    gw = make_gateway(options=options)
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"served")))
    before = serving_pid_on(gw.port)
    loads = [LoadClient(gw.port, "localhost", source=f"127.0.0.{n}") for n in (2, 3, 4)]
    loads.append(LoadClient(gw.port, "localhost", source="127.0.0.5", keep_alive=False))
    for load in loads:
        load.start()
    time.sleep(0.5)
    upgrade(gw, upgraded)
    time.sleep(1.0)
    for load in loads:
        load.finish()
    after = serving_pid_on(gw.port)
    assert after != before, "the new process serves the port"
    for load in loads:
        assert load.errors == [] and load.ok > 10, (load.source, load.ok, load.resent, load.errors)
    assert http_request(gw.port).body == b"served"


def test_request_in_flight_finishes_on_the_old_process(make_gateway, make_backend, upgraded):
    gw = make_gateway()
    release = threading.Event()

    def app(req, send):
        if req.path == "/slow":
            release.wait(5)
        hello_app(b"whole")(req, send)

    backend = make_backend(gw, "NODE1", HTTPHandler(app))
    thread, result = request_in_background(gw.port, "/slow")
    backend.wait_message(b"uwsgi")
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGUSR2)
    new = int(wait_log(gw, r"SIGUSR2: started \S+ as pid (\d+)", after=offset).group(1))
    upgraded.pids.append(new)
    wait_log(gw, rf"SIGUSR2: pid {new} serves", after=offset)
    assert gw.proc.poll() is None, "the old process waits for its request in flight"
    release.set()
    thread.join(5)
    assert result["resp"].status == 200 and result["resp"].body == b"whole"
    assert gw.proc.wait(10) == 0
    gw.returncode = 0
    # The backend moved over to the new process.
    assert http_request(gw.port, target="/after").body == b"whole"


def test_new_binary_that_cannot_start_leaves_the_old_one_serving(make_gateway, make_backend):
    gw = make_gateway()
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"still here")))
    gw.config_path.write_text(gw.config_text() + "this line is not valid\n")
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGUSR2)
    wait_log(gw, r"SIGUSR2: upgrade abandoned: the new process exited( with status 1)? before serving; still serving",
             after=offset)
    assert "expected key = value" in gw.stderr()[offset:]
    assert http_request(gw.port).body == b"still here"


def test_libzmq_engine_refuses_the_upgrade(make_gateway, make_backend):
    gw = make_gateway(options={"zmq-engine": "libzmq"})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"libzmq")))
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGUSR2)
    wait_log(gw, r"only the native engine can \(zmq-engine = libzmq: restart instead\); still serving", after=offset)
    assert http_request(gw.port).body == b"libzmq"


# ----------------------------------------------------------------------------------------------------------------
# The start-up wait


def test_request_before_the_backend_connects_waits_for_it(make_gateway, make_backend):
    """Right after the start (within ping-timeout) a request whose node is not connected yet is held, with its
    body, and answered once the node connects."""
    gw = make_gateway(options={"ping-timeout": "4", "ping-freq": "1"})
    thread, result = request_in_background(gw.port, "/early")
    with RawConn(gw.port, timeout=10) as upload:
        upload.send(request_bytes("POST", "/upload", "localhost", [("Content-Length", "5")], b"hello"))
        time.sleep(0.5)
        assert thread.is_alive(), "the request waits instead of getting 503"
        backend = make_backend(gw, "NODE1", HTTPHandler(hello_app(b"late node")))
        thread.join(5)
        assert result["resp"].status == 200 and result["resp"].body == b"late node"
        assert upload.read_response(timeout=5).status == 200
    bodies = [m.body for m in backend.messages(b"body") if m.body]
    assert bodies == [b"hello"]


def test_after_the_start_up_wait_no_node_is_503_at_once(make_gateway):
    gw = make_gateway(options={"ping-timeout": "1", "ping-freq": "0.5"})
    started = time.monotonic()
    assert http_request(gw.port).status == 503  # waited for the end of the start-up wait
    assert time.monotonic() - started < 3
    time.sleep(0.2)
    started = time.monotonic()
    assert http_request(gw.port).status == 503
    assert time.monotonic() - started < 0.5


def test_a_wait_for_a_node_ends_at_the_backend_timeout_with_503(make_gateway):
    """The start-up wait (ping-timeout, here 10 s) is bounded by the request's backend-timeout (1 s) too: no node
    took the request, so 503, not 504, over HTTP/1.1 and HTTP/2 alike, and the connection serves on."""
    from h2_helpers import H2Conn
    gw = make_gateway(options={"ping-timeout": "10", "ping-freq": "1", "backend-timeout": "1"})
    with RawConn(gw.port, timeout=10) as conn:
        started = time.monotonic()
        conn.send(request_bytes("GET", "/early", "localhost"))
        assert conn.read_response(timeout=5).status == 503
        assert 0.9 <= time.monotonic() - started < 3
    with H2Conn(gw.port, timeout=10) as c:
        started = time.monotonic()
        r = c.response(c.request("GET", "/early-h2"), timeout=5)
        assert r.status == 503
        assert 0.9 <= time.monotonic() - started < 3.5


def test_websockets_are_closed_with_1001_and_reconnect_to_the_new_process(make_gateway, make_backend, upgraded):
    from ws_helpers import OP_TEXT, RawWS, ws_echo_handler
    gw = make_gateway(vhosts={"localhost": {"nodes": ["ws"], "default": True}})
    make_backend(gw, "ws", handler=ws_echo_handler)
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_text("before")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"before")
        offset = len(gw.stderr())
        gw.proc.send_signal(signal.SIGUSR2)
        new = int(wait_log(gw, r"SIGUSR2: started \S+ as pid (\d+)", after=offset).group(1))
        upgraded.pids.append(new)
        assert c.recv_close(10).close_code == 1001
        c.send_close(1001)
    assert gw.proc.wait(10) == 0
    gw.returncode = 0
    # A WebSocket handshake does not wait for the node (README "Upgrade"): until the backend has moved over
    # it gets 503 with Retry-After, and a client reconnecting as browsers' WebSocket code does gets through.
    deadline = time.monotonic() + 5
    while True:
        with RawWS(gw.port) as again:
            try:
                again.handshake()
            except AssertionError as e:
                assert "503 Service Unavailable" in str(e) and time.monotonic() < deadline, e
                time.sleep(0.1)
                continue
            again.send_text("after")
            assert again.recv_message(timeout=5) == (OP_TEXT, b"after")
            break


def test_http2_stream_before_the_backend_connects_waits_for_it(make_gateway, make_backend):
    """An HTTP/2 stream waits for its node right after the start like an HTTP/1.1 request (README "Upgrade"),
    so h2 clients see no 503 while the backends move over."""
    from h2_helpers import H2Conn
    gw = make_gateway(options={"ping-timeout": "4", "ping-freq": "1"})
    with H2Conn(gw.port, timeout=10) as c:
        sid = c.request("GET", "/early-h2")
        time.sleep(0.5)
        make_backend(gw, "NODE1", HTTPHandler(hello_app(b"late node, h2")))
        r = c.response(sid, timeout=5)
        assert r.status == 200 and bytes(r.body) == b"late node, h2"
