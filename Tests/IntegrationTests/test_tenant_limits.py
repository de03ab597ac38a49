"""Per-client and per-vhost admission (README "Limits per vhost"): client-rate / client-burst.

Two tenants, a.test and b.test, each with its own node; clients come from distinct loopback addresses
(127.0.0.2, 127.0.0.3, ...), which is what the gateway counts them by.
"""

from __future__ import annotations

import re
import subprocess
import time

from helpers import (ACCESS_LOG_WORKER, HTTPHandler, RawConn, blastbeat_bin, hello_app, request_bytes, respond,
                     stopped_totals)


def get(conn: RawConn, host: str, target: str = "/", method: str = "GET"):
    conn.send(request_bytes(method, target, host))
    return conn.read_response(method)


def test_client_rate_limits_one_address_and_not_another(make_gateway, make_backend):
    """a.test allows 2 requests/s with bursts of 3 per client address. 127.0.0.2 gets its burst, then 429 with
    Retry-After: 1 on the same keep-alive connection, which stays usable: its next request is read after a pause
    (at most refusal-pause, 1 s), and once the bucket has refilled it is served again. 127.0.0.3 has its
    own bucket; b.test (no rate) serves 127.0.0.2 without limit. Refused requests never reach the node; the
    refusal is logged naming the vhost and address, and counted."""
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"client-rate": "2", "client-burst": "3"}},
                              "b.test": ["BETA"]})
    alpha = make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    with RawConn(gw.port, source="127.0.0.2") as c:
        assert [get(c, "a.test", f"/{i}").status for i in range(3)] == [200] * 3
        refused = get(c, "a.test", "/over")
        assert refused.status == 429, refused.raw
        assert refused.header("Retry-After") == "1"
        assert not refused.has_token("Connection", "close")
        assert b"rate" in refused.body
        started = time.monotonic()
        assert [get(c, "b.test", f"/b{i}").status for i in range(10)] == [200] * 10
        assert 0.4 < time.monotonic() - started < 2, "the next request is read after the pause, and only it waits"
        # The bucket refilled meanwhile (2/s, up to its burst of 3): served again until it is empty.
        again = []
        while len(again) < 5 and 429 not in again:
            again.append(get(c, "a.test", f"/again{len(again)}").status)
        assert again[0] == 200 and again[-1] == 429 and len(again) <= 4, again
    with RawConn(gw.port, source="127.0.0.3") as c:
        assert [get(c, "a.test", f"/three{i}").status for i in range(3)] == [200] * 3
    assert len(alpha.messages(b"uwsgi")) == 3 + len(again) - 1 + 3, "refused requests must not reach the node"
    gw.stop()
    err = gw.stderr()
    assert "client 127.0.0.2 is over client-rate (2.0/s, burst 3) for vhost a.test" in err, err[-2000:]
    assert "Retry-After: 1" in err
    assert err.count("is over client-rate") == 1, "logged once per 10 s per client and vhost"
    assert stopped_totals(err)["requests over client-rate"] == 2, err[-2000:]


def test_retry_after_is_the_wait_for_the_next_token_and_recovery(make_gateway, make_backend):
    """[blastbeat] client-rate = 0.5 (one request every 2 s), no burst set: a burst of 1. The second request
    is told Retry-After: 2; after 2 s the client is served again. b.test turns the default off."""
    gw = make_gateway(vhosts={"a.test": ["ALPHA"], "b.test": {"nodes": ["BETA"], "options": {"client-rate": "off"}}},
                      options={"client-rate": "0.5"})
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    with RawConn(gw.port, source="127.0.0.4") as c:
        assert get(c, "a.test").status == 200
        refused = get(c, "a.test")
        assert refused.status == 429 and refused.header("Retry-After") == "2", refused.raw
        head = get(c, "a.test", method="HEAD")
        assert head.status == 429 and head.body == b""
        assert [get(c, "b.test").status for _ in range(5)] == [200] * 5
        time.sleep(2.1)
        assert get(c, "a.test").status == 200


