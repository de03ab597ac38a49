"""SIGHUP reloads the whole configuration in place (README "Reload"): vhosts, nodes, limits and listeners change
while requests and connections in flight go on; a broken file changes nothing and the log names its line."""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import threading
import time

import pytest

from helpers import (HTTPHandler, LoadClient, RawConn, free_port, hello_app, http_request, port_accepts,
                     request_bytes, request_in_background)


def hup(gw, expect: str, timeout: float = 5.0) -> str:
    """SIGHUP to the gateway; waits for a log line matching ``expect`` written after the signal by every serving
    process (each worker applies the reload and logs it: README "Worker processes"), and returns the first."""
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGHUP)
    rx = re.compile(expect)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in gw.stderr()[offset:].splitlines() if rx.search(line)]
        if len(lines) >= gw.serving_count:
            return lines[0]
        time.sleep(0.02)
    raise AssertionError(f"no log line matching {expect!r} within {timeout}s after SIGHUP:\n{gw.stderr()[offset:]}")


def tenant(gw, name: str, node: str, extra: str = "") -> None:
    (gw.workdir / "sites.d" / f"{name}.ini").write_text(f"[blastbeat:{name}]\nnode = {node}\n{extra}")


def sites_gateway(make_gateway, options=None):
    gw = make_gateway(vhosts={"localhost": ["MAIN"]}, options={"include": "sites.d/*.ini", **(options or {})},
                      start=False)
    (gw.workdir / "sites.d").mkdir()
    return gw


def test_vhost_added_under_load(make_gateway, make_backend):
    """A tenant's file dropped into sites.d and SIGHUP while a client keeps requesting another vhost: the new
    vhost is served, the running client sees no error and keeps its connection."""
    gw = sites_gateway(make_gateway)
    tenant(gw, "a.test", "ALPHA")
    gw.start()
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"alpha")))
    assert http_request(gw.port, host="b.test").status == 404
    load = LoadClient(gw.port, "a.test")
    load.start()
    time.sleep(0.3)
    tenant(gw, "b.test", "BETA")
    line = hup(gw, r"SIGHUP: reloaded")
    assert "vhosts added: b.test" in line, line
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"beta")))
    assert http_request(gw.port, host="b.test").body == b"beta"
    time.sleep(0.3)
    load.finish()
    assert load.errors == [] and load.ok > 20, (load.ok, load.errors)


def test_vhost_removed_lets_its_request_in_flight_finish(make_gateway, make_backend):
    """b.test's file removed while one of its requests waits for the node: that request is answered 200, new
    ones get 404, and BETA can no longer connect (no vhost lists it)."""
    gw = sites_gateway(make_gateway)
    tenant(gw, "b.test", "BETA")
    gw.start()
    release = threading.Event()

    def slow(req, send):
        release.wait(5)
        hello_app(b"late but whole")(req, send)

    beta = make_backend(gw, "BETA", HTTPHandler(slow))
    thread, result = request_in_background(gw.port, host="b.test")
    beta.wait_message(b"uwsgi")
    (gw.workdir / "sites.d" / "b.test.ini").unlink()
    assert "vhosts removed: b.test" in hup(gw, r"SIGHUP: reloaded")
    assert http_request(gw.port, host="b.test").status == 404
    release.set()
    thread.join(5)
    assert "resp" in result, result
    assert result["resp"].status == 200 and result["resp"].body == b"late but whole"
    # A new connection claiming BETA is refused now.
    offset = len(gw.stderr())
    again = make_backend(gw, "BETA", HTTPHandler(hello_app(b"x")), ready=False)
    deadline = time.monotonic() + 5
    while 'claims identity "BETA", which no vhost lists' not in gw.stderr()[offset:]:
        assert time.monotonic() < deadline, gw.stderr()[offset:]
        time.sleep(0.05)
    again.stop()


def test_changed_limits_apply_to_new_requests(make_gateway, make_backend):
    gw = sites_gateway(make_gateway)
    tenant(gw, "a.test", "ALPHA", "max-body-size = 64k\n")
    gw.start()
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"ok")))
    upload = dict(method="POST", host="a.test", headers=[("Content-Length", "2048")], body=b"x" * 2048)
    assert http_request(gw.port, **upload).status == 200
    tenant(gw, "a.test", "ALPHA", "max-body-size = 1k\n")
    assert "vhosts changed: a.test" in hup(gw, r"SIGHUP: reloaded")
    assert http_request(gw.port, **upload).status == 413


