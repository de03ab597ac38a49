"""WebSocket sessions through the real gateway with blastbeat.Node, and the ``websockets`` client library."""

from __future__ import annotations

import threading

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def ws_url(gw, path="/"):
    return f"ws://127.0.0.1:{gw.port}{path}"


def echo_handler(req):
    if not req.is_websocket:
        req.respond(200, None, b"plain http")
        return
    req.accept_websocket()  # dropped by a gateway-handshake vhost, needed on a backend-handshake one
    for message in req.websocket_messages():
        if message == "close please":
            req.close_websocket(4000, "as asked")
            return
        req.send_websocket(message)


def test_echo_text_and_binary(make_gateway, make_node):
    gw = make_gateway()
    make_node(gw, "app", echo_handler)
    with connect(ws_url(gw), open_timeout=10, close_timeout=5) as ws:
        ws.send("h\u00e9llo")
        assert ws.recv(timeout=10) == "h\u00e9llo"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=10) == b"\x00\x01\xff"
        big = "x" * 200_000
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_node_closes_with_a_code(make_gateway, make_node):
    gw = make_gateway()
    make_node(gw, "app", echo_handler)
    with connect(ws_url(gw), open_timeout=10, close_timeout=5) as ws:
        ws.send("close please")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4000 and closed.value.rcvd.reason == "as asked"


def test_client_close_ends_the_handler(make_gateway, make_node):
    gw = make_gateway()
    finished = threading.Event()

    def handler(req):
        for _ in req.websocket_messages():
            pass
        finished.set()

    make_node(gw, "app", handler)
    with connect(ws_url(gw), open_timeout=10, close_timeout=5) as ws:
        ws.send("one")
    assert finished.wait(10), "the client's close must end websocket_messages()"


def test_handler_return_closes_normally(make_gateway, make_node):
    gw = make_gateway()
    make_node(gw, "app", lambda req: req.send_websocket("only message"))
    with connect(ws_url(gw), open_timeout=10, close_timeout=5) as ws:
        assert ws.recv(timeout=10) == "only message"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1000


def test_backend_handshake_accept_with_subprotocol(make_gateway, make_node):
    gw = make_gateway(vhost_options={"websocket-handshake": "backend"})

    def handler(req):
        offered = [p.strip() for p in req.env.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "").split(",")]
        if req.path == "/private":
            req.reject_websocket(403, "private\n")
            return
        req.accept_websocket(protocol="superchat" if "superchat" in offered else None)
        req.send_websocket("accepted")
        req.receive_websocket(timeout=10)

    make_node(gw, "app", handler)
    with connect(ws_url(gw), subprotocols=["chat", "superchat"], open_timeout=10, close_timeout=5) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.recv(timeout=10) == "accepted"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(gw, "/private"), open_timeout=10)
    assert refused.value.response.status_code == 403


def test_bridge_refuses_websocket_cleanly(make_gateway, make_node):
    from blastbeat.bridge import HTTPBridge

    gw = make_gateway(vhost_options={"websocket-handshake": "backend"})
    make_node(gw, "app", HTTPBridge("http://127.0.0.1:9"))
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(gw), open_timeout=10)
    assert refused.value.response.status_code == 501
