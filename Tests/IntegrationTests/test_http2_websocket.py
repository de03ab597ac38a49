"""WebSocket over HTTP/2 (RFC 8441, issue #17): SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended CONNECT with
`:protocol websocket` answered 200, WebSocket frames in DATA both ways with the backend messages of an HTTP/1.1
WebSocket (`websocket`, `websocket-binary`, `end`), the gateway and backend handshakes, close and node loss,
and an ordinary stream beside it on the same connection."""

from __future__ import annotations

import struct
import time

import h2.settings

from h2_helpers import H2Conn
from helpers import HTTPHandler, decode_env, hello_app, response_head
from ws_helpers import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, encode_frame, ws_echo_handler


def parse_frames(data: bytes):
    """Unmasked server frames: [(opcode, payload)], and the bytes of an incomplete last frame."""
    frames = []
    while len(data) >= 2:
        opcode, n, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + n:
            break
        frames.append((opcode, data[at:at + n]))
        data = data[at + n:]
    return frames


def open_websocket(c: H2Conn, path="/ws", authority="localhost", extra=()):
    c.wait(lambda: c.h2.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1, 5,
           "SETTINGS_ENABLE_CONNECT_PROTOCOL")
    return c.request("CONNECT", path, authority,
                     headers=[(":protocol", "websocket"), ("sec-websocket-version", "13")] + list(extra), end=False)


def test_websocket_over_h2_gateway_handshake(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": {"nodes": ["A"], "options": {"websocket-protocols": "chat"}}})
    plain = HTTPHandler(hello_app(b"plain"))

    def handler(sid, mtype, body, send):
        if mtype == b"uwsgi" and b"/plain" in body:
            return plain(sid, mtype, body, send)
        ws_echo_handler(sid, mtype, body, send)

    node = make_backend(gw, "A", handler)
    with H2Conn(gw.port) as c:
        sid = open_websocket(c, extra=[("sec-websocket-protocol", "other, chat")])
        c.wait(lambda: c.streams[sid].status is not None, 5, "the 200")
        r = c.streams[sid]
        assert r.status == 200 and r.header(b"sec-websocket-protocol") == b"chat", r.headers
        c.h2.send_data(sid, encode_frame(OP_TEXT, b"hello h2"))
        c.h2.send_data(sid, encode_frame(OP_BINARY, b"\x00\x01\x02"))
        c.flush()
        c.wait(lambda: len(parse_frames(bytes(c.streams[sid].body))) >= 2, 5, "the echoes")
        assert parse_frames(bytes(r.body))[:2] == [(OP_TEXT, b"hello h2"), (OP_BINARY, b"\x00\x01\x02")]
        # An ordinary request beside it on the same connection.
        r2 = c.get("/plain")
        assert r2.status == 200 and bytes(r2.body) == b"plain"
        c.h2.send_data(sid, encode_frame(OP_CLOSE, struct.pack("!H", 1000)), end_stream=True)
        c.flush()
        c.wait(lambda: r.done, 5, "the close")
        assert parse_frames(bytes(r.body))[-1] == (OP_CLOSE, struct.pack("!H", 1000)) and r.ended
    uwsgi = node.messages(b"uwsgi")[0]
    env = decode_env(uwsgi.body)
    assert env["REQUEST_METHOD"] == "GET" and env["PATH_INFO"] == "/ws" and env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["HTTP_UPGRADE"] == "websocket" and env["HTTP_CONNECTION"] == "upgrade"
    assert len(env["HTTP_SEC_WEBSOCKET_KEY"]) == 24 and env["HTTP_SEC_WEBSOCKET_PROTOCOL"] == "other, chat"
    node.wait_message(b"end", sid=uwsgi.sid)
    assert [m.body for m in node.messages(b"websocket", sid=uwsgi.sid)] == [b"hello h2"]
    assert [m.body for m in node.messages(b"websocket-binary", sid=uwsgi.sid)] == [b"\x00\x01\x02"]


def test_websocket_over_h2_backend_handshake_and_end(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": {"nodes": ["A"], "options": {"websocket-handshake": "backend"}}})

    def backend(sid, mtype, body, send):
        if mtype == b"uwsgi":
            send(sid, b"headers", response_head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                      ("Sec-WebSocket-Accept", "x")], reason="Switching Protocols"))
            send(sid, b"websocket", b"welcome")
        elif mtype == b"websocket" and body == b"bye":
            send(sid, b"end", struct.pack("!H", 4000) + b"done")

    node = make_backend(gw, "A", backend)
    with H2Conn(gw.port) as c:
        sid = open_websocket(c)
        c.wait(lambda: parse_frames(bytes(c.streams[sid].body)), 5, "the welcome")
        r = c.streams[sid]
        assert r.status == 200 and parse_frames(bytes(r.body))[0] == (OP_TEXT, b"welcome")
        c.h2.send_data(sid, encode_frame(OP_TEXT, b"bye"))
        c.flush()
        c.wait(lambda: r.ended, 5, "the end of the stream")
        assert parse_frames(bytes(r.body))[-1] == (OP_CLOSE, struct.pack("!H", 4000) + b"done")