def test_broken_reload_changes_nothing_and_names_the_line(make_gateway, make_backend):
    gw = sites_gateway(make_gateway)
    tenant(gw, "a.test", "ALPHA")
    gw.start()
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"alpha")))
    tenant(gw, "a.test", "ALPHA", "max-in-flight = many\n")
    tenant(gw, "c.test", "GAMMA")
    line = hup(gw, r"SIGHUP: reload failed")
    assert f"{gw.workdir}/sites.d/a.test.ini:3: max-in-flight:" in line, line
    assert "nothing changed" in line
    # Still the old configuration: a.test served, c.test unknown.
    assert http_request(gw.port, host="a.test").body == b"alpha"
    assert http_request(gw.port, host="c.test").status == 404
    # Fixed, the next reload applies both files.
    tenant(gw, "a.test", "ALPHA")
    assert "vhosts added: c.test" in hup(gw, r"SIGHUP: reloaded")


def test_restart_only_keys_refuse_the_reload(make_gateway, make_backend):
    gw = sites_gateway(make_gateway)
    gw.start()
    make_backend(gw, "MAIN", HTTPHandler(hello_app(b"main")))
    text = gw.config_path.read_text()
    gw.config_path.write_text(text.replace(gw.endpoint, f"tcp://127.0.0.1:{free_port()}"))
    line = hup(gw, r"SIGHUP: reload failed")
    assert "zmq: changed, but a reload cannot change" in line, line
    assert http_request(gw.port).body == b"main"


def test_listeners_opened_and_closed(make_gateway, make_backend):
    """A bind added to the main file opens on reload; one removed closes, while a connection it accepted
    finishes its request in flight."""
    second, third = free_port(), free_port()
    gw = sites_gateway(make_gateway)
    gw.extra_binds = [f"127.0.0.1:{second}"]
    gw.start()
    release = threading.Event()

    def app(req, send):
        if req.path == "/slow":
            release.wait(5)
        hello_app(b"main")(req, send)

    backend = make_backend(gw, "MAIN", HTTPHandler(app))
    assert http_request(second).body == b"main"
    with RawConn(second, timeout=5) as held:
        held.send(request_bytes("GET", "/slow", "localhost"))
        backend.wait_message(b"uwsgi", count=2)
        gw.extra_binds = [f"127.0.0.1:{third}"]
        gw.config_path.write_text(gw.config_text())
        line = hup(gw, r"SIGHUP: reloaded")
        assert f"listeners opened: bind 127.0.0.1:{third}" in line and "listeners closed: 1" in line, line
        assert not port_accepts(second)
        release.set()  # the node answers one request at a time: the held one first
        resp = held.read_response(timeout=5)
        assert resp.status == 200 and resp.body == b"main"
        # The listener is gone: its connection closes after that answer, and says so.
        assert resp.has_token("Connection", "close") and held.is_closed_by_peer(3)
    assert http_request(third).body == b"main"
    assert http_request(gw.port).body == b"main"


def test_node_added_to_a_vhost_gets_requests(make_gateway, make_backend):
    gw = sites_gateway(make_gateway)
    tenant(gw, "a.test", "ALPHA")
    gw.start()
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"alpha")))
    tenant(gw, "a.test", "ALPHA\nnode = ALPHA2")
    assert "vhosts changed: a.test" in hup(gw, r"SIGHUP: reloaded")
    make_backend(gw, "ALPHA2", HTTPHandler(hello_app(b"alpha2")))
    bodies = {http_request(gw.port, host="a.test").body for _ in range(20)}
    assert bodies == {b"alpha", b"alpha2"}, bodies


def test_no_change_is_said_and_counted_as_a_reload(make_gateway):
    gw = sites_gateway(make_gateway)
    gw.start()
    assert "no change in the configuration" in hup(gw, r"SIGHUP: reloaded")


