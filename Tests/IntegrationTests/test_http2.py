"""HTTP/2 (issue #17): a session per stream, over TLS (ALPN h2) and prior-knowledge h2c, with real clients
(curl, nghttp, h2load, the Python h2 package): what backends see, response conversion, uploads and
streamed responses, many streams on one connection over two nodes, a node killed mid-stream, retry, the
access log, `http2 = false` globally and per vhost, GOAWAY on SIGTERM. Attacks and limits:
test_http2_limits.py."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from h2_helpers import H2Conn
from helpers import (HTTPHandler, Request, curl, echo_app, hello_app, http_request, respond, response_head,
                     wait_until)
from tls_helpers import curl_https, make_tls_gateway, pki  # noqa: F401 - fixtures


def env_app(req: Request, send) -> None:
    """Answers with the uwsgi environment as `KEY=VALUE` lines."""
    text = "\n".join(f"{k}={v}" for k, v in req.env.items()).encode("latin-1")
    respond(send, req.sid, text, headers=[("Content-Type", "text/plain")])


def env_of(body: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.decode("latin-1").splitlines())


# --------------------------------------------------------------------------------------------------------------
# Real clients


def test_curl_prior_knowledge_h2c(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    make_backend(gw, "A", HTTPHandler(hello_app(b"hello h2c")))
    proc = curl("--http2-prior-knowledge", "-D", "-", f"http://localhost:{gw.port}/x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"HTTP/2 200 \r\n"), proc.stdout
    assert proc.stdout.endswith(b"hello h2c")
    # The same port still speaks HTTP/1.1 to everyone else.
    proc = curl("-D", "-", f"http://localhost:{gw.port}/x")
    assert proc.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and proc.stdout.endswith(b"hello h2c")


def test_curl_h2_over_tls_by_alpn(make_tls_gateway, make_backend, pki):
    gw = make_tls_gateway(vhosts={"localhost": ["A"]},
                          options={"certificate": str(pki.localhost.cert), "key": str(pki.localhost.key)})
    make_backend(gw, "A", HTTPHandler(env_app))
    proc = curl_https(gw.tls_port, "localhost", "/p?q=1", "--http2", "-v", cafile=pki.ca_cert)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert re.search(r"ALPN[:,] server accepted (to use )?h2", err), err
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), head
    env = env_of(body)
    assert env["SERVER_PROTOCOL"] == "HTTP/2" and env["HTTPS"] == "on" and env["UWSGI_SCHEME"] == "https"
    assert env["PATH_INFO"] == "/p" and env["QUERY_STRING"] == "q=1" and env["HTTP_HOST"] == f"localhost:{gw.tls_port}"
    assert env["SSL_TLS_SNI"] == "localhost"


def test_nghttp_and_h2load(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    make_backend(gw, "A", HTTPHandler(hello_app(b"hello nghttp")))
    proc = subprocess.run(["nghttp", "-v", f"http://localhost:{gw.port}/n"], capture_output=True, timeout=20)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    assert ":status: 200" in out and "hello nghttp" in out
    # The gateway announces its limit of concurrent streams in its SETTINGS.
    assert re.search(r"SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):100", out), out
    proc = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", f"http://localhost:{gw.port}/"],
                          capture_output=True, timeout=30)
    out = proc.stdout.decode(errors="replace")
    assert re.search(r"requests: 400 total, 400 started, 400 done, 400 succeeded", out), out
    assert "status codes: 400 2xx" in out, out


# --------------------------------------------------------------------------------------------------------------
# What backends see, what clients get


def test_backend_environment_and_cookies(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    handler = HTTPHandler(env_app)
    make_backend(gw, "A", handler)
    with H2Conn(gw.port) as c:
        r = c.get("/a%20b?x=y", headers=[("cookie", "a=1"), ("user-agent", "h2test"), ("cookie", "b=2"),
                                          ("x-multi", "1"), ("x-multi", "2"), ("content-type", "text/x")])
        assert r.status == 200, r.headers
        env = env_of(bytes(r.body))
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REQUEST_METHOD"] == "GET" and env["PATH_INFO"] == "/a b" and env["REQUEST_URI"] == "/a%20b?x=y"
    assert env["HTTP_COOKIE"] == "a=1; b=2"  # RFC 9113 §8.2.3: split cookies joined again with "; "
    assert env["HTTP_X_MULTI"] == "1, 2" and env["HTTP_USER_AGENT"] == "h2test" and env["CONTENT_TYPE"] == "text/x"
    assert env["HTTP_HOST"] == "localhost" and env["UWSGI_SCHEME"] == "http" and "HTTPS" not in env
    assert not any(k.startswith("HTTP_:") for k in env)


def test_response_head_converted_and_backend_chunking_removed(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})

    def app(req, send):
        if req.path == "/chunked":
            send(req.sid, b"headers", response_head(200, [("Transfer-Encoding", "chunked"), ("Connection", "keep-alive, x-hop"),
                                                          ("X-Hop", "drop me"), ("Keep-Alive", "timeout=5"), ("X-Kept", "yes")]))
            send(req.sid, b"body", b"5\r\nhello\r\n6\r\n world\r\n")
            send(req.sid, b"body", b"0\r\n\r\n")
        elif req.path == "/unframed":
            send(req.sid, b"headers", response_head(201, [("X-A", "1")]))
            send(req.sid, b"chunk", b"part1 ")
            send(req.sid, b"body", b"part2")
            send(req.sid, b"chunk", b"")
        elif req.path == "/head":
            send(req.sid, b"headers", response_head(200, [("Content-Length", "5")]))
        else:
            respond(send, req.sid, b"", status=204)

    make_backend(gw, "A", HTTPHandler(app))
    with H2Conn(gw.port) as c:
        r = c.get("/chunked")
        names = [n for n, _ in r.headers]
        assert r.status == 200 and bytes(r.body) == b"hello world"
        assert b"connection" not in names and b"transfer-encoding" not in names and b"keep-alive" not in names
        assert b"x-hop" not in names and r.header(b"x-kept") == b"yes"
        r = c.get("/unframed")
        assert r.status == 201 and bytes(r.body) == b"part1 part2" and r.header(b"x-a") == b"1"
        r = c.response(c.request("HEAD", "/head"))
        assert r.status == 200 and r.header(b"content-length") == b"5" and bytes(r.body) == b""
        r = c.get("/nobody")
        assert r.status == 204 and bytes(r.body) == b""


def test_upload_streams_to_the_node_with_end_marker(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    handler = HTTPHandler(echo_app)
    make_backend(gw, "A", handler)
    body = bytes(range(256)) * 4096  # 1 MiB: more than the stream and connection windows at first
    with H2Conn(gw.port, timeout=20) as c:
        sid = c.request("POST", "/up", body=body)  # no content-length: END_STREAM ends it
        r = c.response(sid, timeout=20)
        assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(body).digest()
        sid = c.request("PUT", "/up2", headers=[("content-length", "5")], body=b"12345")
        r = c.response(sid)
        assert r.status == 200 and bytes(r.body) == b"12345"
    req = handler.requests[0]
    assert req.end_marker and req.env.get("HTTP_TRANSFER_ENCODING") == "chunked" and "CONTENT_LENGTH" not in req.env
    assert handler.requests[1].env["CONTENT_LENGTH"] == "5"


def test_streamed_response_arrives_as_it_is_sent(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    node = [None]

    def app(req, send):
        send(req.sid, b"headers", response_head(200, [("Content-Type", "text/plain")]))
        send(req.sid, b"chunk", b"first ")
        node[0].call_later(1.0, lambda: (send(req.sid, b"chunk", b"second"), send(req.sid, b"chunk", b"")))

    node[0] = make_backend(gw, "A", HTTPHandler(app))
    with H2Conn(gw.port) as c:
        sid = c.request("GET", "/stream")
        started = time.monotonic()
        c.wait(lambda: bytes(c.streams[sid].body) == b"first ", 5, "the first part")
        assert time.monotonic() - started < 0.8 and not c.streams[sid].done
        r = c.response(sid)
        assert bytes(r.body) == b"first second" and r.ended


def test_hundred_concurrent_streams_over_two_nodes(make_gateway, make_backend):
    """100 streams open at once on one connection (each node holds its answers 0.3 s): all answered, spread
    over both nodes, each stream with its own sid."""
    gw = make_gateway(vhosts={"localhost": ["A", "B"]})
    nodes = {}

    def app_for(name):
        def app(req, send):
            nodes[name].call_later(0.3, lambda: respond(send, req.sid, f"{name} {req.path}".encode()))
        return app

    handlers = {n: HTTPHandler(app_for(n)) for n in ("A", "B")}
    for n in ("A", "B"):
        nodes[n] = make_backend(gw, n, handlers[n])
    with H2Conn(gw.port, timeout=20) as c:
        sids = [c.request("GET", f"/s{i}") for i in range(100)]
        for i, sid in enumerate(sids):
            r = c.response(sid, timeout=20)
            assert r.status == 200 and bytes(r.body).endswith(f" /s{i}".encode()), (i, r.headers, r.body)
        served = Counter(bytes(c.streams[s].body).split()[0] for s in sids)
    assert sum(served.values()) == 100 and min(served.values()) >= 35, served
    all_sids = [r.sid for h in handlers.values() for r in h.requests]
    assert len(set(all_sids)) == 100


def test_node_killed_mid_stream_other_streams_continue(make_gateway, make_backend, spawn_backend):
    gw = make_gateway(vhosts={"a.test": ["SLOW"], "b.test": ["FAST"]})
    slow = spawn_backend(gw, "SLOW", delay=5.0)
    node = [None]

    def streaming(req, send):
        send(req.sid, b"headers", response_head(200, []))
        send(req.sid, b"chunk", b"part ")
        node[0].call_later(1.5, lambda: (send(req.sid, b"chunk", b"rest"), send(req.sid, b"chunk", b"")))

    node[0] = make_backend(gw, "FAST", HTTPHandler(streaming))
    with H2Conn(gw.port, timeout=20) as c:
        waiting = c.request("GET", "/w", authority="a.test")
        streaming_sid = c.request("GET", "/s", authority="b.test")
        c.wait(lambda: bytes(c.streams[streaming_sid].body) == b"part ", 5, "first part")
        time.sleep(0.2)
        started = time.monotonic()
        slow.kill9()
        r = c.response(waiting, timeout=5)
        assert (r.status == 502 or r.reset is not None) and time.monotonic() - started < 2.5, (r.headers, r.reset)
        r = c.response(streaming_sid, timeout=5)
        assert r.status == 200 and bytes(r.body) == b"part rest"
        assert c.get("/again", authority="b.test").status == 200


def test_retry_moves_the_stream_to_another_node(make_gateway, make_backend):
    """A stream whose node answers `retry` goes to the other node, then gets 502; each retry is counted in
    blastbeat_node_retries_total as over HTTP/1.1 (HTTP/2's messages once took a path of their own that did
    not count them)."""
    from helpers import free_port
    from test_metrics import scrape
    gw = make_gateway(vhosts={"localhost": ["A", "B"]}, options={"admin": f"127.0.0.1:{free_port()}"})
    seen = []

    def retrying(sid, mtype, body, send):
        if mtype == b"uwsgi":
            seen.append(sid)
            send(sid, b"retry", b"")

    make_backend(gw, "A", retrying)
    make_backend(gw, "B", retrying)
    make_backend(gw, "C", HTTPHandler(hello_app(b"c")), ready=False)  # not in the vhost: never used
    with H2Conn(gw.port) as c:
        r = c.get("/r")
    assert r.status == 502 and len(seen) == 2, (r.status, seen)
    metrics = scrape(gw)
    assert metrics.value("blastbeat_node_retries_total", node="A") == 1
    assert metrics.value("blastbeat_node_retries_total", node="B") == 1


def test_node_responses_are_counted_for_streams_as_for_http1(make_gateway, make_backend):
    """blastbeat_node_responses_total counts the response heads a node sends for HTTP/2 streams too (the
    HTTP/1.1 connection once counted them itself, and streams not at all); the node's own 502 counts, the
    gateway's 503 for a vhost without a live node does not."""
    from helpers import free_port
    from test_metrics import scrape
    gw = make_gateway(vhosts={"localhost": ["A"], "empty.test": ["GHOST"]},
                      options={"admin": f"127.0.0.1:{free_port()}", "backend-timeout": 1})
    make_backend(gw, "A", HTTPHandler(hello_app(b"a")))
    with H2Conn(gw.port) as c:
        assert [c.get(f"/{i}").status for i in range(3)] == [200, 200, 200]
        assert c.get("/", authority="empty.test").status == 503
    assert http_request(gw.port, target="/h1").status == 200
    metrics = scrape(gw)
    assert metrics.value("blastbeat_node_responses_total", node="A") == 4
    assert metrics.value("blastbeat_node_responses_total", node="GHOST") == 0


