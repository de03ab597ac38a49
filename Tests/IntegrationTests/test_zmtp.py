"""The gateway's own ZMTP 3.1 ROUTER (``zmq-engine = native``, the default) against peers that break the
protocol, peers libzmq would never be (a hand-written ZMTP client), and the libzmq features backends rely on:
heartbeats, identities, ipc:// endpoints, large messages. The rest of the suite runs the native engine with
pyzmq backends; ``make test`` repeats part of it with ``zmq-engine = libzmq``."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
import zmq
import zmq.utils.monitor

from zmtp_wire import closed_within, command, frame, greeting
from helpers import (Backend, HTTPHandler, blastbeat_bin, echo_app, free_port, hello_app, http_request, rss_bytes,
                     response_head, stopped_totals, wait_until)

ENGINE_OVERRIDE = os.environ.get("BLASTBEAT_ZMQ_ENGINE", "native")
pytestmark = pytest.mark.skipif(ENGINE_OVERRIDE != "native", reason="tests of the native ZMTP engine")


def ready(socket_type: bytes = b"DEALER", identity: bytes | None = None) -> bytes:
    props = bytes([11]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    if identity is not None:
        props += bytes([8]) + b"Identity" + struct.pack(">I", len(identity)) + identity
    return command(b"READY", props)


class RawPeer:
    """A ZMTP peer written by hand over a plain TCP socket, to send what libzmq never would."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.commands: list[tuple[bytes, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the gateway")
            self.buf += chunk

    def _take(self, n: int) -> bytes:
        self._need(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handshake(self, identity: bytes) -> None:
        self.send(greeting() + ready(identity=identity))
        theirs = self._take(64)
        assert theirs[0] == 0xFF and theirs[9] == 0x7F and theirs[10] == 3 and theirs[12:16] == b"NULL"
        flags, body = self.read_frame()
        assert flags & 4, "expected the gateway's READY command"
        assert body[1:6] == b"READY" and b"Socket-Type\x00\x00\x00\x06ROUTER" in body

    def read_frame(self) -> tuple[int, bytes]:
        flags = self._take(1)[0]
        size = struct.unpack(">Q", self._take(8))[0] if flags & 2 else self._take(1)[0]
        return flags, self._take(size)

    def read_message(self) -> list[bytes]:
        """Frames of the next message; commands on the way are recorded in ``commands``."""
        frames: list[bytes] = []
        while True:
            flags, body = self.read_frame()
            if flags & 4:
                self.commands.append((body[1:1 + body[0]], body[1 + body[0]:]))
                continue
            frames.append(body)
            if not flags & 1:
                return frames

    def read_session_message(self) -> list[bytes]:
        """The next message that is not a ``ping``, answering every ping before it: with several workers each
        one pings the node through the worker holding this connection (README "Worker processes"), so a
        ping may come before a request whenever it is due."""
        while True:
            frames = self.read_message()
            if frames == [b"", b"ping", b""]:
                self.send(frame(b"", more=True) + frame(b"pong", more=True) + frame(b""))
                continue
            return frames

    def read_until_closed(self, timeout: float) -> bool:
        """True when the gateway closes the connection within ``timeout`` (whatever it sent first)."""
        return closed_within(self.sock, timeout)


def gateway_log_has(gw, text: str, timeout: float = 3.0) -> None:
    wait_until(lambda: text in gw.stderr(), timeout, what=f"{text!r} in the gateway log")


def test_raw_peer_is_served_with_a_ping_in_the_middle_of_a_message(make_gateway):
    """A hand-written DEALER: the gateway's greeting, READY, ping and uwsgi messages are well-formed, and a
    PING command arriving between the frames of a response (libzmq sends heartbeats whenever they are due)
    is answered with a PONG carrying its context while the message around it still arrives whole."""
    gw = make_gateway()
    peer = RawPeer(gw.zmq_port)
    try:
        peer.handshake(b"NODE1")
        assert peer.read_message() == [b"", b"ping", b""]
        peer.send(frame(b"", more=True) + frame(b"pong", more=True) + frame(b""))
        time.sleep(0.2)
        result: dict = {}
        client = threading.Thread(target=lambda: result.update(r=http_request(gw.port, target="/raw")))
        client.start()
        while True:
            sid, mtype, env = peer.read_message()
            if mtype == b"uwsgi":
                break
            assert mtype == b"ping"
            peer.send(frame(sid, more=True) + frame(b"pong", more=True) + frame(b""))
        assert len(sid) == 16 and b"PATH_INFO" in env and b"/raw" in env
        head = response_head(200, [("Content-Length", "5")]) + b"hello"
        peer.send(frame(sid, more=True) + command(b"PING", b"\x00\x0aCTX") + frame(b"headers", more=True) + frame(head))
        client.join(10)
        assert result["r"].status == 200 and result["r"].body == b"hello"
        deadline = time.monotonic() + 3
        while (b"PONG", b"CTX") not in peer.commands and time.monotonic() < deadline:
            peer.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                peer.read_message()
            except socket.timeout:
                break
        assert (b"PONG", b"CTX") in peer.commands
    finally:
        peer.close()


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a ZMTP greeting"),
    (greeting(major=2, minor=0), "ZMTP version 2"),
    (greeting(mechanism=b"CURVE"), "security mechanism \"CURVE\""),
    (greeting(mechanism=b"PLAIN"), "security mechanism \"PLAIN\""),
    (greeting() + ready(socket_type=b"PUB"), "socket type \"PUB\""),
    (greeting() + command(b"HELLO"), "\"HELLO\" instead of READY"),
    (greeting() + frame(b"data"), "a message before READY"),
    (greeting() + ready(identity=b"NODE1#raw") + bytes([0x08, 0]), "invalid frame flags"),
    (greeting() + ready(identity=b"NODE1#raw") + bytes([0x02]) + struct.pack(">Q", 1 << 40), "a message larger than"),
    (greeting() + ready(identity=b"NODE1#raw") + frame(b"x" * 300, more=True) + bytes([0x02]) + struct.pack(">Q", 3 << 20),
     "a message larger than"),
])
def test_protocol_violations_close_the_connection_and_are_counted(make_gateway, make_backend, data, reason):
    gw = make_gateway(options={"max-output-buffer": "1m", "websocket-max-message": "1m"})
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"still here")))
    peer = RawPeer(gw.zmq_port)
    try:
        peer.send(data)
        assert peer.read_until_closed(3.0), "the gateway kept a connection that broke ZMTP"
    finally:
        peer.close()
    gateway_log_has(gw, reason)
    # The node connected beside the broken peer is untouched.
    r = http_request(gw.port)
    assert r.status == 200 and r.body == b"still here"
    gw.stop()
    assert stopped_totals(gw.stderr())["backend connections broke ZMTP"] == 1, gw.stderr()[-2000:]