def test_pipelined_requests_past_the_burst_and_garbage_after_them(make_gateway, make_backend):
    """Five pipelined GETs with a burst of 2: 200, 200, then 429 three times, in order, on one connection that
    stays open. A malformed request pipelined behind a 429 gets 400 and the close, as anywhere else. A refused
    request with a body is answered with Connection: close (its body is not read to be thrown away)."""
    # workers = 1: the second connection must meet the bucket the first one emptied, and client-rate is counted
    # by each worker for its own clients (README "Worker processes": a new connection may land on another
    # worker, with a full bucket of its own).
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ALPHA"],
                                         "options": {"client-rate": "0.1", "client-burst": "2"}}},
                      options={"workers": "1"})
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    with RawConn(gw.port, source="127.0.0.5") as c:
        c.send(b"".join(request_bytes("GET", f"/{i}", "a.test") for i in range(5)))
        statuses = [c.read_response().status for _ in range(5)]
        assert statuses == [200, 200, 429, 429, 429], statuses
        assert not c.is_closed_or_data(0.3), "the connection stays open and quiet"
        c.send(request_bytes("GET", "/x", "a.test") + b"GARBAGE\r\n\r\n")
        assert c.read_response().status == 429
        assert c.read_response().status == 400
        assert c.is_closed_by_peer()
    with RawConn(gw.port, source="127.0.0.5") as c:
        c.send(request_bytes("POST", "/upload", "a.test", [("Content-Length", "5")], b"hello"))
        resp = c.read_response()
        # Retry-After: the seconds until the next token, less the pauses after the refusals above.
        assert resp.status == 429 and resp.has_token("Connection", "close") and 1 <= int(resp.header("Retry-After")) <= 10
        assert c.is_closed_by_peer()


def test_max_connections_per_vhost_and_connections_moving_between_vhosts(make_gateway, make_backend):
    """a.test may hold 3 connections (its own max-connections; the total is [blastbeat]'s 50). Three keep-alive
    connections of A's clients hold them, idle after their request: a 4th client of A gets 503 with Retry-After on
    a connection that stays open without counting for A (a client retrying at once must not cycle through the
    listen queue), while B's clients (another address) are served, and a keep-alive connection of B whose next
    request is for A is refused the same way and stays B's. One of A's connections moving to b.test gives its
    place back, as does one closing."""
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"max-connections": "3"}},
                              "b.test": ["BETA"]}, options={"max-connections": "50"})
    alpha = make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    held = [RawConn(gw.port, source="127.0.0.2") for _ in range(3)]
    try:
        for c in held:
            assert get(c, "a.test").status == 200
        with RawConn(gw.port, source="127.0.0.2") as c:
            refused = get(c, "a.test", "/fourth")
            assert refused.status == 503 and refused.header("Retry-After") is not None, refused.raw
            assert not refused.has_token("Connection", "close"), refused.raw
            assert get(c, "a.test", "/fourth-again").status == 503, "A is still full"
        with RawConn(gw.port, source="127.0.0.3") as b:
            assert [get(b, "b.test", f"/b{i}").status for i in range(5)] == [200] * 5
            assert get(b, "a.test", "/b-to-a").status == 503
            assert get(b, "b.test", "/still-b").status == 200, "the refused connection stays, and B's"
        assert len(alpha.messages(b"uwsgi")) == 3, "refused requests must not reach A's node"
        # One of A's connections asks for b.test: it is B's now, and A has a place again.
        assert get(held[0], "b.test", "/moved").status == 200
        with RawConn(gw.port, source="127.0.0.4") as c:
            assert get(c, "a.test", "/after-move").status == 200
            # A is full again (held[1], held[2] and this one): closing one frees a place.
            held[1].close()
            time.sleep(0.3)
            with RawConn(gw.port, source="127.0.0.5") as d:
                assert get(d, "a.test", "/after-close").status == 200
    finally:
        for c in held:
            c.close()
    gw.stop()
    err = gw.stderr()
    assert "vhost a.test has max-connections = 3 connections; answering 503 to 127.0.0.2" in err, err[-2000:]
    assert stopped_totals(err)["over a vhost's max-connections"] == 3, err[-2000:]


