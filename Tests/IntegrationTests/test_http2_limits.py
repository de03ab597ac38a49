"""HTTP/2 limits and attacks (issue #17), each with frames made by hand (tests/h2_helpers.RawH2): concurrent
streams, header list size, HPACK bomb, CONTINUATION flood (CVE-2024-27316), rapid reset (CVE-2023-44487),
SETTINGS and PING floods, forbidden pseudo-headers and connection-specific fields, a client reset after
dispatch, a zero window held past body-timeout."""

from __future__ import annotations

import time

import h2.settings
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame)

from h2_helpers import H2Conn, RawH2
from helpers import HTTPHandler, hello_app, respond, wait_until

ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7


def status_of(frame) -> int | None:
    for name, value in getattr(frame, "decoded", []):
        if name == b":status":
            return int(value)
    return None


def response_on(raw: RawH2, stream_id: int, timeout: float = 10.0):
    return raw.read_until(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream_id, timeout,
                          f"response on stream {stream_id}")


def test_max_concurrent_streams(make_gateway, make_backend):
    """http2-max-streams = 5 is announced; a client that keeps to it is served with 5 streams open at once, one
    that opens a 6th after acknowledging the limit is cut off (GOAWAY PROTOCOL_ERROR, as nghttp2 treats it) and
    the node is told `end` for the requests it had."""
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"http2-max-streams": "5"})
    node = [None]

    def held(req, send):
        node[0].call_later(0.5, lambda: respond(send, req.sid, b"ok"))

    node[0] = make_backend(gw, "A", HTTPHandler(held))
    with H2Conn(gw.port) as c:
        c.wait(lambda: c.h2.remote_settings.max_concurrent_streams == 5, 5, "the gateway's SETTINGS")
        sids = [c.request("GET", f"/{i}") for i in range(5)]
        assert all(c.response(s).status == 200 for s in sids)
    with RawH2(gw.port) as raw:
        settings = raw.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags, 5, "SETTINGS")
        assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 5
        raw.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, 5, "SETTINGS ACK")
        raw.send(*[raw.headers_frame(1 + 2 * i) for i in range(6)])
        goaway = raw.read_until(lambda f: isinstance(f, GoAwayFrame), 5, "GOAWAY")
        assert goaway.error_code == PROTOCOL_ERROR
        raw.wait_closed(5)
    wait_until(lambda: len(node[0].messages(b"uwsgi")) == 10, 5, what="the cut streams' requests at the node")
    cut = {m.sid for m in node[0].messages(b"uwsgi")[5:]}
    assert len(cut) == 5
    wait_until(lambda: cut <= {m.sid for m in node[0].messages(b"end")}, 5, what="end for the cut streams")


def test_header_list_over_max_header_size_is_431(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"max-header-size": "16k"})
    a = make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with H2Conn(gw.port) as c:
        r = c.get("/big", headers=[("x-big", "a" * 20000)])
        assert r.status == 431, r.headers
        assert c.get("/small").status == 200
    assert [m for m in a.messages(b"uwsgi")].__len__() == 1


def test_hpack_bomb_ends_the_connection(make_gateway, make_backend):
    """One 4000-byte field in the dynamic table, then referenced 200 times (1 byte each): 800 KB decoded
    from a 4 KB block. Far past 4 x max-header-size: GOAWAY ENHANCE_YOUR_CALM, and nothing reaches the node."""
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"max-header-size": "16k"})
    a = make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with RawH2(gw.port) as raw:
        block = raw.block(raw.request_headers() + [("x-bomb", "a" * 4000)])
        index = 62  # the field just added is the newest dynamic entry
        block += bytes([0x80 | index]) * 200  # indexed field (7-bit prefix: one byte)
        raw.send(raw.headers_frame(1, block=block))
        goaway = raw.read_until(lambda f: isinstance(f, GoAwayFrame), 5, "GOAWAY")
        assert goaway.error_code == ENHANCE_YOUR_CALM
        raw.wait_closed(5)
    assert a.messages(b"uwsgi") == []