def test_node_whose_connection_drops_is_dead_at_once_and_back_on_reconnect(make_gateway, make_backend):
    """The native engine sees a backend's connection close: the client waiting on it gets 502 at once (not
    after ping-timeout), and a process that connects again under the node's name is pinged at once, so it
    serves without waiting for ping-freq. Pings every 5 s, dead after 20 s: both must happen far sooner."""
    gw = make_gateway(options={"ping-freq": "5", "ping-timeout": "20"})
    peer = RawPeer(gw.zmq_port)
    result: dict = {}
    try:
        peer.handshake(b"NODE1")
        assert peer.read_message() == [b"", b"ping", b""]
        peer.send(frame(b"", more=True) + frame(b"pong", more=True) + frame(b""))
        time.sleep(0.2)
        client = threading.Thread(target=lambda: result.update(r=http_request(gw.port, target="/lost")))
        client.start()
        _, mtype, env = peer.read_session_message()
        assert mtype == b"uwsgi" and b"/lost" in env
    finally:
        peer.close()  # the process dies with the request in hand
    started = time.monotonic()
    client.join(10)
    assert result["r"].status == 502
    assert time.monotonic() - started < 1.0, "the client waited for ping-timeout"
    gateway_log_has(gw, "node NODE1 lost its connection: closed by the backend; marked dead")
    assert http_request(gw.port).status == 503
    started = time.monotonic()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"back")), ready=False)
    wait_until(lambda: http_request(gw.port).status == 200, 2.0, what="the reconnected node to serve")
    assert time.monotonic() - started < 2.0


def test_silent_connection_is_closed_after_the_handshake_timeout(make_gateway):
    gw = make_gateway()
    peer = RawPeer(gw.zmq_port, timeout=15)
    try:
        start = time.monotonic()
        assert peer.read_until_closed(14.0)
        elapsed = time.monotonic() - start
        assert 9.0 <= elapsed <= 12.5, elapsed
    finally:
        peer.close()
    gateway_log_has(gw, "no ZMTP handshake within 10 s")


