"""Admission before the Host is known (README "Limits per vhost", "Admission"): one client address cannot
hold every connection, and at max-connections idle and slow connections make room for new clients.
Clients are distinct loopback source addresses (all of 127.0.0.0/8 is loopback)."""

from __future__ import annotations

import re
import socket
import time

from helpers import HTTPHandler, RawConn, hello_app, request_bytes, wait_until


def served(port: int, source: str, host: str = "localhost", timeout: float = 5.0) -> int:
    with RawConn(port, timeout=timeout, source=source) as c:
        c.send(request_bytes("GET", "/", host))
        return c.read_response(timeout=timeout).status


def refused_or_closed(port: int, source: str, timeout: float = 3.0) -> bytes:
    """What a new connection from `source` reads before the gateway closes it (it sends nothing itself)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return got
            got += chunk
    finally:
        s.close()


def test_one_address_cannot_hold_every_connection(make_gateway, make_backend):
    # One process: max-client-connections counts each worker's own connections of an address (README "Worker
    # processes"), and the kernel may hand the fifth connection to a worker holding none of the four.
    gw = make_gateway(options={"max-client-connections": "4", "keepalive-timeout": "30", "workers": 1})
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    held = [RawConn(gw.port, source="127.0.0.2") for _ in range(4)]
    try:
        for c in held:  # all four are open and served
            c.send(request_bytes("GET", "/", "localhost"))
            assert c.read_response().status == 200
        answer = refused_or_closed(gw.port, "127.0.0.2")
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"Retry-After:" in answer
        assert served(gw.port, "127.0.0.3") == 200, "another address is not affected"
        held.pop().close()
        wait_until(lambda: served(gw.port, "127.0.0.2") == 200, timeout=5, what="a freed place for 127.0.0.2")
    finally:
        for c in held:
            c.close()
    gw.stop()
    assert "client 127.0.0.2 holds max-client-connections (4)" in gw.stderr()
    assert re.search(r"[1-9]\d* connections over max-client-connections", gw.stderr()), gw.stderr()[-1500:]


def test_idle_keepalive_connections_make_room_at_max_connections(make_gateway, make_backend):
    """20 idle keep-alive connections fill max-connections; a new client is served at once, in place of the
    oldest idle one, and the requests in progress are never the ones closed."""
    # One process: max-connections bounds each worker's own connections (README "Worker processes").
    gw = make_gateway(options={"max-connections": "20", "keepalive-timeout": "60", "max-client-connections": "100",
                               "workers": 1})
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    idle = []
    for i in range(20):
        c = RawConn(gw.port, source="127.0.0.2")
        c.send(request_bytes("GET", f"/{i}", "localhost"))
        assert c.read_response().status == 200
        idle.append(c)
        time.sleep(0.01)  # an order of age
    try:
        started = time.monotonic()
        assert served(gw.port, "127.0.0.3") == 200
        assert time.monotonic() - started < 2
        # The oldest idle connection was the one closed.
        assert idle[0].is_closed_by_peer(3)
        idle[-1].send(request_bytes("GET", "/still-here", "localhost"))
        assert idle[-1].read_response().status == 200
    finally:
        for c in idle:
            c.close()
    gw.stop()
    assert "max-connections (20) reached: closing idle connections" in gw.stderr()
    assert re.search(r"[1-9]\d* closed to make room", gw.stderr()), gw.stderr()[-1500:]


def test_slow_head_senders_make_room_for_new_clients(make_gateway, make_backend):
    """A slowloris from many addresses (partial heads) fills max-connections: a new client of another vhost is
    still served, in place of the connection that has been sending its head the longest."""
    gw = make_gateway(vhosts={"a.test": ["ALPHA"], "b.test": ["BETA"]},
                      # One process: max-connections is per worker (README "Worker processes").
                      options={"max-connections": "30", "header-timeout": "20", "max-client-connections": "100",
                               "workers": 1})
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"a")))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b")))
    slow = []
    for i in range(30):
        c = RawConn(gw.port, source=f"127.0.9.{i + 1}")
        c.send(b"GET / HTTP/1.1\r\nHost: a.te")
        slow.append(c)
        time.sleep(0.01)
    try:
        for n in range(5):
            started = time.monotonic()
            assert served(gw.port, f"127.0.10.{n + 1}", host="b.test") == 200
            assert time.monotonic() - started < 2
        assert slow[0].is_closed_by_peer(3), "the oldest partial head made room"
    finally:
        for c in slow:
            c.close()