def test_continuation_flood_ends_the_connection(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    a = make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    with RawH2(gw.port) as raw:
        raw.send(raw.headers_frame(1, end_headers=False))
        frames = []
        for i in range(200):
            f = ContinuationFrame(1)
            f.data = raw.block([(f"x-c{i}", "v" * 50)])
            frames.append(f)
        try:
            raw.send(*frames)
        except OSError:
            pass
        raw.read_until(lambda f: isinstance(f, GoAwayFrame), 5, "GOAWAY")
        raw.wait_closed(5)
    assert a.messages(b"uwsgi") == []


def test_rapid_reset_gets_goaway_and_the_node_hears_end(make_gateway, make_backend):
    """CVE-2023-44487: open a stream, reset it, repeat. The gateway cuts the client off (GOAWAY
    ENHANCE_YOUR_CALM) after its reset budget, and every request that reached the node is ended there."""
    gw = make_gateway(vhosts={"localhost": ["A"]})
    a = make_backend(gw, "A", lambda sid, mtype, body, send: None)  # never answers
    with RawH2(gw.port) as raw:
        raw.read(0.3)
        sent = 0
        try:
            for batch in range(10):
                frames = []
                for i in range(100):
                    stream = 1 + 2 * (batch * 100 + i)
                    rst = RstStreamFrame(stream)
                    rst.error_code = 0x8  # CANCEL
                    frames += [raw.headers_frame(stream), rst]
                raw.send(*frames)
                sent += 100
        except OSError:
            pass
        goaway = raw.read_until(lambda f: isinstance(f, GoAwayFrame), 5, "GOAWAY")
        assert goaway.error_code == ENHANCE_YOUR_CALM
        raw.wait_closed(5)
    # With several workers the requests may reach the node through the worker holding its connection, one hop
    # later than the GOAWAY reached the client: count them once no more arrive.
    def arrived() -> int:
        count = len(a.messages(b"uwsgi"))
        time.sleep(0.3)
        return count if count and len(a.messages(b"uwsgi")) == count else 0
    wait_until(arrived, 10, what="the requests that reached the node, all of them")
    requested = {m.sid for m in a.messages(b"uwsgi")}
    assert 0 < len(requested) <= 260, len(requested)
    wait_until(lambda: requested <= {m.sid for m in a.messages(b"end")}, 5, what="end for every request")
    assert "ENHANCE_YOUR_CALM" in gw.stderr()


def test_settings_flood_and_ping_flood(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    make_backend(gw, "A", HTTPHandler(hello_app(b"x")))
    for make in (lambda: SettingsFrame(0), lambda: PingFrame(0, opaque_data=b"12345678")):
        with RawH2(gw.port) as raw:
            try:
                raw.send(*[make() for _ in range(300)])
            except OSError:
                pass
            goaway = raw.read_until(lambda f: isinstance(f, GoAwayFrame), 5, "GOAWAY")
            assert goaway.error_code == ENHANCE_YOUR_CALM
            raw.wait_closed(5)
    # A client within the budget is served as usual.
    with H2Conn(gw.port) as c:
        for _ in range(5):
            c.h2.ping(b"abcdefgh")
        c.flush()
        assert c.get("/").status == 200


def test_invalid_fields_reset_the_stream_only(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    a = make_backend(gw, "A", HTTPHandler(hello_app(b"fine")))
    bad = [
        raw_headers + extra
        for raw_headers in [RawH2.request_headers()]
        for extra in ([(":foo", "x")], [("connection", "keep-alive")], [("transfer-encoding", "chunked")],
                      [("X-Upper", "1")], [("te", "gzip")])
    ] + [[(":method", "GET"), (":scheme", "http"), (":authority", "localhost")],  # no :path
         [(":path", "/"), (":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/x")]]
    with RawH2(gw.port) as raw:
        for i, headers in enumerate(bad):
            raw.send(raw.headers_frame(1 + 2 * i, headers))
            reset = raw.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1 + 2 * i, 5,
                                   f"RST_STREAM for {headers[-1]}")
            assert reset.error_code == PROTOCOL_ERROR, headers
        good = 1 + 2 * len(bad)
        raw.send(raw.headers_frame(good))
        assert status_of(response_on(raw, good)) == 200
    assert len(a.messages(b"uwsgi")) == 1


def test_client_reset_after_dispatch_tells_the_node_end(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["A"]})
    handler = HTTPHandler(lambda req, send: None)  # holds the request
    a = make_backend(gw, "A", handler)
    with H2Conn(gw.port) as c:
        sid = c.request("GET", "/held")
        wait_until(lambda: a.messages(b"uwsgi"), 5, what="request at the node")
        c.h2.reset_stream(sid, error_code=0x8)
        c.flush()
        node_sid = a.messages(b"uwsgi")[0].sid
        a.wait_message(b"end", sid=node_sid)
    handler.app = hello_app(b"after")
    with H2Conn(gw.port) as c:
        assert c.get("/next").status == 200


def test_zero_window_held_past_body_timeout_resets_the_stream(make_gateway, make_backend):
    """Counted as a body-timeout rejection, as an HTTP/1.1 client that stops reading its response is."""
    from helpers import free_port
    from test_metrics import scrape
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"body-timeout": "1", "admin": f"127.0.0.1:{free_port()}"})
    make_backend(gw, "A", HTTPHandler(hello_app(b"y" * 1000)))
    with H2Conn(gw.port) as c:
        c.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        c.flush()
        c.wait(lambda: c.h2.local_settings.acknowledged_settings if hasattr(c.h2.local_settings, "acknowledged_settings") else True, 2)
        c.read_events(0.3)
        started = time.monotonic()
        sid = c.request("GET", "/held-by-window")
        c.wait(lambda: c.streams[sid].status == 200, 5, "response head")
        r = c.response(sid, timeout=6)
        assert r.reset is not None and bytes(r.body) == b"", (r.reset, r.body)
        assert 0.8 < time.monotonic() - started < 4
        # The connection and its other streams go on (a HEAD needs no window).
        r = c.response(c.request("HEAD", "/h"))
        assert r.status == 200
    assert scrape(gw).value("blastbeat_rejections_total", vhost="localhost", limit="body-timeout") == 1


