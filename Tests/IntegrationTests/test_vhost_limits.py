"""Per-vhost limits (README "Limits per vhost"): one tenant's settings and load stay its own.

Two vhosts on one gateway, a.test (tenant A) and b.test (tenant B), each with its own node; A's section sets
its own limits, B inherits [blastbeat]'s. Clients of the two tenants come from distinct loopback addresses.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from helpers import (HTTPHandler, RawConn, Request, hello_app, http_request, request_bytes, respond,
                     stopped_totals)


def request_from(port: int, source: str, host: str, method: str = "GET", target: str = "/", body: bytes = b"",
                 headers=(), timeout: float = 10.0):
    """One request from loopback address `source`; (status or error text, seconds, response or None)."""
    started = time.monotonic()
    try:
        with RawConn(port, timeout=timeout, source=source) as c:
            hdrs = list(headers) + ([("Content-Length", str(len(body)))] if body or method == "POST" else [])
            c.send(request_bytes(method, target, host, hdrs, body))
            resp = c.read_response(method, timeout=timeout)
            return resp.status, time.monotonic() - started, resp
    except Exception as e:  # noqa: BLE001 - reported by the assertions
        return f"{type(e).__name__}: {e}", time.monotonic() - started, None


def two_tenants(make_gateway, a_options, options=None):
    return make_gateway(
        vhosts={"a.test": {"nodes": ["ALPHA"], "options": a_options}, "b.test": ["BETA"]}, options=options)


def test_max_body_size_per_vhost(make_gateway, make_backend):
    """A's 1 KiB limit answers A's 2 KiB upload 413 before anything reaches its node; B (global 16m) takes it.
    A vhost may also allow more than [blastbeat] (c.test: 64 KiB over a global 8 KiB)."""
    gw = make_gateway(
        vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"max-body-size": "1k"}}, "b.test": ["BETA"],
                "c.test": {"nodes": ["GAMMA"], "options": {"max-body-size": "64k"}}},
        options={"max-body-size": "8k"})
    alpha = make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    make_backend(gw, "GAMMA", HTTPHandler(hello_app(b"c")))
    status, _, resp = request_from(gw.port, "127.0.0.2", "a.test", "POST", body=b"x" * 2048)
    assert status == 413, status
    assert alpha.messages(b"uwsgi") == []
    assert request_from(gw.port, "127.0.0.2", "a.test", "POST", body=b"x" * 1000)[0] == 200
    # Chunked bodies are bounded by the vhost's limit too.
    with RawConn(gw.port) as c:
        c.send(request_bytes("POST", "/", "a.test", [("Transfer-Encoding", "chunked")]) + b"800\r\n" + b"x" * 2048
               + b"\r\n0\r\n\r\n")
        assert c.read_response().status == 413
    assert request_from(gw.port, "127.0.0.3", "b.test", "POST", body=b"x" * 4096)[0] == 200
    assert request_from(gw.port, "127.0.0.3", "b.test", "POST", body=b"x" * 9000)[0] == 413
    assert request_from(gw.port, "127.0.0.4", "c.test", "POST", body=b"x" * 60_000)[0] == 200


def test_backend_timeout_per_vhost(make_gateway, make_backend):
    """A's node never answers: A's clients get 504 after A's own 1 s, while B's slow (2 s) answers, within the
    global 5 s, still arrive."""
    gw = two_tenants(make_gateway, {"backend-timeout": "1"})
    make_backend(gw, "ALPHA", lambda sid, mtype, body, send: None)
    beta_ref = [None]

    def slow_b(req: Request, send):
        beta_ref[0].call_later(2.0, lambda: respond(send, req.sid, b"b"))

    beta_ref[0] = make_backend(gw, "BETA", HTTPHandler(slow_b))
    with ThreadPoolExecutor(4) as pool:
        a = pool.submit(request_from, gw.port, "127.0.0.2", "a.test")
        b = pool.submit(request_from, gw.port, "127.0.0.3", "b.test")
        a_status, a_time, _ = a.result()
        b_status, b_time, resp = b.result()
    assert a_status == 504 and 0.8 <= a_time <= 2.5, (a_status, a_time)
    assert b_status == 200 and resp.body == b"b" and b_time >= 1.9, (b_status, b_time)


def test_max_in_flight_keeps_a_busy_tenant_to_its_share(make_gateway, make_backend):
    """A allows 3 requests at its node. A's node holds them (1.5 s each): the 4th and later get 503 with
    Retry-After at once, counted in the stop line; B's requests meanwhile are served at once; once A's node
    answers, A takes requests again."""
    gw = two_tenants(make_gateway, {"max-in-flight": "3"})
    alpha_ref = [None]

    def slow_a(req: Request, send):
        alpha_ref[0].call_later(1.5, lambda: respond(send, req.sid, b"a"))

    alpha_ref[0] = make_backend(gw, "ALPHA", HTTPHandler(slow_a))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    with ThreadPoolExecutor(8) as pool:
        held = [pool.submit(request_from, gw.port, f"127.0.1.{i + 1}", "a.test", target=f"/held{i}")
                for i in range(3)]
        alpha_ref[0].wait_for(lambda: len(alpha_ref[0].messages(b"uwsgi")) == 3, what="A's 3 requests at its node")
        refused = [request_from(gw.port, "127.0.1.9", "a.test", target=f"/over{i}") for i in range(3)]
        b_results = [request_from(gw.port, "127.0.2.1", "b.test", target=f"/b{i}") for i in range(5)]
        held_results = [f.result() for f in held]
    for status, seconds, resp in refused:
        assert status == 503 and seconds < 0.5, (status, seconds)
        assert resp.header("Retry-After") is not None
    assert [r[0] for r in b_results] == [200] * 5 and max(r[1] for r in b_results) < 0.5, b_results
    assert [r[0] for r in held_results] == [200] * 3, held_results
    assert len(alpha_ref[0].messages(b"uwsgi")) == 3, "refused requests must not reach the node"
    # The slots went back: A is served again.
    assert request_from(gw.port, "127.0.1.10", "a.test")[0] == 200
    gw.stop()
    assert stopped_totals(gw.stderr())["requests over max-in-flight"] == 3, gw.stderr()[-2000:]
    assert "vhost a.test has max-in-flight = 3" in gw.stderr()


def test_in_flight_count_survives_lost_nodes_and_retries(make_gateway, make_backend):
    """The count behind max-in-flight is kept where node slots are (GatewaySession.settleSlot): a request
    whose node dies, and one the node asks to retry elsewhere, give their places back."""
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ONE", "TWO"], "options": {"max-in-flight": "1"}}})
    silent = make_backend(gw, "ONE", lambda sid, mtype, body, send: send(sid, b"retry", b"")
                          if mtype == b"uwsgi" else None)
    make_backend(gw, "TWO", HTTPHandler(hello_app(b"two")))
    for i in range(4):  # each one: ONE asks for a retry, TWO answers; with a leak the second would get 503
        status, _, resp = request_from(gw.port, "127.0.0.2", "a.test", target=f"/{i}")
        assert status == 200, (i, status)
    silent.stop()
    for i in range(3):
        assert request_from(gw.port, "127.0.0.2", "a.test", target=f"/after{i}")[0] == 200


def test_check_accepts_vhost_limits_and_names_bad_values(make_gateway, tmp_path):
    import subprocess
    from helpers import blastbeat_bin
    conf = tmp_path / "limits.ini"
    conf.write_text("[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\nmax-in-flight = 100\n\n"
                    "[blastbeat:a.test]\nnode = A\nbackend-timeout = 2.5\nbody-timeout = 3\nmax-body-size = 1m\n"
                    "max-output-buffer = 2m\nwebsocket-max-message = 64k\nmax-in-flight = 10\n")
    ok = subprocess.run([blastbeat_bin(), "--check", str(conf)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    for line, bad in [(8, "max-body-size = lots"), (9, "max-in-flight = 0"), (8, "backend-timeout = -1")]:
        conf.write_text("[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\n\n"
                        "[blastbeat:a.test]\nnode = A\n\n" + ("\n" if line == 9 else "") + bad + "\n")
        res = subprocess.run([blastbeat_bin(), "--check", str(conf)], capture_output=True, text=True, timeout=30)
        key = bad.split(" =")[0]
        assert res.returncode != 0 and f":{line}" in res.stderr and key in res.stderr, (bad, res.stderr)