def test_access_log_names_the_vhost_and_a_vhost_may_have_its_own(make_gateway, make_backend, tmp_path):
    """Every access log line ends with vhost=NAME (vhost=- when no vhost took the request), then worker=K with
    several workers (README "Worker processes"). a.test logs to its
    own file, b.test to [blastbeat]'s (standard output here), c.test not at all; a 429 of a.test is in a.test's
    file."""
    own = tmp_path / "a-access.log"
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"access-log": own, "client-rate": "0.1",
                                                                       "client-burst": "1"}},
                              "b.test": ["BETA"], "c.test": {"nodes": ["BETA"], "options": {"access-log": "off"}}})
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    with RawConn(gw.port, source="127.0.0.6") as c:
        assert get(c, "a.test", "/for-a").status == 200
        assert get(c, "a.test", "/for-a-again").status == 429
        assert get(c, "b.test", "/for-b").status == 200
        assert get(c, "c.test", "/for-c").status == 200
        assert get(c, "nowhere.test", "/for-nobody").status == 404
    gw.stop()
    out = gw.stdout()
    assert re.search(r'^127\.0\.0\.6 - - \[[^\]]+\] "GET /for-b HTTP/1\.1" 200 1 "-" "-" node=BETA time=\d+\.\d{3} '
                     rf'vhost=b\.test{ACCESS_LOG_WORKER}$', out, re.M), out
    assert re.search(rf'"GET /for-nobody HTTP/1\.1" 404 .* node=\S+ time=\S+ vhost=-{ACCESS_LOG_WORKER}$',
                     out, re.M), out
    assert "/for-a" not in out and "/for-c" not in out
    text = own.read_text()
    assert re.search(rf'"GET /for-a HTTP/1\.1" 200 1 .* node=ALPHA time=\S+ vhost=a\.test{ACCESS_LOG_WORKER}$',
                     text, re.M), text
    assert re.search(rf'"GET /for-a-again HTTP/1\.1" 429 \d+ .* vhost=a\.test{ACCESS_LOG_WORKER}$', text, re.M), text
    assert "/for-b" not in text and "/for-c" not in text


def test_check_names_the_line_of_a_vhost_access_log_that_cannot_be_opened(make_gateway, tmp_path):
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"access-log": "/nonexistent-dir/a.log"}}},
                      start=False)
    gw.config_path.write_text(gw.config_text())
    result = subprocess.run([blastbeat_bin(), "--check", str(gw.config_path)], capture_output=True, text=True,
                            timeout=10)
    assert result.returncode != 0
    line = gw.config_text().splitlines().index("access-log = /nonexistent-dir/a.log") + 1
    assert re.search(rf":{line}: access-log of vhost a\.test: .*nonexistent-dir", result.stderr), result.stderr


def test_max_in_flight_refusal_keeps_the_connection(make_gateway, make_backend):
    """At a.test's max-in-flight a GET gets 503 with Retry-After at once and its connection stays (a client
    retrying at once costs the gateway no accept and close); once A's node answers, the same connection is
    served. A refused POST is answered with Connection: close."""
    gw = make_gateway(vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"max-in-flight": "1"}}})
    alpha_ref = [None]

    def slow_a(req, send):
        if req.path == "/hold":
            alpha_ref[0].call_later(1.0, lambda: respond(send, req.sid, b"held"))
        else:
            respond(send, req.sid, b"a")

    alpha_ref[0] = make_backend(gw, "ALPHA", HTTPHandler(slow_a))
    with RawConn(gw.port, source="127.0.0.7") as holder, RawConn(gw.port, source="127.0.0.8") as c:
        holder.send(request_bytes("GET", "/hold", "a.test"))
        alpha_ref[0].wait_for(lambda: len(alpha_ref[0].messages(b"uwsgi")) == 1, what="the held request")
        started = time.monotonic()
        refused = get(c, "a.test", "/over")
        assert refused.status == 503 and time.monotonic() - started < 0.5, refused.raw
        assert refused.header("Retry-After") is not None and not refused.has_token("Connection", "close")
        assert holder.read_response().body == b"held"
        assert get(c, "a.test", "/after").status == 200
    with RawConn(gw.port, source="127.0.0.8") as holder, RawConn(gw.port, source="127.0.0.9") as c:
        holder.send(request_bytes("GET", "/hold", "a.test"))
        alpha_ref[0].wait_for(lambda: len(alpha_ref[0].messages(b"uwsgi")) == 3, what="the second held request")
        c.send(request_bytes("POST", "/upload", "a.test", [("Content-Length", "2")], b"hi"))
        resp = c.read_response()
        assert resp.status == 503 and resp.has_token("Connection", "close") and c.is_closed_by_peer()
