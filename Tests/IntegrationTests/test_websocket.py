"""WebSocket through the gateway: the real binary, pyzmq nodes, the ``websockets`` client and raw frames.

Wire protocol under test (Connection+WebSocket.swift): the upgrade request reaches the node as ``uwsgi``;
each complete client message becomes one ``websocket`` (text) or ``websocket-binary`` message, reassembled
and decompressed; the node's ``websocket``/``websocket-binary`` become text/binary frames; the node's ``end``
closes with 1000 or the code in its body; the client's close (or disconnect) sends ``end`` to the node.
"""

from __future__ import annotations

import os
import signal
import time
import zlib

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from helpers import ConnectionClosed as ConnectionClosedRaw
from helpers import http_request, respond, uwsgi_to_dict, wait_until
from ws_helpers import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Inflater, RawWS, close_body,
                        deflate_message, encode_frame, with_vhost_keys, ws_echo_handler)

NODE = "ws"
MiB = 1 << 20


# ----------------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def ws_gateway(make_gateway, make_backend):
    """``start(handler=..., vhost_keys=..., options=...)`` → (gateway, backend): one default vhost served by
    the in-process node ``ws`` (by default a WebSocket echo)."""

    def start(handler=ws_echo_handler, vhost_keys=None, options=None, backend: bool = True):
        gw = make_gateway(vhosts={"localhost": {"nodes": [NODE], "default": True}}, options=options, start=False)
        if vhost_keys:
            with_vhost_keys(gw, {"localhost": vhost_keys})
        gw.start()
        node = make_backend(gw, NODE, handler=handler) if backend else None
        return gw, node

    return start


def ws_connect(gw, path: str = "/", **kwargs):
    """A ``websockets`` sync client to the gateway, every wait bounded, no keepalive pings of its own."""
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("proxy", None)
    return connect(f"ws://127.0.0.1:{gw.port}{path}", **kwargs)


def env_of(backend, sid: bytes) -> dict[bytes, bytes]:
    return uwsgi_to_dict(backend.wait_message(b"uwsgi", sid)[0].body)


def only_sid(backend) -> bytes:
    sids = backend.wait_for(lambda: backend.sids(), 5, "an upgrade request")
    assert len(sids) == 1, sids
    return sids[0]


def ws_payloads(backend, sid: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """(type, body) of the WebSocket messages the node received, in order."""
    return [(m.type, m.body) for m in backend.messages(sid=sid) if m.type in (b"websocket", b"websocket-binary")]


class Deflater:
    """Client-side permessage-deflate with context takeover (one zlib stream for the connection)."""

    def __init__(self):
        self.c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)

    def message(self, data: bytes) -> bytes:
        out = self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]


# ----------------------------------------------------------------------------------------------------------------
# echo, messages and the backend's view


def test_text_and_binary_echo(ws_gateway):
    gw, node = ws_gateway()
    with ws_connect(gw, "/echo?room=1") as ws:
        assert ws.response.status_code == 101
        ws.send("héllo, wörld ✓")
        assert ws.recv(timeout=5) == "héllo, wörld ✓"
        ws.send(bytes(range(256)))
        assert ws.recv(timeout=5) == bytes(range(256))
        ws.send("")
        assert ws.recv(timeout=5) == ""
        ws.send(b"")
        assert ws.recv(timeout=5) == b""
    sid = only_sid(node)
    env = env_of(node, sid)
    assert env[b"REQUEST_METHOD"] == b"GET"
    assert env[b"PATH_INFO"] == b"/echo" and env[b"QUERY_STRING"] == b"room=1"
    assert env[b"HTTP_UPGRADE"].lower() == b"websocket"
    assert b"HTTP_SEC_WEBSOCKET_KEY" in env
    assert ws_payloads(node, sid) == [
        (b"websocket", "héllo, wörld ✓".encode()),
        (b"websocket-binary", bytes(range(256))),
        (b"websocket", b""),
        (b"websocket-binary", b""),
    ]
    node.wait_message(b"end", sid)
    # Every message of the session on the upgrade's sid, and nothing else on it.
    assert {m.type for m in node.messages(sid=sid)} <= {b"uwsgi", b"websocket", b"websocket-binary", b"end"}