def test_libzmq_heartbeats_are_answered(make_gateway):
    """A DEALER with ZMQ_HEARTBEAT_IVL/TIMEOUT drops a connection that sends nothing back within the timeout:
    the gateway must answer its PING commands (with ping-freq far above the timeout, pongs are all it gets)."""
    gw = make_gateway(options={"ping-freq": "5", "ping-timeout": "20"})
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"NODE1")
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 100)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    try:
        sock.connect(gw.endpoint)
        events = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if monitor.poll(50):
                events.append(zmq.utils.monitor.recv_monitor_message(monitor)["event"])
        assert events == [zmq.EVENT_HANDSHAKE_SUCCEEDED], events
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()


@pytest.mark.parametrize("host", ["[::1]", "localhost", "*"])
def test_tcp_endpoint_hosts(make_gateway, make_backend, host):
    """IPv6, the one name the native engine resolves, and the wildcard: a backend reaches the ROUTER on each."""
    gw = make_gateway(start=False)
    gw.endpoint = f"tcp://{host}:{gw.zmq_port}"
    gw.start()
    connect_host = "127.0.0.1" if host == "*" else host
    make_backend(f"tcp://{connect_host}:{gw.zmq_port}", "NODE1", handler=HTTPHandler(hello_app(host.encode())))
    r = http_request(gw.port)
    assert r.status == 200 and r.body == host.encode()


@pytest.fixture
def open_dir():
    """A directory the gateway can still write to after dropping privileges to nobody (tmp_path is 0700)."""
    path = tempfile.mkdtemp(prefix="bb-ipc-", dir="/tmp")
    os.chmod(path, 0o777)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def serve_over_ipc(make_gateway, make_backend, path: pathlib.Path, answer: bytes, options=None):
    """A gateway bound to ipc://PATH with one node answering ``answer``, checked with one request."""
    gw = make_gateway(start=False, options=options)
    gw.endpoint = f"ipc://{path}"
    gw.start()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(answer)))
    r = http_request(gw.port)
    assert r.status == 200 and r.body == answer
    assert path.is_socket()
    return gw


def test_ipc_endpoint(make_gateway, make_backend, open_dir):
    path = open_dir / "gw.sock"
    gw = serve_over_ipc(make_gateway, make_backend, path, b"over ipc")
    gw.stop()
    assert not path.exists(), "the socket file is removed at shutdown"
    assert "socket file stays" not in gw.stderr()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs the gateway to drop privileges")
def test_ipc_socket_file_that_cannot_be_removed_is_reported(make_gateway, make_backend, tmp_path):
    """One serving process, as nobody, cannot remove the file from root's directory (with several workers the
    root parent removes it: test_worker_lifecycle.py)."""
    path = tmp_path / "gw.sock"
    gw = serve_over_ipc(make_gateway, make_backend, path, b"over ipc", options={"workers": 1})
    gw.stop()
    assert path.is_socket()
    assert f"the ROUTER's socket file stays (the next start replaces it): unlink {path}: Permission denied" in gw.stderr()


def test_stale_ipc_socket_file_is_replaced(make_gateway, make_backend, tmp_path):
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    serve_over_ipc(make_gateway, make_backend, path, b"fresh")


def test_large_messages_both_ways_arrive_byte_exact(make_gateway, make_backend):
    """5 MiB up and 5 MiB down: messages that span many reads and writes of the gateway's ZMTP buffers."""
    gw = make_gateway(options={"max-body-size": "8m"})
    make_backend(gw, "NODE1", handler=HTTPHandler(echo_app))
    payload = os.urandom(5 << 20)
    r = http_request(gw.port, method="POST", body=payload, headers=[("Content-Length", str(len(payload)))], timeout=30)
    assert r.status == 200 and r.body == payload


def test_new_connection_with_the_same_identity_takes_over(make_gateway, make_backend):
    """A connection that went silent without closing (a hung process, a host that vanished) holds NODE1;
    the restarted process connecting as NODE1 takes over at once, and the request that was waiting on
    the silent connection is sent again to the new one (a GET is safe to repeat) instead of waiting
    for backend-timeout. The gateway warns that two processes connect as NODE1, once."""
    gw = make_gateway(options={"backend-timeout": "30"})
    silent = RawPeer(gw.zmq_port)
    result: dict = {}
    try:
        silent.handshake(b"NODE1")
        assert silent.read_message() == [b"", b"ping", b""]
        silent.send(frame(b"", more=True) + frame(b"pong", more=True) + frame(b""))
        waiting = threading.Thread(target=lambda: result.setdefault("r", http_request(gw.port, target="/held", timeout=10)))
        started = time.monotonic()
        waiting.start()
        _, mtype, _ = silent.read_session_message()
        assert mtype == b"uwsgi"
        second = make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"second")))
        waiting.join(10)
        assert result["r"].status == 200 and result["r"].body == b"second"
        assert time.monotonic() - started < 5, "the held request waited for backend-timeout"
        assert http_request(gw.port).body == b"second"
        assert [m for m in second.messages(b"uwsgi")]
        assert silent.read_until_closed(3.0), "the replaced connection was kept"
    finally:
        silent.close()
    gateway_log_has(gw, "two processes connect as \"NODE1\"")
    assert gw.stderr().count("two processes connect as") == 1


