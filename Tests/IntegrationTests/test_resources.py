"""No file descriptor leaks: after a mix of scenarios the gateway's fd count returns to its baseline."""

from __future__ import annotations

import socket
import time

from helpers import HTTPHandler, RawConn, hello_app, http_request, request_bytes


def mixed_traffic(port: int) -> None:
    assert http_request(port).status == 200
    assert http_request(port, host="unknown.example").status == 404
    assert http_request(port, target="/a b").status == 400
    with RawConn(port) as c:  # keep-alive, then the client goes away
        for _ in range(3):
            c.send(request_bytes("GET", "/", "localhost"))
            assert c.read_response().status == 200
    c = RawConn(port)  # half a head, then an abortive close (RST)
    c.send(b"GET / HTTP/1.1\r\nHo")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    c = RawConn(port)  # a body that never completes
    c.send(request_bytes("POST", "/", "localhost", [("Content-Length", "100")], b"xx"))
    c.close()


def test_fd_count_returns_to_baseline(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    mixed_traffic(gw.port)  # warm-up: lazily created fds are part of the baseline
    time.sleep(0.5)
    baseline = gw.fd_count()
    listing = gw.fd_listing()
    for _ in range(10):
        mixed_traffic(gw.port)
    deadline = time.monotonic() + 5
    while gw.fd_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.fd_count() <= baseline, (
        f"fd leak: {gw.fd_count()} open, baseline {baseline}\nbaseline:\n{listing}\nnow:\n{gw.fd_listing()}")