def free_privileged_port() -> int:
    """A free port below 1024 on 127.0.0.1 (only root may bind it)."""
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below 1024")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the gateway must run as nobody")
def test_root_only_tenant_file_and_privileged_port_added_as_nobody(make_gateway, make_backend):
    """Running as nobody, a reload adds a tenant whose file is root-only (mode 600 in a mode 700 directory)
    with its own listener below 1024: the privileged parent reads the file and binds the port."""
    port = free_privileged_port()
    gw = make_gateway(vhosts={"localhost": ["MAIN"]}, options={"include": "private/*.ini"}, start=False)
    private = gw.workdir / "private"
    private.mkdir(mode=0o700)
    gw.start()
    with open(f"/proc/{gw.pid}/status") as f:
        assert next(line for line in f if line.startswith("Uid:")).split()[1] == str(pwd.getpwnam("nobody").pw_uid)
    (private / "a.test.ini").write_text(f"[blastbeat:a.test]\nnode = ALPHA\nbind = 127.0.0.1:{port}\n")
    os.chmod(private / "a.test.ini", 0o600)
    line = hup(gw, r"SIGHUP: reloaded")
    assert f"vhosts added: a.test; listeners opened: bind 127.0.0.1:{port}" in line, line
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"privileged")))
    assert http_request(port, host="a.test").body == b"privileged"
    # Removed again: the port closes.
    (private / "a.test.ini").unlink()
    assert "vhosts removed: a.test" in hup(gw, r"SIGHUP: reloaded")
    assert not port_accepts(port)


def test_parent_gone_the_gateway_keeps_serving_and_stops(make_gateway, make_backend):
    """Killing the privileged parent (SIGKILL) leaves no orphan: the serving process stops gracefully."""
    gw = make_gateway()
    if gw.pid == gw.proc.pid:
        pytest.skip("no privileged parent when not started as root")
    serving = gw.pid
    gw.proc.kill()
    gw.proc.wait(5)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{serving}") and time.monotonic() < deadline:
        with open(f"/proc/{serving}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                break
        time.sleep(0.05)
    assert not port_accepts(gw.port)
    gw.returncode = 0  # the parent was killed on purpose; the serving process stopped with it


def test_metrics_survive_reloads(make_gateway, make_backend):
    """Counters keep their values across reloads: a vhost keeps its series, a new one gets its own, a removed
    one's stay as they were, and a removed slot given to another vhost starts from zero."""
    from test_metrics import scrape
    gw = sites_gateway(make_gateway, options={"admin": f"127.0.0.1:{free_port()}"})
    tenant(gw, "a.test", "ALPHA")
    tenant(gw, "b.test", "BETA")
    gw.start()
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"alpha")))
    for _ in range(3):
        assert http_request(gw.port, host="a.test").status == 200
    assert http_request(gw.port, host="b.test").status == 503  # BETA never connects (after the start-up wait)

    def responses(vhost: str) -> float:
        return scrape(gw).value("blastbeat_responses_total", vhost=vhost, code="2xx")

    assert responses("a.test") == 3
    (gw.workdir / "sites.d" / "b.test.ini").unlink()
    tenant(gw, "c.test", "GAMMA")
    hup(gw, r"SIGHUP: reloaded")
    assert responses("a.test") == 3
    make_backend(gw, "GAMMA", HTTPHandler(hello_app(b"gamma")))
    assert http_request(gw.port, host="c.test").body == b"gamma"
    assert responses("c.test") == 1
    metrics = scrape(gw)
    assert metrics.value("blastbeat_config_reloads_total") == 1
    assert metrics.value("blastbeat_config_reload_failures_total") == 0
    # b.test (removed, idle) gives its slot to d.test, which starts from zero: b.test's 503 is not d.test's.
    assert scrape(gw).value("blastbeat_responses_total", vhost="b.test", code="5xx") == 1
    tenant(gw, "d.test", "DELTA")
    assert "vhosts added: d.test" in hup(gw, r"SIGHUP: reloaded")
    after = scrape(gw)
    assert after.value("blastbeat_responses_total", vhost="d.test", code="5xx") == 0
    assert not after.has("blastbeat_responses_total", vhost="b.test", code="5xx")
    assert after.value("blastbeat_responses_total", vhost="a.test", code="2xx") == 3
