"""Several nodes per vhost: load sharing, sticky sessions, node death (kill -9), ping liveness, retry."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import HTTPHandler, RawConn, Request, hello_app, http_request, request_bytes, respond


def delayed_app(backend_ref: list, name: str, delay: float):
    def app(req: Request, send):
        body = f"{name} {req.path}".encode()
        backend_ref[0].call_later(delay, lambda: respond(send, req.sid, body, headers=[("X-Node", name)]))

    return app


def timed_request(port: int, path: str, timeout: float = 10.0):
    """(status or exception text, body, seconds)."""
    started = time.monotonic()
    try:
        resp = http_request(port, target=path, timeout=timeout)
        return resp.status, resp.body, time.monotonic() - started
    except Exception as e:  # noqa: BLE001 - reported by the assertions
        return f"{type(e).__name__}: {e}", b"", time.monotonic() - started


def test_two_nodes_share_concurrent_load(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1", "NODE2"]})
    ref1, ref2 = [None], [None]
    h1, h2 = HTTPHandler(delayed_app(ref1, "NODE1", 0.4)), HTTPHandler(delayed_app(ref2, "NODE2", 0.4))
    ref1[0] = make_backend(gw, "NODE1", h1)
    ref2[0] = make_backend(gw, "NODE2", h2)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda i: timed_request(gw.port, f"/c{i}"), range(10)))
    assert all(r[0] == 200 for r in results), results
    n1, n2 = len(h1.requests), len(h2.requests)
    assert n1 + n2 == 10
    assert n1 >= 3 and n2 >= 3, f"fewest-in-flight should balance 10 concurrent requests: NODE1={n1} NODE2={n2}"


def test_session_is_pinned_to_its_node(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1", "NODE2"]})
    h1, h2 = HTTPHandler(hello_app(b"one")), HTTPHandler(hello_app(b"two"))
    make_backend(gw, "NODE1", h1)
    make_backend(gw, "NODE2", h2)
    with RawConn(gw.port) as c:
        bodies = set()
        for i in range(6):
            c.send(request_bytes("GET", f"/{i}", "localhost"))
            bodies.add(c.read_response().body)
    assert len(bodies) == 1, f"one connection's requests must all go to one node, got {bodies!r}"


def test_node_killed_mid_traffic_no_client_hangs(make_gateway, spawn_backend):
    """kill -9 one of two node processes under load: every request is answered (200/502/503) in bounded
    time, and once the death is detected every new request is served by the survivor."""
    gw = make_gateway(vhosts={"localhost": ["NODE1", "NODE2"]},
                      options={"ping-freq": "0.5", "ping-timeout": "2", "backend-timeout": "8"})
    n1 = spawn_backend(gw, "NODE1", delay=0.2)
    spawn_backend(gw, "NODE2", delay=0.2)

    results: list[tuple] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int):
        i = 0
        while not stop.is_set():
            r = timed_request(gw.port, f"/t{k}-{i}", timeout=12)
            with lock:
                results.append(r)
            i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before_kill = len(results)
    n1.kill9()
    killed_at = time.monotonic()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "a client is still waiting: a request hung"
    assert before_kill > 0, "no traffic before the kill"
    bad = [r for r in results if r[0] not in (200, 502, 503)]
    assert not bad, f"requests without a proper answer: {bad[:5]!r}"
    slow = [r for r in results if r[2] > 6.0]
    assert not slow, f"requests answered too late (node death must be detected within ping-timeout): {slow[:5]!r}"
    assert any(r[0] == 200 and r[1].startswith(b"NODE2") for r in results)

    # After ping-timeout the dead node is out of rotation: everything goes to NODE2.
    time.sleep(max(0.0, killed_at + 3.0 - time.monotonic()))
    after = [timed_request(gw.port, f"/after{i}") for i in range(6)]
    assert all(r[0] == 200 and r[1].startswith(b"NODE2 ") for r in after), after


def test_node_killed_during_request_gives_502(make_gateway, spawn_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]},
                      options={"ping-freq": "0.5", "ping-timeout": "2", "backend-timeout": "20"})
    n1 = spawn_backend(gw, "NODE1", delay=30)
    with RawConn(gw.port, timeout=15) as c:
        c.send(request_bytes("GET", "/slow", "localhost"))
        time.sleep(0.5)
        n1.kill9()
        killed = time.monotonic()
        resp = c.read_response(timeout=10)
        elapsed = time.monotonic() - killed
    assert resp.status_line == "HTTP/1.1 502 Bad Gateway"
    assert elapsed < 2 + 2, f"502 only {elapsed:.2f}s after the kill (ping-timeout is 2 s)"


def test_node_that_stops_answering_pings_is_dead_then_recovers(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={"ping-freq": "0.5", "ping-timeout": "2"})
    backend = make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    assert http_request(gw.port).status == 200
    backend.pong_enabled = False
    time.sleep(3.0)
    started = time.monotonic()
    resp = http_request(gw.port)
    assert resp.status == 503, "a node silent for longer than ping-timeout must not get requests"
    assert time.monotonic() - started < 1.0
    assert resp.header("Retry-After") is not None
    uwsgi_before = len(backend.messages(b"uwsgi"))
    backend.pong_enabled = True
    pings = len(backend.messages(b"ping"))
    backend.wait_for(lambda: len(backend.messages(b"ping")) > pings + 1, timeout=5, what="pings after recovery")
    time.sleep(0.2)
    assert http_request(gw.port).status == 200, "a node that answers pings again is alive again"
    assert len(backend.messages(b"uwsgi")) == uwsgi_before + 1


def test_retry_with_single_node_gives_502(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    handler = HTTPHandler(lambda req, send: send(req.sid, b"retry", b""))
    make_backend(gw, "NODE1", handler)
    resp = http_request(gw.port)
    assert resp.status_line == "HTTP/1.1 502 Bad Gateway"
    assert len(handler.requests) == 1, "with no other node the request is not resent"


def test_retry_is_bounded_by_max_hops(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["N1", "N2", "N3"]}, options={"max-hops": "1"})
    handlers = [HTTPHandler(lambda req, send: send(req.sid, b"retry", b"")) for _ in range(3)]
    for name, handler in zip(("N1", "N2", "N3"), handlers):
        make_backend(gw, name, handler)
    resp = http_request(gw.port)
    assert resp.status_line == "HTTP/1.1 502 Bad Gateway"
    counts = [len(h.requests) for h in handlers]
    assert sum(counts) == 2, f"max-hops = 1 allows the first try plus one resend, got {counts}"
    assert max(counts) == 1, f"a retry goes to a different node, got {counts}"


def test_retry_from_all_nodes_gives_502(make_gateway, make_backend):
    """Every node says retry: the request hops between different nodes, at most max-hops times, then 502."""
    gw = make_gateway(vhosts={"localhost": ["N1", "N2"]}, options={"max-hops": "3"})
    handlers = [HTTPHandler(lambda req, send: send(req.sid, b"retry", b"")) for _ in range(2)]
    make_backend(gw, "N1", handlers[0])
    make_backend(gw, "N2", handlers[1])
    resp = http_request(gw.port)
    assert resp.status_line == "HTTP/1.1 502 Bad Gateway"
    tries = sorted([(r.at, name) for name, h in zip(("N1", "N2"), handlers) for r in h.requests])
    order = [name for _, name in tries]
    assert set(order) == {"N1", "N2"}, f"the retry must reach the other node: {order}"
    assert len(order) <= 1 + 3, f"at most max-hops resends: {order}"
    assert all(a != b for a, b in zip(order, order[1:])), f"a retry goes to a different node: {order}"


def test_node_lost_while_a_request_awaits_its_head_releases_its_slot(make_gateway, make_backend):
    """The request's slot on its node is released when the node goes away before answering (it used to stay
    counted: the node then looked busy for ever and fewest-in-flight balancing sent everything to the other
    node). The GET itself is re-sent to NODE2; after NODE1 is back, sequential requests alternate again."""
    gw = make_gateway(vhosts={"localhost": ["NODE1", "NODE2"]},
                      options={"ping-freq": "0.5", "ping-timeout": "2", "backend-timeout": "20"})
    h2 = HTTPHandler(hello_app(b"two"))
    make_backend(gw, "NODE2", h2)
    silent = make_backend(gw, "NODE1", handler=lambda sid, mtype, body, send: None)
    while True:  # until a request lands on NODE1 (the other goes to NODE2 and is answered)
        with RawConn(gw.port, timeout=15) as c:
            c.send(request_bytes("GET", "/held", "localhost"))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not silent.messages(b"uwsgi"):
                time.sleep(0.01)
            if silent.messages(b"uwsgi"):
                silent.stop()  # NODE1 goes away holding the request
                resp = c.read_response(timeout=10)
                break
            c.read_response(timeout=10)
    assert resp.status == 200 and resp.body == b"two", "the held GET is re-sent to NODE2"
    h1 = HTTPHandler(hello_app(b"one"))
    make_backend(gw, "NODE1", h1)
    bodies = [http_request(gw.port).body for _ in range(20)]
    assert bodies.count(b"one") >= 5 and bodies.count(b"two") >= 5, bodies
