"""Graceful shutdown: SIGTERM lets in-flight responses complete, then the process exits 0."""

from __future__ import annotations

import signal
import time

from helpers import HTTPHandler, RawConn, Request, request_bytes, request_in_background, respond


def test_sigterm_lets_slow_request_complete(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"shutdown-timeout": "5"})
    backend = None
    body = b"finished after shutdown began " * 1000

    def app(req: Request, send):
        backend.call_later(1.5, lambda: respond(send, req.sid, body))

    backend = make_backend(gw, "NODE1", HTTPHandler(app))
    t, result = request_in_background(gw.port, "/slow")
    backend.wait_message(b"uwsgi", timeout=5)
    gw.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.3)
    assert gw.running(), "the gateway must wait for the in-flight request"
    t.join(10)
    assert "error" not in result, result.get("error")
    resp = result["resp"]
    assert resp.status == 200 and resp.body == body
    gw.proc.wait(7)
    assert gw.proc.returncode == 0
    assert time.monotonic() - signalled < 5 + 1.5


def test_sigterm_idle_exits_promptly(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"shutdown-timeout": "5"})
    make_backend(gw, "NODE1", HTTPHandler(lambda req, send: respond(send, req.sid, b"ok")))
    started = time.monotonic()
    assert gw.stop() == 0
    assert time.monotonic() - started < 2.0, "an idle gateway exits at once on SIGTERM"


def test_sigterm_with_idle_keep_alive_connection(make_gateway, make_backend):
    """An idle keep-alive connection does not hold the shutdown until keepalive-timeout."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"shutdown-timeout": "5", "keepalive-timeout": "30"})
    make_backend(gw, "NODE1", HTTPHandler(lambda req, send: respond(send, req.sid, b"ok")))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        assert c.read_response().status == 200
        started = time.monotonic()
        assert gw.stop() == 0
        assert time.monotonic() - started < 5 + 1.5
        assert c.is_closed_by_peer(1)