def test_websocket_over_h2_node_killed(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    node = make_backend(gw, "A", ws_echo_handler)
    with H2Conn(gw.port) as c:
        sid = open_websocket(c)
        c.wait(lambda: c.streams[sid].status == 200, 5, "the 200")
        node.stop()
        r = c.streams[sid]
        c.wait(lambda: r.done, 5, "the close")
        assert parse_frames(bytes(r.body))[-1] == (OP_CLOSE, struct.pack("!H", 1011))


def test_websocket_upgrade_refused_over_h2(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    node = make_backend(gw, "A", ws_echo_handler)
    with H2Conn(gw.port) as c:
        c.wait(lambda: c.h2.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1, 5, "settings")
        sid = c.request("CONNECT", "/ws", "localhost", headers=[(":protocol", "websocket"),
                                                                  ("sec-websocket-version", "8")], end=False)
        r = c.response(sid)
        assert r.status == 426, r.headers
        # A plain CONNECT (no :protocol) is not a proxy request the gateway serves.
        sid = c.h2.get_next_available_stream_id()
        c.streams[sid] = type(c.streams[1])(sid)
        c.h2.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")])
        c.flush()
        assert c.response(sid).status == 405
    assert node.messages(b"uwsgi") == []


def test_websocket_over_h2_with_permessage_deflate(make_gateway, make_backend):
    from ws_helpers import Inflater, deflate_message

    gw = make_gateway(vhosts={"localhost": ["A"]})
    node = make_backend(gw, "A", ws_echo_handler)
    text = b"compressible " * 20
    with H2Conn(gw.port) as c:
        sid = open_websocket(c, extra=[("sec-websocket-extensions", "permessage-deflate")])
        c.wait(lambda: c.streams[sid].status == 200, 5, "the 200")
        r = c.streams[sid]
        assert r.header(b"sec-websocket-extensions").startswith(b"permessage-deflate"), r.headers
        c.h2.send_data(sid, encode_frame(OP_TEXT, deflate_message(text), rsv=4))
        c.flush()
        c.wait(lambda: parse_frames(bytes(r.body)), 5, "the echo")
        raw = bytes(r.body)
        assert raw[0] & 0x40, "RSV1: the echo is compressed"
        assert Inflater().message(parse_frames(raw)[0][1]) == text
    assert node.messages(b"websocket")[0].body == text


def test_websocket_over_h2_closed_with_1001_on_sigterm(make_gateway, make_backend):
    """SIGTERM: GOAWAY and a 1001 close on the WebSocket stream (hand-made frames: Python's h2 drops frames that
    follow a GOAWAY, which RFC 9113 §6.8 allows); once the client ends the stream the gateway exits."""
    import signal

    from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame

    from h2_helpers import RawH2

    gw = make_gateway(vhosts={"localhost": ["A"]})
    make_backend(gw, "A", ws_echo_handler)
    with RawH2(gw.port) as raw:
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws"),
                   (":authority", "localhost"), ("sec-websocket-version", "13")]
        raw.read(0.3)
        raw.send(raw.headers_frame(1, headers, end_stream=False))
        head = raw.read_until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, 5, "the 200")
        assert (b":status", b"200") in head.decoded
        gw.proc.send_signal(signal.SIGTERM)
        goaway = raw.read_until(lambda f: isinstance(f, GoAwayFrame), 5, "GOAWAY")
        assert goaway.error_code == 0
        close = raw.read_until(lambda f: isinstance(f, DataFrame) and f.data, 5, "the close frame")
        assert parse_frames(close.data) == [(OP_CLOSE, struct.pack("!H", 1001))]
        raw.read_until(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags, 5, "END_STREAM")
        answer = DataFrame(1, data=encode_frame(OP_CLOSE, struct.pack("!H", 1001)))
        answer.flags.add("END_STREAM")
        raw.send(answer)
        raw.wait_closed(5)
    assert gw.proc.wait(10) == 0