def test_an_http2_stream_on_a_replaced_connection_is_sent_again_at_once(make_gateway, make_backend):
    """The same take-over with the request on an HTTP/2 stream: both transports' sessions are told the same
    way (Gateway+NodeLoss.swift), so the stream is sent again to the new connection at once, and the client
    connection serves its next stream from it."""
    from h2_helpers import H2Conn
    gw = make_gateway(options={"backend-timeout": "30"})
    silent = RawPeer(gw.zmq_port)
    try:
        silent.handshake(b"NODE1")
        assert silent.read_message() == [b"", b"ping", b""]
        silent.send(frame(b"", more=True) + frame(b"pong", more=True) + frame(b""))
        with H2Conn(gw.port) as c:
            held = c.request("GET", "/held")
            started = time.monotonic()
            _, mtype, _ = silent.read_session_message()
            assert mtype == b"uwsgi"
            make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"second")))
            r = c.response(held, timeout=10)
            assert r.status == 200 and bytes(r.body) == b"second"
            assert time.monotonic() - started < 5, "the held stream waited for backend-timeout"
            assert bytes(c.get("/next").body) == b"second"
        assert silent.read_until_closed(3.0), "the replaced connection was kept"
    finally:
        silent.close()


def test_anonymous_dealer_is_not_a_node(make_gateway, make_backend):
    """A DEALER without an identity could serve no vhost: it is refused at the handshake (logged with its
    address), and the request still goes to the real node."""
    gw = make_gateway()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"real")))
    anon = Backend(gw.endpoint, b"").start()
    try:
        time.sleep(0.3)
        anon.send(b"\0" * 16, b"headers", b"HTTP/1.1 200 OK\r\n\r\n")
        time.sleep(0.3)
        assert http_request(gw.port).body == b"real"
        assert anon.received == []  # never pinged: not a node
    finally:
        anon.stop()
    gateway_log_has(gw, "has no identity")


def test_unlisted_identity_is_refused_at_the_handshake(make_gateway, make_backend):
    """An identity no vhost lists would only hold one of the 4,096 connection slots: it is refused when its
    handshake ends, logged once with its address (not once per reconnect), and the log line escapes it."""
    gw = make_gateway()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"real")))
    forged = b"PUB\n2099-01-01T00:00:00+0000 blastbeat INFO INJECTED\x1b[31m"
    peer = RawPeer(gw.zmq_port)
    try:
        peer.handshake(forged)
        assert peer.read_until_closed(3.0), "the gateway kept a connection for an identity no vhost lists"
    finally:
        peer.close()
    for _ in range(3):  # reconnect storms log once
        again = RawPeer(gw.zmq_port)
        again.handshake(forged)
        assert again.read_until_closed(3.0)
        again.close()
    assert http_request(gw.port).body == b"real"
    gw.stop()
    log = gw.stderr()
    assert "INJECTED\\x1b[31m" in log and "\nINJECTED" not in log and "\x1b" not in log
    # Once per worker at most: each worker remembers the identities it refused (README "Worker processes").
    assert 1 <= log.count("which no vhost lists") <= gw.serving_count, log[-2000:]
    assert stopped_totals(log)["backend connections refused"] == 4, log[-2000:]


@pytest.mark.parametrize("endpoint, ok", [
    ("tcp://eth0:5000", False),
    ("inproc://gateway", False),
    ("ipc:///tmp/blastbeat-check.sock", True),
    ("tcp://localhost:5000", True),
])
def test_check_accepts_only_native_endpoints_without_zmq_engine_libzmq(tmp_path, endpoint, ok):
    for engine in (None, "libzmq"):
        ini = tmp_path / "site.ini"
        ini.write_text(f"[blastbeat]\nbind = 127.0.0.1:{free_port()}\nzmq = {endpoint}\n"
                       + (f"zmq-engine = {engine}\n" if engine else "") + "[blastbeat:localhost]\nnode = a\n")
        r = subprocess.run([blastbeat_bin(), "--check", str(ini)], capture_output=True, text=True, timeout=20)
        if ok or engine == "libzmq":
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode != 0
            assert f"{ini}:3: zmq: expected tcp://ADDRESS:PORT" in r.stderr and "zmq-engine = libzmq" in r.stderr


