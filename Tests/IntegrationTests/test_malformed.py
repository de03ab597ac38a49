"""Malformed requests: the exact status line, `Connection: close`, the connection closed, nothing sent to the
node, and the gateway still serving a valid request afterwards. Plus the header timeout."""

from __future__ import annotations

import time

import pytest

from conftest import finish_gateways
from helpers import REASONS, Backend, Gateway, HTTPHandler, RawConn, hello_app, http_request

H = b"Host: localhost\r\n"

CASES = [
    ("bare_lf_everywhere", b"GET / HTTP/1.1\nHost: localhost\n\n", 400),
    ("bare_lf_in_header", b"GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", 400),
    ("bare_lf_after_request_line", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("bare_cr_in_header", b"GET / HTTP/1.1\r\nHost: localhost\rX-A: b\r\n\r\n", 400),
    ("bare_cr_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("nul_in_header_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("nul_in_header_name", b"GET / HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n", 400),
    ("nul_in_target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("obs_fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("obs_fold_tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("space_before_colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    ("space_before_colon_host", b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n", 400),
    ("content_length_and_chunked",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("differing_content_lengths",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    ("content_length_not_a_number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 12abc\r\n\r\n", 400),
    ("content_length_negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("invalid_method_char", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("empty_method", b" / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target_with_space", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target_with_control", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target_with_del", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("two_spaces_in_request_line", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("invalid_version", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400),
    ("invalid_protocol_name", b"GET / HTTX/1.1\r\n" + H + b"\r\n", 400),
    ("lowercase_protocol_name", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("missing_version", b"GET /\r\n" + H + b"\r\n", 400),
    ("http_2_0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("missing_host_http11", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two_hosts", b"GET / HTTP/1.1\r\n" + H + b"Host: other\r\n\r\n", 400),
    ("request_line_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header_too_large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    ("too_many_headers",
     b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n", 431),
    ("body_too_large", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2000000\r\n\r\n", 413),
    ("transfer_encoding_gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 501),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, blastbeat_bin):
    gw = Gateway(tmp_path_factory.mktemp("malformed"), vhosts={"localhost": ["NODE1"]}, options={
        "max-request-line": "8192",
        "max-header-size": "16384",
        "max-headers": "50",
        "max-body-size": "1m",
        "header-timeout": "2",
    })
    gw.start()
    handler = HTTPHandler(hello_app())
    backend = Backend(gw.endpoint, "NODE1", handler).start().wait_ready()
    yield gw, backend
    backend.stop()
    problems = finish_gateways([gw])
    assert not problems, problems
    assert not backend.errors, backend.errors


@pytest.mark.parametrize("raw, status", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request(gateway, raw, status):
    gw, backend = gateway
    before = len(backend.messages(b"uwsgi"))
    with RawConn(gw.port, timeout=5) as c:
        c.send(raw)
        resp = c.read_response(timeout=5)
        assert resp.status_line == f"HTTP/1.1 {status} {REASONS[status]}", resp.raw[:300]
        assert resp.has_token("Connection", "close"), resp.headers
        assert c.is_closed_by_peer(3), "the connection must be closed after the error response"
    after = http_request(gw.port, target="/after", timeout=5)
    assert after.status == 200 and after.body == b"Hello World", "the gateway must keep serving"
    new = backend.messages(b"uwsgi")[before:]
    assert len(new) == 1, f"the malformed request must not reach the node ({len(new) - 1} extra uwsgi)"


def test_malformed_second_request_on_keep_alive(gateway):
    """A parse error on a later request of a keep-alive connection: 400 after the first response."""
    gw, _ = gateway
    with RawConn(gw.port, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert c.read_response().status == 200
        c.send(b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n")
        resp = c.read_response()
        assert resp.status_line == "HTTP/1.1 400 Bad Request"
        assert resp.has_token("Connection", "close")
        assert c.is_closed_by_peer(3)


def test_half_head_times_out(gateway):
    gw, backend = gateway
    before = len(backend.messages(b"uwsgi"))
    with RawConn(gw.port, timeout=6) as c:
        started = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: loc")
        rest = c.read_all_until_close(timeout=5)
        elapsed = time.monotonic() - started
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), rest[:200]
    assert 1.5 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s, header-timeout is 2 s"
    assert len(backend.messages(b"uwsgi")) == before


def test_trickled_head_times_out(gateway):
    """Slowloris: one byte every 0.3 s never completes the head; header-timeout bounds the whole head."""
    gw, _ = gateway
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 100
    with RawConn(gw.port, timeout=6) as c:
        started = time.monotonic()
        closed_at = None
        for byte in head:
            try:
                c.send(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            if c.is_closed_or_data(0.3):
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "the trickling client was never cut off"
    assert closed_at - started <= 3.0, f"cut off after {closed_at - started:.2f}s, header-timeout is 2 s"