def test_websocket_over_h2_idle_ping_then_1001_then_given_up(make_gateway, make_backend):
    """The idle check as over HTTP/1.1 (test_websocket.py): half the idle timeout without a frame, a ping; the
    other half unanswered, a 1001 close and END_STREAM; a client that never ends its side then has its stream
    reset after another half, and the node is told `end`. The connection's timer ticks every second, so each
    step may come up to a second late."""
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"websocket-idle-timeout": "2"})
    node = make_backend(gw, "A", ws_echo_handler)
    with H2Conn(gw.port) as c:
        sid = open_websocket(c)
        c.wait(lambda: c.streams[sid].status == 200, 5, "the 200")
        started = time.monotonic()
        r = c.streams[sid]
        c.wait(lambda: parse_frames(bytes(r.body)), 4, "the ping")
        assert parse_frames(bytes(r.body)) == [(OP_PING, b"")]
        assert 0.9 <= time.monotonic() - started <= 2.6
        c.wait(lambda: r.ended, 4, "the close and END_STREAM")
        assert parse_frames(bytes(r.body)) == [(OP_PING, b""), (OP_CLOSE, struct.pack("!H", 1001))]
        assert 1.9 <= time.monotonic() - started <= 4.6
        ended = time.monotonic()
        c.wait(lambda: r.reset is not None, 4, "the reset of the half-closed stream")
        assert 0.9 <= time.monotonic() - ended <= 2.6
        assert r.reset == 2  # INTERNAL_ERROR
        # The connection itself serves on.
        assert c.get("/").status is not None
    node.wait_message(b"end")


def test_websocket_over_h2_answered_pings_keep_it_open(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"websocket-idle-timeout": "2"})
    make_backend(gw, "A", ws_echo_handler)
    with H2Conn(gw.port) as c:
        sid = open_websocket(c)
        c.wait(lambda: c.streams[sid].status == 200, 5, "the 200")
        r = c.streams[sid]
        answered = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            c.read_events(0.2)
            pings = [f for f in parse_frames(bytes(r.body)) if f[0] == OP_PING]
            while answered < len(pings):
                c.h2.send_data(sid, encode_frame(OP_PONG, pings[answered][1]))
                c.flush()
                answered += 1
        assert answered >= 2 and not r.done, parse_frames(bytes(r.body))
        assert all(f[0] == OP_PING for f in parse_frames(bytes(r.body)))
        c.h2.send_data(sid, encode_frame(OP_TEXT, b"still open"))
        c.flush()
        c.wait(lambda: (OP_TEXT, b"still open") in parse_frames(bytes(r.body)), 5, "the echo")


def test_websocket_over_h2_message_too_big_is_closed_with_1009_and_counted(make_gateway, make_backend):
    """A message over websocket-max-message: close 1009 and END_STREAM, the node told `end`, and the
    rejection counted for the vhost as over HTTP/1.1."""
    from helpers import free_port
    from test_metrics import scrape
    gw = make_gateway(vhosts={"localhost": ["A"]},
                      options={"websocket-max-message": "1k", "admin": f"127.0.0.1:{free_port()}"})
    node = make_backend(gw, "A", ws_echo_handler)
    with H2Conn(gw.port) as c:
        sid = open_websocket(c)
        c.wait(lambda: c.streams[sid].status == 200, 5, "the 200")
        r = c.streams[sid]
        c.h2.send_data(sid, encode_frame(OP_TEXT, b"x" * 2048))
        c.flush()
        c.wait(lambda: r.ended, 5, "the close and END_STREAM")
        assert parse_frames(bytes(r.body)) == [(OP_CLOSE, struct.pack("!H", 1009))]
    node.wait_message(b"end")
    assert not node.messages(b"websocket")
    assert scrape(gw).value("blastbeat_rejections_total", vhost="localhost", limit="websocket-max-message") == 1
