"""Errors the gateway answers itself: 503 (no live node), 504 (slow node), 404 (unknown Host), 502 (invalid
`headers`); the default vhost; forged and malformed backend messages."""

from __future__ import annotations

import time

from helpers import (HTTPHandler, RawConn, Request, hello_app, http_request, request_bytes, respond,
                     response_head)


def assert_gateway_error(resp, status_line: str) -> None:
    assert resp.status_line == status_line, resp.raw
    assert resp.has_token("Connection", "close"), f"error responses carry Connection: close: {resp.headers!r}"


def test_no_backend_gives_503_fast_with_retry_after(make_gateway):
    """Once the start-up wait is over (ping-timeout after the start: test_upgrade.py), no node means 503 at once."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"ping-timeout": "1", "ping-freq": "0.5"})
    time.sleep(1.1)
    with RawConn(gw.port) as c:
        started = time.monotonic()
        c.send(request_bytes("GET", "/", "localhost"))
        resp = c.read_response(timeout=5)
        elapsed = time.monotonic() - started
        assert_gateway_error(resp, "HTTP/1.1 503 Service Unavailable")
        assert elapsed < 1.0, f"503 took {elapsed:.2f}s"
        retry_after = resp.header("Retry-After")
        assert retry_after is not None and retry_after.strip().isdigit(), f"Retry-After: {retry_after!r}"
        assert c.is_closed_by_peer(3)


def test_slow_backend_gives_504_within_backend_timeout(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"backend-timeout": "2"})
    backend = make_backend(gw, "NODE1", HTTPHandler(lambda req, send: None))  # alive (pongs) but never answers
    with RawConn(gw.port) as c:
        started = time.monotonic()
        c.send(request_bytes("GET", "/slow", "localhost"))
        resp = c.read_response(timeout=6)
        elapsed = time.monotonic() - started
        assert_gateway_error(resp, "HTTP/1.1 504 Gateway Timeout")
        assert 1.8 <= elapsed <= 3.0, f"504 after {elapsed:.2f}s, backend-timeout is 2 s"
        assert c.is_closed_by_peer(3)
    sid = backend.messages(b"uwsgi")[0].sid
    backend.wait_message(b"end", sid, timeout=3)


def test_backend_timeout_restarts_with_each_message(make_gateway, make_backend):
    """backend-timeout counts silence: a node that keeps sending within the timeout is not cut off."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"backend-timeout": "2"})
    backend = None

    def app(req: Request, send):
        send(req.sid, b"headers", response_head(200, [("Transfer-Encoding", "chunked")]))
        for i in range(1, 4):
            backend.call_later(1.2 * i, lambda i=i: send(req.sid, b"chunk", b"tick %d;" % i))
        backend.call_later(1.2 * 4, lambda: send(req.sid, b"chunk", b""))

    backend = make_backend(gw, "NODE1", HTTPHandler(app))
    resp = http_request(gw.port, timeout=10)
    assert resp.status == 200 and resp.body == b"tick 1;tick 2;tick 3;"


def test_unknown_host_gives_404(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    backend = make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "unknown.example"))
        assert_gateway_error(c.read_response(), "HTTP/1.1 404 Not Found")
        assert c.is_closed_by_peer(3)
    assert not backend.messages(b"uwsgi")
    assert http_request(gw.port).status == 200


def test_default_vhost_answers_unknown_hosts(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"], "other.test": {"nodes": ["OTHER"], "default": True}})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"node1")))
    other = HTTPHandler(hello_app(b"other"))
    make_backend(gw, "OTHER", other)
    assert http_request(gw.port, host="localhost").body == b"node1"
    assert http_request(gw.port, host="other.test").body == b"other"
    assert http_request(gw.port, host="unknown.example").body == b"other"
    assert http_request(gw.port, host=f"whatever.test:{gw.port}").body == b"other"
    assert [r.env.get("HTTP_HOST") for r in other.requests][-2:] == ["unknown.example", f"whatever.test:{gw.port}"]


def test_forged_message_from_other_identity_is_ignored(make_gateway, make_backend):
    """A configured node of another vhost sends `headers` + `end` for NODE1's sid: ignored."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"], "other.test": ["OTHER"]})
    node1 = None

    def real(req: Request, send):
        node1.call_later(0.8, lambda: respond(send, req.sid, b"real answer"))

    node1 = make_backend(gw, "NODE1", HTTPHandler(real))
    forger = make_backend(gw, "OTHER", HTTPHandler(hello_app(b"other")))
    anonymous = make_backend(gw, "", None, ready=False)  # a DEALER without identity (libzmq generates one)
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        sid = node1.wait_message(b"uwsgi", timeout=3)[0].sid
        for peer in (forger, anonymous):
            peer.send(sid, b"headers", b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
            peer.send(sid, b"body", b"forged body")
            peer.send(sid, b"end", b"")
        resp = c.read_response(timeout=5)
        assert resp.status == 200 and resp.body == b"real answer", resp.raw
        # The forged `end` did not close the connection either.
        c.send(request_bytes("GET", "/again", "localhost"))
        assert c.read_response(timeout=5).body == b"real answer"
    assert all(m.sid != sid for m in forger.messages(b"end")), "only the bound node hears about the session"


def test_invalid_headers_from_backend_gives_502(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    backend = make_backend(gw, "NODE1", HTTPHandler(
        lambda req, send: send(req.sid, b"headers", b"this is not an HTTP response head\r\n\r\n")))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        assert_gateway_error(c.read_response(), "HTTP/1.1 502 Bad Gateway")
        assert c.is_closed_by_peer(3)
    sid = backend.messages(b"uwsgi")[0].sid
    backend.wait_message(b"end", sid, timeout=3)


def test_malformed_backend_messages_are_ignored(make_gateway, make_backend):
    """Wrong frame counts, unknown types, bad sids and unknown sids do not disturb the gateway."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    backend = make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    for frames in ([b"x"], [b"", b"pong"], [b"0" * 16, b"body", b"x", b"extra"], [b"short", b"body", b"x"],
                   [b"0" * 16, b"headers", b"HTTP/1.1 200 OK\r\n\r\n"], [b"0" * 16, b"bodyx", b""],
                   [b"", b"", b""], [b"0" * 16, b"uwsgi", b"\x00\x00\x00\x00"]):
        backend.send_frames(frames)
    time.sleep(0.3)
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"Hello World"
        sid = backend.messages(b"uwsgi")[0].sid
        # An unknown type for a live sid is dropped too; the session goes on.
        backend.send(sid, b"bogus", b"data")
        backend.send_frames([sid, b"body", b"x", b"extra frame"])
        time.sleep(0.3)
        c.send(request_bytes("GET", "/2", "localhost"))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"Hello World"