def test_sessions_have_their_own_sids(ws_gateway):
    gw, node = ws_gateway()
    with ws_connect(gw) as a, ws_connect(gw) as b:
        a.send("from a")
        b.send("from b")
        assert a.recv(timeout=5) == "from a"
        assert b.recv(timeout=5) == "from b"
    sids = node.sids()
    assert len(sids) == 2 and len(set(sids)) == 2 and all(len(s) == 16 for s in sids)
    assert sorted(ws_payloads(node, sid)[0][1] for sid in sids) == [b"from a", b"from b"]
    assert all(len(ws_payloads(node, sid)) == 1 for sid in sids)


def test_frame_sent_with_the_handshake(ws_gateway):
    """A frame in the same TCP segment as the upgrade request is processed once the upgrade is done."""
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        c.send_raw(c.request() + encode_frame(OP_TEXT, b"right behind"))
        resp = c.conn.read_response(timeout=5)
        assert resp.status == 101, resp.raw
        assert c.recv_message(timeout=5) == (OP_TEXT, b"right behind")


def test_invalid_utf8_text_from_backend_is_dropped(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"websocket":
            send(sid, b"websocket", b"\xff\xfe not utf-8")
            send(sid, b"websocket", b"valid " + body)

    gw, node = ws_gateway(handler=handler)
    with ws_connect(gw) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "valid x"


# ----------------------------------------------------------------------------------------------------------------
# fragmentation, control frames


def test_fragmented_text_reaches_backend_whole(ws_gateway):
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        c.handshake()
        word = "wörld ✓".encode()
        # A multi-byte character split across two fragments, and a ping between fragments (RFC 6455 §5.4).
        c.send_frame(OP_TEXT, b"Hello, ", fin=False)
        c.send_frame(OP_PING, b"between")
        c.send_frame(OP_CONT, b"fragmented " + word[:2], fin=False)
        c.send_frame(OP_CONT, word[2:], fin=True)
        pong = c.recv_frame(5)
        assert (pong.opcode, pong.payload) == (OP_PONG, b"between")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"Hello, fragmented " + word)
    sid = only_sid(node)
    assert ws_payloads(node, sid) == [(b"websocket", b"Hello, fragmented " + word)]


def test_fragmented_binary_reaches_backend_whole(ws_gateway):
    gw, node = ws_gateway()
    parts = [os.urandom(100_000), os.urandom(1), b"", os.urandom(70_000)]
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_frame(OP_BINARY, parts[0], fin=False)
        for p in parts[1:-1]:
            c.send_frame(OP_CONT, p, fin=False)
        c.send_frame(OP_CONT, parts[-1], fin=True)
        assert c.recv_message(timeout=5) == (OP_BINARY, b"".join(parts))
    assert ws_payloads(node, only_sid(node)) == [(b"websocket-binary", b"".join(parts))]


def test_client_ping_answered_with_pong(ws_gateway):
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        c.handshake()
        for payload in (b"are you there?", b"", bytes(range(125))):
            c.send_frame(OP_PING, payload)
            f = c.recv_frame(5)
            assert (f.opcode, f.fin, f.payload) == (OP_PONG, True, payload)
        # An unsolicited pong needs no answer and does not disturb the session.
        c.send_frame(OP_PONG, b"unsolicited")
        c.send_text("still here")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"still here")
    with ws_connect(gw) as ws:
        assert ws.ping(b"lib").wait(5), "no pong for the websockets client's ping"
    # Control frames are the gateway's business: the node sees only the data message.
    assert [t for t, _ in ws_payloads(node)] == [b"websocket"]


# ----------------------------------------------------------------------------------------------------------------
# closing


def test_client_close_is_echoed_and_backend_gets_end(ws_gateway):
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_text("before close")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"before close")
        c.send_close(1000, b"bye")
        f = c.recv_close(5)
        assert f.close_code == 1000, f
        assert c.closed_by_peer(5), "the gateway kept the TCP connection open after the close handshake"
    node.wait_message(b"end", only_sid(node))