def test_access_log_names_the_protocol(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with H2Conn(gw.port) as c:
        assert c.get("/logged", headers=[("user-agent", "ua-h2")]).status == 200
    wait_until(lambda: '"GET /logged HTTP/2" 200 1 "-" "ua-h2" node=A' in gw.stdout(), 5, what="access log line")


def test_shutdown_sends_goaway_and_lets_streams_finish(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    node = [None]

    def slow(req, send):
        node[0].call_later(1.0, lambda: respond(send, req.sid, b"finished"))

    node[0] = make_backend(gw, "A", HTTPHandler(slow))
    # nghttp prints every frame; Python's h2 refuses frames after a GOAWAY, which RFC 9113 §6.8 allows.
    client = subprocess.Popen(["nghttp", "-v", f"http://localhost:{gw.port}/slow"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    wait_until(lambda: node[0].messages(b"uwsgi"), 5, what="request at the node")
    gw.proc.send_signal(signal.SIGTERM)
    out, _ = client.communicate(timeout=10)
    text = out.decode(errors="replace")
    assert client.returncode == 0, text
    goaway = text.index("recv GOAWAY frame")
    assert "error_code=NO_ERROR" in text[goaway:goaway + 200], text
    assert text.index(":status: 200") > goaway and "finished" in text, text
    assert gw.proc.wait(10) == 0


def test_idle_connection_gets_goaway(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"keepalive-timeout": "1"})
    make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with H2Conn(gw.port) as c:
        assert c.get("/").status == 200
        started = time.monotonic()
        c.wait(lambda: c.goaway is not None, 5, "GOAWAY")
        assert 0.7 < time.monotonic() - started < 3 and c.goaway.error_code == 0
        c.wait_closed(5)


# --------------------------------------------------------------------------------------------------------------
# http2 = false


def test_http2_off_globally(make_tls_gateway, make_backend, pki):
    gw = make_tls_gateway(vhosts={"localhost": ["A"]},
                          options={"certificate": str(pki.localhost.cert), "key": str(pki.localhost.key),
                                   "http2": "false"})
    make_backend(gw, "A", HTTPHandler(hello_app(b"one")))
    proc = curl_https(gw.tls_port, "localhost", "/", "--http2", "-v", cafile=pki.ca_cert)
    assert proc.returncode == 0 and proc.stdout.startswith(b"HTTP/1.1 200 OK"), proc.stdout
    proc = curl("--http2-prior-knowledge", f"http://localhost:{gw.port}/")
    assert proc.returncode != 0 or not proc.stdout.endswith(b"one")


def test_http2_off_for_one_vhost(make_tls_gateway, make_backend, pki):
    gw = make_tls_gateway(vhosts={"a.test": {"nodes": ["A"], "http2": "false"}, "b.test": ["B"]},
                          options={"certificate": str(pki.a.cert), "key": str(pki.a.key)})
    make_backend(gw, "A", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "B", HTTPHandler(hello_app(b"b")))
    # SNI names the vhost: h2 is not offered, the client speaks HTTP/1.1.
    proc = curl_https(gw.tls_port, "a.test", "/", "--http2", "-v", cafile=pki.ca_cert)
    assert proc.returncode == 0 and proc.stdout.startswith(b"HTTP/1.1 200 OK") and proc.stdout.endswith(b"a"), proc.stdout
    # A stream that reaches it anyway (prior knowledge) is answered 421 Misdirected Request; b.test is served.
    with H2Conn(gw.port) as c:
        r = c.get("/", authority="a.test")
        assert r.status == 421, r.headers
        r = c.get("/", authority="b.test")
        assert r.status == 200 and bytes(r.body) == b"b"


def test_check_validates_http2_keys(tmp_path):
    from helpers import blastbeat_bin
    conf = tmp_path / "h2.ini"
    conf.write_text("[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\nhttp2 = true\n"
                    "http2-max-streams = 50\n\n[blastbeat:a.test]\nnode = A\nhttp2 = false\n")
    ok = subprocess.run([blastbeat_bin(), "--check", str(conf)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    for line, bad in [(4, "http2 = maybe"), (4, "http2-max-streams = 0"), (4, "http2-max-streams = 100000")]:
        conf.write_text("[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\n" + bad
                        + "\n\n[blastbeat:a.test]\nnode = A\n")
        res = subprocess.run([blastbeat_bin(), "--check", str(conf)], capture_output=True, text=True, timeout=30)
        key = bad.split(" =")[0]
        assert res.returncode != 0 and f":{line}" in res.stderr and key in res.stderr, (bad, res.stderr)
    conf.write_text("[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\n\n[blastbeat:a.test]\n"
                    "node = A\nhttp2-max-streams = 5\n")
    res = subprocess.run([blastbeat_bin(), "--check", str(conf)], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and ":7" in res.stderr, res.stderr


def test_upload_to_a_stalled_node_shuts_only_its_stream_window(make_gateway, make_backend):
    """A node that stops reading keeps its stream's flow-control window shut (the bytes wait in the client,
    not in the gateway), while another stream on the same connection, to another node, is served."""
    import os

    from helpers import rss_bytes

    from helpers import STALLED_NODE_OPTIONS, start_stalling_digest_node

    gw = make_gateway(vhosts={"slow.test": ["SLOW"], "fast.test": ["FAST"]}, options=STALLED_NODE_OPTIONS)
    start_stalling_digest_node(make_backend, gw, "SLOW", stall_seconds=4.0)
    make_backend(gw, "FAST", HTTPHandler(hello_app(b"fast")))
    size = 24 * 1024 * 1024
    payload = os.urandom(size)
    before = rss_bytes(gw.pid)
    with H2Conn(gw.port, timeout=30) as c:
        upload = c.request("POST", "/up", authority="slow.test", body=payload)
        time.sleep(1.0)
        c.read_events(0.5)
        fast = c.request("GET", "/f", authority="fast.test")
        r = c.response(fast, timeout=3)
        assert r.status == 200 and bytes(r.body) == b"fast"
        assert c._pending.get(upload), "the whole upload left the client during the stall"
        during = rss_bytes(gw.pid)
        r = c.response(upload, timeout=30)
    assert r.status == 200 and bytes(r.body) == b"%d %s" % (size, hashlib.sha256(payload).hexdigest().encode())
    assert during - before < 16 * 1024 * 1024, f"gateway RSS grew {(during - before) >> 20} MiB during the stall"


def test_early_response_stops_the_upload(make_gateway, make_backend, tmp_path):
    """A backend that answers before the request body is in (a 413 for an upload it does not want): the client
    gets the complete response, then RST_STREAM NO_ERROR asking it to stop sending (RFC 9113 §8.1, as nginx
    does); the node is told `end`."""
    gw = make_gateway(vhosts={"localhost": ["A"]})

    def early(sid, mtype, body, send):
        if mtype == b"uwsgi":
            send(sid, b"headers", response_head(413, [("Content-Length", "4")]) + b"nope")

    node = make_backend(gw, "A", early)
    with H2Conn(gw.port) as c:
        sid = c.request("POST", "/big", body=b"x" * (2 << 20))
        c.wait(lambda: c.streams[sid].reset is not None, 5, "RST_STREAM")
        r = c.streams[sid]
        assert r.status == 413 and bytes(r.body) == b"nope" and r.ended and r.reset == 0, (r.headers, r.reset)
        assert c.get("/after").status == 413  # the connection goes on
    uwsgi = node.messages(b"uwsgi")[0]
    node.wait_message(b"end", sid=uwsgi.sid)
    # curl gets its answer and stops instead of uploading into a finished stream.
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"x" * 3_000_000)
    proc = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{upload}",
                f"http://localhost:{gw.port}/big", timeout=10)
    assert b"413" in proc.stdout or proc.returncode == 92, (proc.returncode, proc.stdout, proc.stderr)


def test_response_cut_short_is_reset_not_ended(make_gateway, make_backend):
    """`end` mid-body of a Content-Length response: the stream is reset, so the client cannot take the
    truncated body for a complete one (HTTP/1.1 closes the connection for the same reason)."""
    gw = make_gateway(vhosts={"localhost": ["A"]})

    def short(req, send):
        send(req.sid, b"headers", response_head(200, [("Content-Length", "10")]))
        send(req.sid, b"body", b"12345")
        send(req.sid, b"end", b"")

    make_backend(gw, "A", HTTPHandler(short))
    with H2Conn(gw.port) as c:
        r = c.get("/short")
        assert r.reset is not None and not r.ended, (r.headers, r.body, r.reset)


@pytest.mark.parametrize("pause", ["1", "off"])
def test_after_a_refused_stream_the_connection_is_read_again_only_after_the_refusal_pause(make_gateway, make_backend,
                                                                                         pause):
    """A client that ignores Retry-After and opens stream after stream on one connection gets one refusal per
    `refusal-pause` (between half of it and all of it), as an HTTP/1.1 connection does; with the pause off,
    one per round trip. The stream after the pause is answered (429 again: the bucket is still empty)."""
    gw = make_gateway(vhosts={"localhost": {"nodes": ["A"], "options": {"client-rate": "0.1", "client-burst": "1"}}},
                      options={"refusal-pause": pause})
    make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with H2Conn(gw.port) as c:
        assert c.get("/first").status == 200
        started = time.monotonic()
        assert c.get("/refused").status == 429
        refused_at = time.monotonic()
        assert c.get("/again").status == 429
        again_at = time.monotonic()
    assert refused_at - started < 0.4
    if pause == "off":
        assert again_at - refused_at < 0.4
    else:
        assert 0.45 <= again_at - refused_at < 1.5, again_at - refused_at


def test_client_rate_vhost_logs_and_metrics_hold_for_streams(make_gateway, make_backend, tmp_path):
    """The tenants' settings apply to HTTP/2 streams as to HTTP/1.1 requests: a vhost's client-rate answers the
    stream past its burst 429, its own access-log gets the stream's line, and /metrics counts the responses as
    HTTP/2 under the vhost."""
    from helpers import free_port
    from test_metrics import scrape
    own_log = tmp_path / "a-access.log"
    gw = make_gateway(
        # One token per 10 s: none comes back while the streams run (each refusal pauses the connection for
        # refusal-pause, and a stream answered through the other worker takes one more hop).
        vhosts={"localhost": {"nodes": ["A"], "options": {"client-rate": "0.1", "client-burst": "2",
                                                           "access-log": str(own_log)}}},
        options={"admin": f"127.0.0.1:{free_port()}"})
    make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with H2Conn(gw.port) as c:
        statuses = [c.get(f"/r{i}").status for i in range(4)]
        limited = c.get("/over")
    assert statuses == [200, 200, 429, 429], statuses
    assert limited.status == 429 and any(k == b"retry-after" for k, _ in limited.headers), limited.headers
    wait_until(lambda: own_log.exists() and '"GET /r0 HTTP/2" 200' in own_log.read_text(), 5, what="the vhost's log")
    assert "vhost=localhost" in own_log.read_text()
    metrics = scrape(gw)
    assert metrics.value("blastbeat_protocol_responses_total", protocol="HTTP/2") == 5
    assert metrics.value("blastbeat_responses_total", vhost="localhost", code="4xx") == 3
    assert metrics.value("blastbeat_rejections_total", vhost="localhost", limit="client-rate") == 3