def test_response_buffering_bounded_per_connection(make_gateway, make_backend):
    """With the client's windows shut, the streams of one connection buffer at most max-output-buffer
    together: the stream that would go past it is reset (counted as a max-output-buffer rejection, as an
    HTTP/1.1 connection closed for it is), the other is delivered once the window opens."""
    from helpers import free_port
    from test_metrics import scrape
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"max-output-buffer": "256k", "body-timeout": "10",
                                                            "admin": f"127.0.0.1:{free_port()}"})
    make_backend(gw, "A", HTTPHandler(hello_app(b"z" * 200_000)))
    with H2Conn(gw.port) as c:
        c.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        c.flush()
        c.read_events(0.3)
        first = c.request("GET", "/1")
        c.wait(lambda: c.streams[first].status == 200, 5, "first head")
        second = c.request("GET", "/2")
        r2 = c.response(second, timeout=5)
        assert r2.reset is not None, (r2.headers, r2.reset)
        assert not c.streams[first].done
        c.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        c.h2.increment_flow_control_window(1 << 20)
        c.flush()
        r1 = c.response(first, timeout=5)
        assert r1.ended and len(r1.body) == 200_000
    assert scrape(gw).value("blastbeat_rejections_total", vhost="localhost", limit="max-output-buffer") == 1


def test_stalled_request_body_resets_the_stream_and_is_counted(make_gateway, make_backend):
    """A stream whose request body stops short for body-timeout is reset (the connection serves on), its node
    hears `end`, and it counts as a body-timeout rejection, as a stalled HTTP/1.1 upload does."""
    from helpers import free_port
    from test_metrics import scrape
    gw = make_gateway(vhosts={"localhost": ["A"]}, options={"body-timeout": "1", "admin": f"127.0.0.1:{free_port()}"})
    node = make_backend(gw, "A", HTTPHandler(hello_app(b"ok")))
    with H2Conn(gw.port) as c:
        sid = c.request("POST", "/upload", headers=[("content-length", "100")], end=False)
        c.h2.send_data(sid, b"x" * 10)
        c.flush()
        started = time.monotonic()
        r = c.response(sid, timeout=6)
        assert r.reset is not None, (r.headers, r.reset)
        assert 0.8 < time.monotonic() - started < 4
        assert c.get("/after").status == 200
    node_sid = node.messages(b"uwsgi")[0].sid
    node.wait_message(b"end", sid=node_sid)
    assert scrape(gw).value("blastbeat_rejections_total", vhost="localhost", limit="body-timeout") == 1