def test_router_that_cannot_bind_is_a_startup_error(tmp_path):
    """Port taken, or a socket directory that does not exist: exit 1 with the file, the key and the reason
    (not a crash, and no listener left behind)."""
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        for endpoint, reason in [(f"tcp://127.0.0.1:{port}", f"bind(127.0.0.1:{port}): Address already in use"),
                                 (f"ipc://{tmp_path}/missing/gw.sock",
                                  f"bind({tmp_path}/missing/gw.sock): No such file or directory")]:
            ini = tmp_path / "site.ini"
            ini.write_text(f"[blastbeat]\nbind = 127.0.0.1:{free_port()}\nzmq = {endpoint}\n"
                           "[blastbeat:localhost]\nnode = a\n")
            r = subprocess.run([blastbeat_bin(), str(ini)], capture_output=True, text=True, timeout=20)
            assert r.returncode == 1, r.stderr
            assert r.stderr.strip() == f"blastbeat: {ini}: zmq: {reason}"
    finally:
        taken.close()


def test_libzmq_engine_serves_requests(make_gateway, make_backend):
    gw = make_gateway(options={"zmq-engine": "libzmq"})
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"via libzmq")))
    r = http_request(gw.port)
    assert r.status == 200 and r.body == b"via libzmq"
    assert "(libzmq ZMTP)" in gw.stderr()


def test_huge_frames_before_the_handshake_cost_no_memory(make_gateway, make_backend):
    """Eight peers each announce a 64 MB READY after a valid greeting and start sending it: before the
    handshake no frame over 4 KiB is buffered, so each is cut off at once and the gateway's memory stays
    flat (it used to buffer every byte: 14 MB to 490 MB for the 10 s handshake timeout)."""
    gw = make_gateway()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"still here")))
    # Every serving process: the kernel hands each peer to any worker.
    pids = gw.worker_pids() or [gw.pid]
    before = {pid: rss_bytes(pid) for pid in pids}
    announce = greeting() + b"\x06" + (64_000_000).to_bytes(8, "big") + b"\x05READY"
    chunk = bytes(1 << 20)
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", gw.zmq_port), timeout=5)
        try:
            s.sendall(announce)
            sent = 0
            deadline = time.monotonic() + 5
            while sent < 16 << 20 and time.monotonic() < deadline:
                try:
                    sent += s.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
            s.settimeout(2)
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        finally:
            s.close()
    grown = sum(rss_bytes(pid) - before[pid] for pid in pids)
    assert grown < 8 << 20, f"the gateway's workers grew by {grown >> 20} MiB"
    assert http_request(gw.port).body == b"still here"
    gw.stop()
    assert stopped_totals(gw.stderr())["backend connections broke ZMTP"] == 8, gw.stderr()[-2000:]


def test_unlisted_identities_and_stalled_handshakes_cannot_take_the_nodes_places(make_gateway, make_backend):
    """Peers claiming identities no vhost lists are refused at once, so they hold no place; peers that never
    finish their handshake fill a pool of their own (1,024, then refused with a warning) and cannot take
    the places of admitted backends, which keep serving throughout; once they are gone a new instance is
    admitted at once."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    gw = make_gateway()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"real")))
    for i in range(200):
        peer = RawPeer(gw.zmq_port)
        peer.send(greeting() + ready(identity=b"squatter-%d" % i))
        assert peer.read_until_closed(3.0)
        peer.close()
    stalled = []
    try:
        # The pool is each worker's own (README "Worker processes"): with N workers, 1,024 × N + 6 stalled
        # connections fill at least one worker's pool, however the kernel spreads them.
        for _ in range(1024 * gw.serving_count + 6):
            stalled.append(socket.create_connection(("127.0.0.1", gw.zmq_port), timeout=5))
        gateway_log_has(gw, "1024 backend connections are in their handshake", timeout=5)
        assert http_request(gw.port).body == b"real"  # the admitted node is untouched
    finally:
        for s in stalled:
            s.close()
    # The stalled ones gone, a new instance of the node is admitted at once.
    second = make_backend(gw, "NODE1#2", handler=HTTPHandler(hello_app(b"second")))
    wait_until(lambda: any(http_request(gw.port).body == b"second" for _ in range(4)), 3, what="the new instance")
    gw.stop()
    assert stopped_totals(gw.stderr())["backend connections refused"] == 200, gw.stderr()[-2000:]
