"""HTTP/1.x behaviour through the gateway: keep-alive, pipelining, HEAD, HTTP/1.0, request bodies,
chunked uploads, 100-continue, Host matching, session end, access log, IPv6."""

from __future__ import annotations

import os
import re
import socket
import struct
import time

import httpx
import pytest

from helpers import (HTTPHandler, RawConn, Request, curl_fetch, echo_app, free_port, hello_app, http_request,
                     request_bytes, respond, response_head)


@pytest.fixture
def hello(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    handler = HTTPHandler(hello_app())
    backend = make_backend(gw, "NODE1", handler)
    return gw, backend, handler


@pytest.fixture
def echo(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    handler = HTTPHandler(echo_app)
    backend = make_backend(gw, "NODE1", handler)
    return gw, backend, handler


def test_keep_alive_one_sid_one_uwsgi_per_request(hello):
    gw, backend, handler = hello
    with RawConn(gw.port) as c:
        for i in range(3):
            c.send(request_bytes("GET", f"/k{i}", "localhost"))
            resp = c.read_response()
            assert resp.status == 200 and resp.body == b"Hello World"
    uwsgi = backend.messages(b"uwsgi")
    assert len(uwsgi) == 3, "one uwsgi per request"
    assert len({m.sid for m in uwsgi}) == 1, "keep-alive requests share the connection's sid"
    assert len(uwsgi[0].sid) == 16
    assert [r.path for r in handler.requests] == ["/k0", "/k1", "/k2"]


def test_separate_connections_get_separate_sids(hello):
    gw, backend, _ = hello
    for _ in range(3):
        assert http_request(gw.port).status == 200
    sids = backend.sids()
    assert len(sids) == 3 and all(len(s) == 16 for s in sids)


def test_httpx_client_reuses_connection(hello):
    gw, backend, _ = hello
    with httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", headers={"Host": "localhost"}, trust_env=False,
                      timeout=10) as client:
        for _ in range(4):
            r = client.get("/x")
            assert r.status_code == 200 and r.content == b"Hello World"
    assert len(backend.messages(b"uwsgi")) == 4
    assert len(backend.sids()) == 1


def test_pipelined_requests_are_serialised_and_in_order(make_gateway, make_backend):
    """Three requests in one send: the next uwsgi only after the previous response, answers in order."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    backend = None

    def app(req: Request, send):
        body = req.path.encode()
        backend.call_later(0.3, lambda: respond(send, req.sid, body, include_body_in_headers=True))

    handler = HTTPHandler(app)
    backend = make_backend(gw, "NODE1", handler)
    with RawConn(gw.port) as c:
        c.send(b"".join(request_bytes("GET", f"/{i}", "localhost") for i in (1, 2, 3)))
        bodies = [c.read_response().body for _ in range(3)]
    assert bodies == [b"/1", b"/2", b"/3"]
    uwsgi = backend.messages(b"uwsgi")
    assert [r.path for r in handler.requests] == ["/1", "/2", "/3"]
    assert len({m.sid for m in uwsgi}) == 1
    replies = [t for t, _, mtype, _ in backend.sent if mtype == b"headers"]
    assert len(replies) == 3
    for i in (1, 2):
        assert uwsgi[i].at >= replies[i - 1], (
            f"uwsgi #{i + 1} arrived {replies[i - 1] - uwsgi[i].at:.3f}s before response #{i} was sent")


def test_head_response_has_no_body_and_keeps_framing(hello):
    gw, backend, _ = hello
    with RawConn(gw.port) as c:
        c.send(request_bytes("HEAD", "/", "localhost"))
        head = c.read_response("HEAD")
        assert head.status == 200
        assert head.header("Content-Length") == "11"
        c.send(request_bytes("GET", "/", "localhost"))
        resp = c.read_response()  # would fail if HEAD bytes had a body
        assert resp.status == 200 and resp.body == b"Hello World"
    methods = [m.body for m in backend.messages(b"uwsgi")]
    assert len(methods) == 2


def test_http10_without_keep_alive_is_closed(hello):
    gw, backend, _ = hello
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost", version="HTTP/1.0"))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"Hello World"
        assert c.is_closed_by_peer(3), "HTTP/1.0 without keep-alive must be closed after the response"
    assert handler_protocol(backend) == ["HTTP/1.0"]


def handler_protocol(backend):
    from helpers import decode_env
    return [decode_env(m.body)["SERVER_PROTOCOL"] for m in backend.messages(b"uwsgi")]


def test_http10_keep_alive(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})

    def app(req: Request, send):
        extra = [("Connection", "keep-alive")] if req.env.get("HTTP_CONNECTION", "").lower() == "keep-alive" else []
        respond(send, req.sid, b"ten", headers=extra)

    backend = make_backend(gw, "NODE1", HTTPHandler(app))
    with RawConn(gw.port) as c:
        for _ in range(2):
            c.send(request_bytes("GET", "/", "localhost", [("Connection", "keep-alive")], version="HTTP/1.0"))
            resp = c.read_response()
            assert resp.status == 200 and resp.body == b"ten"
        assert not c.is_closed_by_peer(0.5), "HTTP/1.0 keep-alive connection must stay open"
    assert len(backend.messages(b"uwsgi")) == 2 and len(backend.sids()) == 1


def test_unframed_response_to_http11_is_chunked_by_gateway(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})

    def app(req: Request, send):
        send(req.sid, b"headers", response_head(200, [("Content-Type", "text/plain")]))
        send(req.sid, b"body", b"part one, ")
        send(req.sid, b"body", b"part two")
        send(req.sid, b"end", b"")

    make_backend(gw, "NODE1", HTTPHandler(app))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        resp = c.read_response()
        assert resp.chunked and resp.body == b"part one, part two"
        assert c.is_closed_by_peer(3)


def test_chunk_messages_without_te_header_are_framed(make_gateway, make_backend):
    """`chunk` messages after a head that declares no framing: the gateway adds the chunked framing."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})

    def app(req: Request, send):
        send(req.sid, b"headers", response_head(200, [("Content-Type", "text/plain")]))
        for part in (b"a" * 10, b"b" * 300, b"c"):
            send(req.sid, b"chunk", part)
        send(req.sid, b"chunk", b"")

    make_backend(gw, "NODE1", HTTPHandler(app))
    with RawConn(gw.port) as c:
        for _ in range(2):
            c.send(request_bytes("GET", "/", "localhost"))
            resp = c.read_response()
            assert resp.status == 200 and resp.chunked
            assert resp.body == b"a" * 10 + b"b" * 300 + b"c"


@pytest.mark.parametrize("size", [0, 1])
def test_post_small_body(echo, size):
    gw, backend, handler = echo
    payload = b"x" * size
    with RawConn(gw.port) as c:
        c.send(request_bytes("POST", "/small", "localhost", [("Content-Length", str(size))], payload))
        resp = c.read_response()
    assert resp.status == 200 and resp.body == payload
    req = handler.requests[0]
    assert req.env["CONTENT_LENGTH"] == str(size)
    assert bytes(req.body) == payload
    bodies = backend.messages(b"body")
    if size == 0:
        assert bodies == [], "no body messages (and no end marker) for an empty body"
    else:
        assert req.end_marker and bodies[-1].body == b""
    assert not handler.stray


def test_post_10mib_body_echo_byte_exact(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"backend-timeout": "10", "body-timeout": "10"})
    handler = HTTPHandler(echo_app)
    backend = make_backend(gw, "NODE1", handler)
    payload = os.urandom(10 * 1024 * 1024)
    with httpx.Client(trust_env=False, timeout=25) as client:
        r = client.post(f"http://127.0.0.1:{gw.port}/big", content=payload,
                        headers={"Host": "localhost", "Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert len(r.content) == len(payload) and r.content == payload
    req = handler.requests[0]
    assert req.env["CONTENT_LENGTH"] == str(len(payload))
    assert req.env["CONTENT_TYPE"] == "application/octet-stream"
    assert req.end_marker
    assert bytes(req.body) == payload
    assert backend.messages(b"body")[-1].body == b""
    assert not handler.stray


def test_body_arriving_in_pieces_is_forwarded_exactly_and_replayed_on_retry(make_gateway, make_backend):
    """Body bytes that arrive after the head are read straight into ZeroMQ messages once 16 KiB or more
    remain; they must reach the node byte-exact, in order, and also land in the retry buffer."""
    gw = make_gateway(vhosts={"localhost": ["NODE1", "NODE2"]})
    refuser = HTTPHandler(lambda req, send: send(req.sid, b"retry", b""))
    echoer = HTTPHandler(echo_app)
    make_backend(gw, "NODE1", refuser)
    make_backend(gw, "NODE2", echoer)
    payload = os.urandom(48 * 1024)
    pieces = [payload[:1000], payload[1000:20000], payload[20000:47000], payload[47000:]]
    for _ in range(4):  # each request may go to either node first
        with RawConn(gw.port) as c:
            c.send(request_bytes("POST", "/pieces", "localhost", [("Content-Length", str(len(payload)))], b""))
            for piece in pieces:
                time.sleep(0.05)
                c.send(piece)
            resp = c.read_response()
        assert resp.status == 200, resp.raw
        assert resp.body == payload
    assert refuser.requests, "NODE1 never refused, so the replay was not exercised"
    for refused in refuser.requests:
        assert bytes(refused.body) == payload and refused.end_marker
    for answered in echoer.requests:
        assert bytes(answered.body) == payload and answered.end_marker
    assert len(echoer.requests) == 4
    assert not refuser.stray and not echoer.stray


def test_chunked_upload_is_dechunked_with_end_marker(echo):
    gw, backend, handler = echo
    raw_body = (b"5\r\nhello\r\n"
                b"7;name=value\r\n, world\r\n"
                b"A\r\n0123456789\r\n"
                b"0\r\nX-Trailer: t\r\n\r\n")
    with RawConn(gw.port) as c:
        c.send(request_bytes("PUT", "/up", "localhost", [("Transfer-Encoding", "chunked")], raw_body))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == b"hello, world0123456789"
        # The connection is still usable after the chunked request.
        c.send(request_bytes("GET", "/after", "localhost"))
        assert c.read_response().status == 200
    req = handler.requests[0]
    assert bytes(req.body) == b"hello, world0123456789"
    assert req.end_marker
    assert not handler.stray


def test_chunked_upload_streamed_by_httpx(echo):
    gw, _, handler = echo
    parts = [os.urandom(64 * 1024) for _ in range(16)]

    def gen():
        yield from parts

    with httpx.Client(trust_env=False, timeout=20) as client:
        r = client.post(f"http://127.0.0.1:{gw.port}/stream", content=gen(), headers={"Host": "localhost"})
    assert r.status_code == 200
    assert r.content == b"".join(parts)
    assert handler.requests[0].env.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
    assert handler.requests[0].end_marker


def test_expect_100_continue_raw(echo):
    gw, backend, handler = echo
    with RawConn(gw.port) as c:
        c.send(request_bytes("POST", "/expect", "localhost",
                             [("Content-Length", "5"), ("Expect", "100-continue")]))
        status_line, headers, _ = c.read_head(timeout=3)
        assert status_line == "HTTP/1.1 100 Continue", "the gateway must send 100 Continue itself"
        c.send(b"hello")
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"hello"
    assert bytes(handler.requests[0].body) == b"hello"


def test_expect_100_continue_curl(echo, tmp_path):
    gw, _, handler = echo
    data = tmp_path / "data.bin"
    data.write_bytes(b"z" * 5000)
    res = curl_fetch(gw.port, "/expect", "-H", "Expect: 100-continue", "--expect100-timeout", "10",
                     "--data-binary", f"@{data}")
    assert res.returncode == 0, res.stderr
    assert res.elapsed < 5, "curl waited for its expect timeout: no 100 Continue from the gateway"
    assert [h.split("\r\n")[0] for h in res.heads] == ["HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"]
    assert res.body == b"z" * 5000


@pytest.mark.parametrize("host, status", [
    ("localhost", 200),
    ("localhost:{port}", 200),
    ("LOCALHOST", 200),
    ("LocalHost:{port}", 200),
    ("localhost.", 200),
    ("localhost:1", 404),
    ("nothere.test", 404),
])
def test_host_matching(hello, host, status):
    gw, backend, _ = hello
    resp = http_request(gw.port, host=host.format(port=gw.port))
    assert resp.status == status, resp.raw
    if status == 404:
        assert resp.status_line == "HTTP/1.1 404 Not Found"
        assert resp.has_token("Connection", "close")
        assert not backend.messages(b"uwsgi")


def test_end_sent_when_client_closes_after_response(hello):
    gw, backend, _ = hello
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        assert c.read_response().status == 200
        sid = backend.messages(b"uwsgi")[0].sid
    backend.wait_message(b"end", sid, timeout=3)


def test_end_sent_when_client_disconnects_mid_request(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    handler = HTTPHandler(lambda req, send: None)  # never answers
    backend = make_backend(gw, "NODE1", handler)
    c = RawConn(gw.port)
    c.send(request_bytes("GET", "/hang", "localhost"))
    msg = backend.wait_message(b"uwsgi", timeout=3)[0]
    # An abortive close (RST): unlike a FIN, which may be a half-close whose response is still wanted,
    # a reset says the client is gone.
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    backend.wait_message(b"end", msg.sid, timeout=3)


def test_keepalive_idle_timeout_closes(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"keepalive-timeout": "2"})
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        assert c.read_response().status == 200
        started = time.monotonic()
        assert c.is_closed_by_peer(4), "idle keep-alive connection not closed within keepalive-timeout + 2 s"
        elapsed = time.monotonic() - started
    assert 1.5 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s, keepalive-timeout is 2 s"


def test_access_log_combined_line(hello):
    gw, _, _ = hello
    resp = http_request(gw.port, target="/logme?q=1", headers=[("User-Agent", "test-agent/1.0"),
                                                                ("Referer", "http://ref.test/")])
    assert resp.status == 200
    assert gw.stop() == 0
    pattern = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /logme\?q=1 HTTP/1\.1" 200 11 '
                         r'"http://ref\.test/" "test-agent/1\.0"(?: .*)?$', re.M)
    assert pattern.search(gw.stdout()), f"no combined log line in stdout:\n{gw.stdout()}"


def test_ipv6_listener(make_gateway, make_backend):
    try:
        port6 = free_port(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, extra_binds=[f"[::1]:{port6}"])
    handler = HTTPHandler(hello_app())
    make_backend(gw, "NODE1", handler)
    with RawConn(port6, host="::1", family=socket.AF_INET6) as c:
        c.send(request_bytes("GET", "/v6", f"localhost:{port6}"))
        resp = c.read_response()
    assert resp.status == 200 and resp.body == b"Hello World"
    env = handler.requests[0].env
    assert env["REMOTE_ADDR"] == "::1"
    assert env["SERVER_PORT"] == str(port6)


def test_half_closed_client_still_gets_response(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    backend = None

    def app(req: Request, send):
        backend.call_later(0.3, lambda: respond(send, req.sid, b"after half-close"))

    backend = make_backend(gw, "NODE1", HTTPHandler(app))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        c.sock.shutdown(socket.SHUT_WR)
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"after half-close"


def test_duplicate_cookie_headers_joined_with_semicolon(hello):
    gw, _, handler = hello
    resp = http_request(gw.port, headers=[("Cookie", "a=1"), ("X-Other", "x"), ("Cookie", "b=2")])
    assert resp.status == 200
    assert handler.requests[0].env["HTTP_COOKIE"] == "a=1; b=2"