def test_client_close_codes_are_echoed(ws_gateway):
    gw, node = ws_gateway()
    for code in (1001, 4321):
        with RawWS(gw.port) as c:
            c.handshake()
            c.send_close(code, b"reason")
            f = c.recv_close(5)
            assert f.close_code == code, f
            assert c.closed_by_peer(5)
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_close(None)  # a close frame without a status code
        f = c.recv_close(5)
        assert f.payload == b"" or f.close_code == 1000, f
        assert c.closed_by_peer(5)
    with ws_connect(gw) as ws:
        ws.send("x")
        ws.recv(timeout=5)
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
    node.wait_for(lambda: len({m.sid for m in node.messages(b"end")}) == 4, 5, "end for each of the 4 sessions")


def test_client_disconnect_without_close_sends_end(ws_gateway):
    gw, node = ws_gateway()
    c = RawWS(gw.port)
    c.handshake()
    sid = only_sid(node)
    c.close()
    node.wait_message(b"end", sid)


def test_backend_end_closes_with_code_and_reason(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"websocket":
            if body == b"bye":
                send(sid, b"end", close_body(4000, "done here ✓".encode()))
            elif body == b"plain":
                send(sid, b"end", b"")
            elif body == b"invalid":
                send(sid, b"end", close_body(1005))  # 1005 must never be sent in a close frame
            else:
                send(sid, mtype, body)

    gw, node = ws_gateway(handler=handler)
    # The websockets client sees the code and the reason.
    with ws_connect(gw) as ws:
        ws.send("bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.protocol.close_rcvd.code == 4000 and ws.protocol.close_rcvd.reason == "done here ✓"
    # Byte-exact on a raw connection: the close frame, then TCP close after the client's answer.
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_text("bye")
        f = c.recv_close(5)
        assert (f.close_code, f.close_reason) == (4000, "done here ✓".encode())
        c.send_close(4000)
        assert c.closed_by_peer(5)
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_text("plain")
        f = c.recv_close(5)
        assert (f.close_code, f.close_reason) == (1000, b"")
        assert c.closed_by_peer(5)
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_text("invalid")
        f = c.recv_close(5)
        assert f.close_code == 1000, f"an invalid close code from the node must not reach the client: {f!r}"
        assert c.closed_by_peer(5)


def test_sigterm_closes_websockets_with_1001(ws_gateway):
    """Shutting down, the gateway tells WebSocket clients it is going away (RFC 6455 §7.4.1: 1001) instead
    of dropping the TCP connection (which the client sees as 1006, abnormal closure)."""
    gw, node = ws_gateway(options={"shutdown-timeout": "3"})
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_text("before shutdown")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"before shutdown")
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        try:
            f = c.recv_close(5)
        except ConnectionClosedRaw as e:
            pytest.fail(f"the gateway closed the TCP connection without a close frame "
                        f"{time.monotonic() - started:.1f}s after SIGTERM ({e})")
        assert f.close_code == 1001, f
        c.send_close(1001)
        assert c.closed_by_peer(5)
    assert gw.proc.wait(10) == 0


# ----------------------------------------------------------------------------------------------------------------
# sizes and compression


def test_large_messages_both_ways(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"websocket" and body == b"push":
            send(sid, b"websocket-binary", bytes(range(256)) * 4096)  # 1 MiB the client did not send
        elif mtype in (b"websocket", b"websocket-binary"):
            send(sid, mtype, body)

    gw, node = ws_gateway(handler=handler)
    text = ("0123456789abcdef" * (MiB // 16))
    blob = os.urandom(MiB)
    for compression in (None, "deflate"):
        with ws_connect(gw, compression=compression, max_size=4 * MiB) as ws:
            ws.send(text)
            assert ws.recv(timeout=10) == text
            ws.send(blob)
            assert ws.recv(timeout=10) == blob
            ws.send("push")
            assert ws.recv(timeout=10) == bytes(range(256)) * 4096
    got = [(t, len(b)) for t, b in ws_payloads(node)]
    assert got == [(b"websocket", MiB), (b"websocket-binary", MiB), (b"websocket", 4)] * 2
    assert [b for t, b in ws_payloads(node) if t == b"websocket-binary"] == [blob, blob]


def test_compression_negotiated_with_websockets_defaults(ws_gateway):
    gw, node = ws_gateway()
    with ws_connect(gw) as ws:  # websockets offers permessage-deflate by default
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ext.split(";")[0].strip() == "permessage-deflate", ext
        messages = ["a", "compress me " * 1000, os.urandom(5000), "ünïcödé " * 50, b"\x00" * 100_000, ""]
        for m in messages * 3:
            ws.send(m)
            assert ws.recv(timeout=5) == m
    assert [b for _, b in ws_payloads(node)] == [m.encode() if isinstance(m, str) else m for m in messages * 3]


def test_compression_raw_frames(ws_gateway):
    """Client messages with RSV1 are inflated for the node (with context takeover); the gateway's own
    compressed frames inflate to what the node sent."""
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        resp = c.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        ext = resp.header("Sec-WebSocket-Extensions") or ""
        params = [p.strip().lower() for p in ext.split(";")]
        assert params[0] == "permessage-deflate", resp.raw
        # The server may ask the client not to keep its compression context (RFC 7692 §7.1.1.1).
        keep_context = "client_no_context_takeover" not in params
        deflater, inflater = Deflater(), Inflater()
        texts = [b"the same words again and again " * 40, b"the same words again and again " * 40, b"tiny"]
        for t in texts:
            if not keep_context:
                deflater = Deflater()
            c.send_frame(OP_TEXT, deflater.message(t), rsv=4)
            assert c.recv_message(timeout=5, inflater=inflater) == (OP_TEXT, t)
        # A compressed message split into fragments: RSV1 only on the first frame.
        payload = deflate_message(b"fragmented and compressed " * 100)
        c.send_frame(OP_BINARY, payload[:10], fin=False, rsv=4)
        c.send_frame(OP_CONT, payload[10:], fin=True)
        f = c.recv_frame(5)
        assert f.opcode == OP_BINARY and f.fin and f.rsv == 4, f"large echo should come back compressed: {f!r}"
        assert inflater.message(f.payload) == b"fragmented and compressed " * 100
    assert [b for _, b in ws_payloads(node)] == texts + [b"fragmented and compressed " * 100]


def test_compression_disabled(ws_gateway):
    gw, node = ws_gateway(options={"websocket-compression": "false"})
    with ws_connect(gw) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("x" * 10_000)
        assert ws.recv(timeout=5) == "x" * 10_000
    with RawWS(gw.port) as c:
        resp = c.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        assert resp.header("Sec-WebSocket-Extensions") is None
        # RSV1 without a negotiated extension is a protocol error.
        c.send_frame(OP_TEXT, deflate_message(b"hello"), rsv=4)
        assert c.recv_close(5).close_code == 1002
        assert c.closed_by_peer(5)


def test_max_message_size(ws_gateway):
    gw, node = ws_gateway(options={"websocket-max-message": "64k"})
    limit = 64 * 1024
    with RawWS(gw.port) as c:
        c.handshake()
        c.send_frame(OP_BINARY, b"\x01" * limit)
        assert c.recv_message(timeout=5) == (OP_BINARY, b"\x01" * limit)
        c.send_frame(OP_BINARY, b"\x02" * (limit + 1))
        assert c.recv_close(5).close_code == 1009
        assert c.closed_by_peer(5)
    with RawWS(gw.port) as c:  # each fragment is small, the message is not
        c.handshake()
        c.send_frame(OP_TEXT, b"a" * 40_000, fin=False)
        c.send_frame(OP_CONT, b"a" * 40_000, fin=True)
        assert c.recv_close(5).close_code == 1009
        assert c.closed_by_peer(5)
    with RawWS(gw.port) as c:  # small on the wire, too large once inflated
        c.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        bomb = deflate_message(b"\x00" * (4 * limit))
        assert len(bomb) < 1000
        c.send_frame(OP_BINARY, bomb, rsv=4)
        assert c.recv_close(5).close_code == 1009
        assert c.closed_by_peer(5)
    with ws_connect(gw, max_size=None) as ws:
        ws.send("y" * (limit + 10))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.protocol.close_rcvd.code == 1009
    # Only the message within the limit reached the node; every session ended.
    assert [len(b) for _, b in ws_payloads(node)] == [limit]
    node.wait_for(lambda: len({m.sid for m in node.messages(b"end")}) == 4, 5, "end for each of the 4 sessions")


# ----------------------------------------------------------------------------------------------------------------
# handshake


@pytest.mark.parametrize("case", ["no-key", "short-key", "two-keys", "post"])
def test_bad_handshake_gets_400(ws_gateway, case):
    gw, node = ws_gateway()
    kwargs, headers = {}, []
    if case == "no-key":
        kwargs["key"] = ""
    elif case == "short-key":
        kwargs["key"] = "c2hvcnQ="  # base64 of 5 bytes, not 16
    elif case == "two-keys":
        headers = [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
    elif case == "post":
        kwargs["method"] = "POST"
        headers = [("Content-Length", "0")]
    with RawWS(gw.port) as c:
        resp = c.handshake(headers=headers, expect=None, **kwargs)
        assert resp.status_line == "HTTP/1.1 400 Bad Request", resp.raw
        assert resp.has_token("Connection", "close")
        assert resp.header("Sec-WebSocket-Accept") is None
        assert c.closed_by_peer(5)
    assert node.messages(b"uwsgi") == [], "a refused upgrade must not reach the node"


def test_http10_upgrade_is_a_plain_request(ws_gateway):
    """RFC 9110 §7.8: a server must ignore Upgrade in an HTTP/1.0 request, so the node answers it."""

    def handler(sid, mtype, body, send):
        if mtype == b"uwsgi":
            respond(send, sid, b"plain HTTP", headers=[("Content-Type", "text/plain")])

    gw, node = ws_gateway(handler=handler)
    with RawWS(gw.port) as c:
        resp = c.handshake(expect=200, http="HTTP/1.0")
        assert resp.body == b"plain HTTP" and resp.header("Sec-WebSocket-Accept") is None
    assert uwsgi_to_dict(node.messages(b"uwsgi")[0].body)[b"SERVER_PROTOCOL"] == b"HTTP/1.0"


@pytest.mark.parametrize("version", ["8", "14", "abc"])
def test_wrong_version_gets_426(ws_gateway, version):
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        resp = c.handshake(expect=None, version=version)
        assert resp.status_line == "HTTP/1.1 426 Upgrade Required", resp.raw
        assert resp.header("Sec-WebSocket-Version") == "13"
        assert c.closed_by_peer(5)
    assert node.messages(b"uwsgi") == []


def test_backend_handshake_accepts_with_subprotocol(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"uwsgi":
            offered = uwsgi_to_dict(body).get(b"HTTP_SEC_WEBSOCKET_PROTOCOL", b"")
            assert offered == b"chat, superchat", offered
            # Answer late: the client must not see a 101 before the node agrees.
            node.call_later(0.5, lambda: send(
                sid, b"headers", b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"))
        else:
            ws_echo_handler(sid, mtype, body, send)

    gw, node = ws_gateway(handler=handler, vhost_keys={"websocket-handshake": "backend"})
    started = time.monotonic()
    with ws_connect(gw, subprotocols=["chat", "superchat"]) as ws:
        assert time.monotonic() - started >= 0.4, "the gateway answered the upgrade before the node did"
        assert ws.subprotocol == "superchat"
        ws.send("accepted")
        assert ws.recv(timeout=5) == "accepted"
    node.wait_message(b"end")


def test_backend_handshake_accepts_without_subprotocol(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"uwsgi":
            send(sid, b"headers", b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        else:
            ws_echo_handler(sid, mtype, body, send)

    gw, node = ws_gateway(handler=handler, vhost_keys={"websocket-handshake": "backend"})
    with RawWS(gw.port) as c:
        resp = c.handshake(headers=[("Sec-WebSocket-Protocol", "chat")])
        assert resp.header("Sec-WebSocket-Protocol") is None
        c.send_text("ok")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"ok")


def test_backend_handshake_refusal(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"uwsgi":
            respond(send, sid, b"no WebSocket for you\n", status=403, headers=[("Content-Type", "text/plain")])

    gw, node = ws_gateway(handler=handler, vhost_keys={"websocket-handshake": "backend"})
    with RawWS(gw.port) as c:
        resp = c.handshake(expect=403)
        assert resp.body == b"no WebSocket for you\n"
        assert resp.header("Sec-WebSocket-Accept") is None
    with pytest.raises(InvalidStatus) as info:
        with ws_connect(gw):
            pass
    assert info.value.response.status_code == 403


def test_backend_handshake_with_unoffered_subprotocol_gets_502(ws_gateway):
    def handler(sid, mtype, body, send):
        if mtype == b"uwsgi":
            send(sid, b"headers", b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: other\r\n\r\n")

    gw, node = ws_gateway(handler=handler, vhost_keys={"websocket-handshake": "backend"})
    with RawWS(gw.port) as c:
        resp = c.handshake(headers=[("Sec-WebSocket-Protocol", "chat")], expect=None)
        assert resp.status == 502, resp.raw
        assert resp.header("Sec-WebSocket-Accept") is None


def test_gateway_mode_subprotocol_selection(ws_gateway):
    gw, node = ws_gateway(vhost_keys={"websocket-protocols": "beta, alpha"})
    # The first protocol the client offers that the vhost allows.
    with ws_connect(gw, subprotocols=["x-unknown", "alpha", "beta"]) as ws:
        assert ws.subprotocol == "alpha"
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    with ws_connect(gw, subprotocols=["beta", "alpha"]) as ws:
        assert ws.subprotocol == "beta"
    with RawWS(gw.port) as c:  # nothing in common: accepted without a subprotocol
        resp = c.handshake(headers=[("Sec-WebSocket-Protocol", "gamma, delta")])
        assert resp.header("Sec-WebSocket-Protocol") is None
    with RawWS(gw.port) as c:
        resp = c.handshake()
        assert resp.header("Sec-WebSocket-Protocol") is None


# ----------------------------------------------------------------------------------------------------------------
# failures and idle


def test_node_killed_closes_with_1011(make_gateway, spawn_backend):
    gw = make_gateway(vhosts={"localhost": {"nodes": [NODE], "default": True}})
    proc = spawn_backend(gw, NODE)
    with RawWS(gw.port) as c:
        c.handshake()
        time.sleep(0.2)
        started = time.monotonic()
        proc.kill9()
        f = c.recv_close(8)
        assert f.close_code == 1011, f
        assert time.monotonic() - started < 6
        assert c.closed_by_peer(5)


def test_idle_ping_then_1001(ws_gateway):
    gw, node = ws_gateway(options={"websocket-idle-timeout": "2"})
    with RawWS(gw.port) as c:
        c.handshake()
        started = time.monotonic()
        f = c.recv_frame(4)
        assert f.opcode == OP_PING, f
        assert 0.7 <= time.monotonic() - started <= 2.5
        # No pong: closed with 1001 after the second half of the timeout.
        f = c.recv_frame(4)
        assert f.opcode == OP_CLOSE and f.close_code == 1001, f
        assert 1.7 <= time.monotonic() - started <= 4.5
        c.send_close(1001)
        assert c.closed_by_peer(5)
    node.wait_message(b"end")


def test_idle_ping_answered_keeps_connection(ws_gateway):
    gw, node = ws_gateway(options={"websocket-idle-timeout": "2"})
    with RawWS(gw.port) as c:
        c.handshake()
        pings = 0
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            try:
                f = c.recv_frame(deadline - time.monotonic())
            except TimeoutError:
                break
            assert f.opcode == OP_PING, f"only pings expected while idle: {f!r}"
            pings += 1
            c.send_frame(OP_PONG, f.payload)
        assert pings >= 2
        c.send_text("still open")
        assert c.recv_message(timeout=5) == (OP_TEXT, b"still open")
    with ws_connect(gw) as ws:  # websockets answers pings by itself
        time.sleep(3.5)
        ws.send("alive")
        assert ws.recv(timeout=5) == "alive"


# ----------------------------------------------------------------------------------------------------------------
# examples


def wait_served(port: int, timeout: float = 10.0):
    """Until the example node is alive (503 while it is starting)."""
    return wait_until(lambda: (r := http_request(port)).status != 503 and r, timeout, 0.2, "the example node")


def test_ws_echo_example(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": {"nodes": ["echo"], "default": True}})
    run_example("ws_echo", "--connect", gw.endpoint)
    page = wait_served(gw.port)
    assert page.status == 200 and b"echo" in page.body
    with ws_connect(gw, max_size=None) as ws:
        for m in ("text ✓", b"\x00binary\xff", "z" * 200_000, os.urandom(300_000)):
            ws.send(m)
            assert ws.recv(timeout=5) == m
        assert ws.ping().wait(5)


def test_ws_echo_example_backend_handshake(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": {"nodes": ["echo"], "default": True}}, start=False)
    with_vhost_keys(gw, {"localhost": {"websocket-handshake": "backend"}})
    gw.start()
    run_example("ws_echo", "--connect", gw.endpoint, "--backend-handshake")
    wait_served(gw.port)
    with ws_connect(gw, subprotocols=["first", "second"]) as ws:
        assert ws.subprotocol == "first"
        ws.send("via the node's 101")
        assert ws.recv(timeout=5) == "via the node's 101"


def test_chat_example_broadcasts(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": {"nodes": ["chat"], "default": True}})
    run_example("ws_chat", "--connect", gw.endpoint)
    page = wait_served(gw.port)
    assert page.status == 200, page.raw
    assert (page.header("Content-Type") or "").startswith("text/html")
    assert b"new WebSocket(" in page.body
    assert http_request(gw.port, target="/nowhere").status == 404
    # Messages of different clients are not ordered across worker processes (docs/PROTOCOL.md, "Worker
    # processes"): a join (its upgrade request, forwarded to the node) can reach the node after a message that
    # another client sends through another worker once the join was answered 101. A client's own messages
    # follow its join on one path, so each one that joins speaks first, and the others hear it before they
    # speak. (With the joins unordered, this test failed 1 run in 20 under ASan with two workers.)
    def says(speaker, text, *others):
        """``speaker`` sends ``text``; the room (the speaker included) hears it."""
        speaker.send(text)
        for member in (speaker, *others):
            assert member.recv(timeout=5) == text

    with ws_connect(gw, "/chat") as alice:
        says(alice, "alice here")
        with ws_connect(gw, "/chat") as bob:
            says(bob, "bob here", alice)
            says(alice, "hello from alice", bob)
            says(bob, "hi alice ✓", alice)
        with ws_connect(gw, "/chat") as carol:
            says(carol, "carol here", alice)
            says(alice, "bob left", carol)


def test_compressed_frame_of_empty_final_blocks_does_not_crash_the_gateway(ws_gateway):
    """Found by the inflate fuzzer (Tests/Fuzz/FailCases/inflate): one compressed frame made of 60 empty
    final DEFLATE blocks (`03 00` each) used to double the inflater's output room once per block until the
    integer overflowed and the whole gateway trapped. Now the message is inflated or refused, and the
    gateway goes on serving other clients."""
    gw, node = ws_gateway()
    with RawWS(gw.port) as c:
        c.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        c.send_frame(OP_TEXT, b"\x03\x00" * 60, rsv=4)
        try:
            c.recv_frame(timeout=3)
        except Exception:
            pass  # refused and closed, or the empty message echoed: either way the gateway lives
    assert gw.running(), "the gateway died"
    with ws_connect(gw) as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
