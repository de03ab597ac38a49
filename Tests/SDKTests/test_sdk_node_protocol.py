"""blastbeat.Node against a scripted ROUTER standing in for the gateway: the exact messages a node sends.

No gateway binary is needed; each test drives the node message by message and checks every frame.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import zmq

import blastbeat
from blastbeat import ClientDisconnected, Node, uwsgi

SID1 = os.urandom(16)
SID2 = os.urandom(16)


class FakeGateway:
    """A ROUTER socket on a random local port; ``recv`` returns [identity, sid, type, body]."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def recv(self, timeout: float = 5.0, skip_pongs: bool = True) -> list:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.sock.poll(int(remaining * 1000)):
                raise TimeoutError("no message from the node")
            frames = self.sock.recv_multipart()
            if skip_pongs and frames[2] == b"pong":
                continue
            return frames

    def wait_announce(self, identity: bytes, timeout: float = 5.0) -> None:
        """Wait for the node's announcing pong: from then on the ROUTER can route to ``identity``."""
        deadline = time.monotonic() + timeout
        while True:
            frames = self.recv(max(0.01, deadline - time.monotonic()), skip_pongs=False)
            if frames[0] == identity and frames[2] == b"pong":
                return

    def nothing_for(self, seconds: float) -> bool:
        """True if the node sends nothing but pongs for ``seconds``."""
        try:
            frames = self.recv(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message {frames!r}")

    def send(self, identity: bytes, sid: bytes, kind: bytes, body: bytes = b"") -> None:
        self.sock.send_multipart([identity, sid, kind, body])

    def request(self, identity: bytes, sid: bytes, method: str = "GET", path: str = "/", body: bytes = None,
                chunked: bool = False, protocol: str = "HTTP/1.1", **extra: str) -> None:
        env = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "8080", "SERVER_PROTOCOL": protocol,
               "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "UWSGI_SCHEME": "http",
               "HTTP_HOST": "localhost"}
        if body is not None and not chunked:
            env["CONTENT_LENGTH"] = str(len(body))
        if chunked:
            env["HTTP_TRANSFER_ENCODING"] = "chunked"
        env.update(extra)
        self.send(identity, sid, b"uwsgi", uwsgi.encode(env))
        if body is not None:
            for i in range(0, len(body), 3):
                self.send(identity, sid, b"body", body[i:i + 3])
            self.send(identity, sid, b"body", b"")

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def fake():
    gw = FakeGateway()
    yield gw
    gw.close()


@pytest.fixture
def node_factory(fake):
    nodes = []

    def factory(handler, node="app", endpoints=None, announce=True, gateways=None, **options):
        # These tests address the node as b"app" in every frame: a plain identity unless a test picks an
        # instance. The default identity (app#<pid>-<random>) has its own tests in test_sdk_identity.py.
        if "instance" not in options:
            options.setdefault("plain_identity", True)
        n = Node(endpoints or fake.endpoint, node, handler, **options).start()
        nodes.append(n)
        assert n.wait_connected(5)
        if announce:
            for gw in gateways or [fake]:
                gw.wait_announce(n.identity)
        return n

    yield factory
    for n in nodes:
        n.stop(timeout=1)


def hello(req):
    req.respond(200, [("Content-Type", "text/plain")], b"hi " + req.path.encode())


def test_announces_itself_and_answers_ping(fake, node_factory):
    node_factory(hello, instance="7", announce=False)
    identity, sid, kind, body = fake.recv(skip_pongs=False)
    # The announcement asks for credit (docs/PROTOCOL.md, "Credit"); answers to pings are plain.
    assert (identity, sid, kind, body) == (b"app#7", b"", b"pong", b"credit")
    fake.send(b"app#7", b"", b"ping")
    assert fake.recv(skip_pongs=False) == [b"app#7", b"", b"pong", b""]


def test_identity_rules():
    assert Node("tcp://127.0.0.1:1", "app", plain_identity=True).identity == b"app"
    assert Node("tcp://127.0.0.1:1", "app", instance="w2").identity == b"app#w2"
    for bad in [dict(node=""), dict(node="a#b", instance="x"), dict(node="app", instance=""),
                dict(node="x" * 300), dict(node="x" * 300, plain_identity=True)]:
        with pytest.raises(ValueError):
            Node("tcp://127.0.0.1:1", **bad)
    with pytest.raises(ValueError):
        Node([], "app")


def test_simple_response_is_one_headers_message(fake, node_factory):
    node_factory(hello)
    fake.request(b"app", SID1, path="/x")
    assert fake.recv() == [b"app", SID1, b"headers",
                           b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhi /x"]
    assert fake.nothing_for(0.3)


def test_streaming_body_until_end_marker(fake, node_factory):
    seen = []

    def handler(req):
        assert req.has_body
        for piece in req.iter_body():
            seen.append(piece)
        req.respond(200, None, b"%d" % sum(map(len, seen)))

    node_factory(handler)
    fake.request(b"app", SID1, "POST", body=b"abcdefgh", chunked=True)
    frames = fake.recv()
    assert frames[2] == b"headers" and frames[3].endswith(b"\r\n\r\n8")
    assert seen == [b"abc", b"def", b"gh"]


def test_body_reader_partial_reads(fake, node_factory):
    got = {}
    gate = threading.Event()

    def handler(req):
        got["first"] = req.input.read(2)
        gate.set()
        got["line"] = req.input.readline()
        got["rest"] = req.input.read()
        got["after"] = req.input.read()
        req.respond(204)

    node_factory(handler)
    env_body = b"xyline1\nrest"
    fake.send(b"app", SID1, b"uwsgi", uwsgi.encode({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
                                                     "SERVER_PROTOCOL": "HTTP/1.1",
                                                     "CONTENT_LENGTH": str(len(env_body))}))
    fake.send(b"app", SID1, b"body", env_body[:2])
    assert gate.wait(5), "read(2) should return once 2 bytes are there, before the rest of the body"
    fake.send(b"app", SID1, b"body", env_body[2:])
    fake.send(b"app", SID1, b"body", b"")
    frames = fake.recv()
    assert frames[3].startswith(b"HTTP/1.1 204 No Content\r\n")
    assert got == {"first": b"xy", "line": b"line1\n", "rest": b"rest", "after": b""}


def test_request_without_body_reads_empty_at_once(fake, node_factory):
    def handler(req):
        assert not req.has_body
        assert req.read() == b"" and list(req.iter_body()) == []
        req.respond(200, None, b"ok")

    node_factory(handler, body_timeout=1)
    fake.request(b"app", SID1)
    assert fake.recv()[3].endswith(b"ok")


def test_chunk_responses(fake, node_factory):
    def handler(req):
        req.start(200, [("Content-Type", "text/plain")])
        req.chunk(b"one")
        req.chunk(b"")  # nothing: only finish() ends the response
        req.write(b"two")  # on a chunked response, write() sends chunks too
        req.finish()

    node_factory(handler)
    fake.request(b"app", SID1)
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n"]
    assert fake.recv()[2:] == [b"chunk", b"one"]
    assert fake.recv()[2:] == [b"chunk", b"two"]
    assert fake.recv()[2:] == [b"chunk", b""]
    assert fake.nothing_for(0.3)


def test_unframed_response_for_http10_client(fake, node_factory):
    def handler(req):
        req.start(200, [("Content-Type", "text/plain")])
        req.write(b"streamed")
        req.finish()

    node_factory(handler)
    fake.request(b"app", SID1, protocol="HTTP/1.0")
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"]
    # Delimited by the close: written bytes are `body` messages (as the Swift SDK's), the empty chunk ends it.
    assert fake.recv()[2:] == [b"body", b"streamed"]
    assert fake.recv()[2:] == [b"chunk", b""]


def test_finish_without_body_adds_content_length_zero(fake, node_factory):
    node_factory(lambda req: req.start(200, [("X-A", "1")]))  # finished automatically on return
    fake.request(b"app", SID1)
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"]
    assert fake.nothing_for(0.3)


def test_short_content_length_ends_session(fake, node_factory):
    def handler(req):
        req.start(200, [("Content-Length", "10")])
        req.write(b"12345")

    node_factory(handler)
    fake.request(b"app", SID1)
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"]
    assert fake.recv()[2:] == [b"end", b""]


def test_bytes_past_content_length_dropped(fake, node_factory):
    def handler(req):
        req.start(200, [("Content-Length", "3")])
        req.write(b"ab")
        req.write(b"cdef")

    node_factory(handler)
    fake.request(b"app", SID1)
    assert fake.recv()[3].endswith(b"\r\n\r\nab")
    assert fake.recv()[2:] == [b"body", b"c"]
    assert fake.nothing_for(0.3)


def test_large_write_is_split(fake, node_factory):
    data = os.urandom(blastbeat.node.MAX_MESSAGE * 2 + 5)

    def handler(req):
        req.start(200, [("Content-Length", str(len(data)))])
        req.write(data)

    node_factory(handler)
    fake.request(b"app", SID1)
    first = fake.recv()[3]
    head, _, start = first.partition(b"\r\n\r\n")
    rest = [fake.recv()[3] for _ in range(2)]
    # A node that announces credit puts at most 64 KiB behind the head (a head cannot be split to fit credit).
    assert len(start) == blastbeat.node.INLINE_WITH_CREDIT
    assert [len(piece) for piece in rest] == [blastbeat.node.MAX_MESSAGE, len(data) - len(start) - blastbeat.node.MAX_MESSAGE]
    assert start + b"".join(rest) == data


def test_head_request_sends_head_only(fake, node_factory):
    def handler(req):
        req.start(200, [("Content-Length", "5")])
        req.write(b"hello")

    node_factory(handler)
    fake.request(b"app", SID1, method="HEAD")
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"]
    assert fake.nothing_for(0.3)


def test_handler_exception_gives_500_and_worker_survives(fake, node_factory):
    def handler(req):
        if req.path == "/boom":
            raise RuntimeError("boom")
        hello(req)

    node_factory(handler, threads=1)
    for _ in range(3):
        fake.request(b"app", SID1, path="/boom")
        frames = fake.recv()
        assert frames[3].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    fake.request(b"app", SID1, path="/ok")
    assert fake.recv()[3].endswith(b"hi /ok")


def test_exception_after_head_ends_session(fake, node_factory):
    def handler(req):
        req.start(200, [])
        req.chunk(b"partial")
        raise RuntimeError("late")

    node_factory(handler)
    fake.request(b"app", SID1)
    assert fake.recv()[2] == b"headers"
    assert fake.recv()[2:] == [b"chunk", b"partial"]
    assert fake.recv()[2:] == [b"end", b""]


def test_handler_without_response_gets_500(fake, node_factory):
    node_factory(lambda req: None)
    fake.request(b"app", SID1)
    assert fake.recv()[3].startswith(b"HTTP/1.1 500 ")


def test_retry_and_end(fake, node_factory):
    def handler(req):
        if req.path == "/retry":
            req.retry()
        else:
            req.end()

    node_factory(handler)
    fake.request(b"app", SID1, path="/retry")
    assert fake.recv()[1:] == [SID1, b"retry", b""]
    fake.request(b"app", SID2, path="/end")
    assert fake.recv()[1:] == [SID2, b"end", b""]


def test_misuse_raises(fake, node_factory):
    errors = []

    def handler(req):
        for call in (lambda: req.write(b"x"), lambda: req.finish()):
            try:
                call()
            except blastbeat.ResponseError as exc:
                errors.append(str(exc))
        req.start(200)
        try:
            req.start(201)
        except blastbeat.ResponseError as exc:
            errors.append(str(exc))
        try:
            req.start(103)
        except ValueError as exc:
            errors.append(str(exc))
        req.start(200, [("Content-Length", "1")], replace=True)
        req.write(b"x")
        for call in (lambda: req.chunk(b"y"), lambda: req.retry(), lambda: req.start(500, replace=True)):
            try:
                call()
            except blastbeat.ResponseError as exc:
                errors.append(str(exc))
        done.set()

    done = threading.Event()
    node_factory(handler)
    fake.request(b"app", SID1)
    assert fake.recv()[3] == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    assert done.wait(5)
    assert len(errors) == 7, errors


def test_client_gone_stops_body_read_and_writes(fake, node_factory):
    outcome = []
    started = threading.Event()
    finished = threading.Event()

    def handler(req):
        started.set()
        try:
            req.read()
        except ClientDisconnected:
            outcome.append("read")
        try:
            req.start(200)
            req.write(b"x")
        except ClientDisconnected:
            outcome.append("write")
        finished.set()

    node_factory(handler)
    fake.send(b"app", SID1, b"uwsgi", uwsgi.encode({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
                                                     "CONTENT_LENGTH": "100"}))
    fake.send(b"app", SID1, b"body", b"abc")
    assert started.wait(5)
    fake.send(b"app", SID1, b"end")
    assert finished.wait(5)
    assert fake.nothing_for(0.3)
    assert outcome == ["read", "write"]


def test_keepalive_requests_on_one_sid(fake, node_factory):
    node_factory(lambda req: req.respond(200, None, req.read() or req.path.encode()))
    fake.request(b"app", SID1, "POST", path="/a", body=b"first")
    assert fake.recv()[3].endswith(b"first")
    fake.request(b"app", SID1, path="/second")
    assert fake.recv()[3].endswith(b"/second")


def test_concurrent_handlers(fake, node_factory):
    def handler(req):
        time.sleep(0.8)
        hello(req)

    node_factory(handler, threads=4)
    started = time.monotonic()
    sids = [os.urandom(16) for _ in range(4)]
    for sid in sids:
        fake.request(b"app", sid)
    got = {fake.recv(5)[1] for _ in sids}
    assert got == set(sids)
    assert time.monotonic() - started < 2.2, "four 0.8 s handlers on four threads must overlap"


def test_websocket_messages(fake, node_factory):
    closed = threading.Event()
    received = []

    def handler(req):
        assert req.is_websocket
        for message in req.websocket_messages():
            received.append(message)
            req.send_websocket(message)  # str back as text, bytes back as binary
        req.send_websocket(b"too late")  # raises ClientDisconnected: the session is over
        closed.set()

    node_factory(handler)
    fake.request(b"app", SID1, HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade")
    fake.send(b"app", SID1, b"websocket", "h\u00e9llo".encode())
    assert fake.recv()[2:] == [b"websocket", "h\u00e9llo".encode()]
    fake.send(b"app", SID1, b"websocket-binary", b"\x00\xff")
    assert fake.recv()[2:] == [b"websocket-binary", b"\x00\xff"]
    fake.send(b"app", SID1, b"websocket", b"\xff not utf-8")  # an old gateway's binary: kept as bytes
    assert fake.recv()[2:] == [b"websocket-binary", b"\xff not utf-8"]
    fake.send(b"app", SID1, b"end")
    assert fake.nothing_for(0.5)
    assert not closed.is_set()  # the send after the end raised
    assert received == ["h\u00e9llo", b"\x00\xff", b"\xff not utf-8"]


def test_websocket_send_kinds_and_close(fake, node_factory):
    def handler(req):
        req.send_websocket("text")
        req.send_websocket(b"binary")
        req.send_websocket(b"bytes as text", binary=False)
        req.send_websocket("text as binary", binary=True)
        req.close_websocket(4001, "bye \u2713")
        req.send_websocket("after close")

    node_factory(handler)
    fake.request(b"app", SID1, HTTP_UPGRADE="websocket")
    assert [fake.recv()[2:] for _ in range(5)] == [
        [b"websocket", b"text"], [b"websocket-binary", b"binary"], [b"websocket", b"bytes as text"],
        [b"websocket-binary", b"text as binary"], [b"end", b"\x0f\xa1" + "bye \u2713".encode()]]
    assert fake.nothing_for(0.3)


def test_websocket_handler_return_closes(fake, node_factory):
    node_factory(lambda req: req.send_websocket("bye"))
    fake.request(b"app", SID1, HTTP_UPGRADE="websocket")
    assert fake.recv()[2:] == [b"websocket", b"bye"]
    assert fake.recv()[2:] == [b"end", b""]


def test_websocket_handler_crash_closes_with_1011(fake, node_factory):
    def handler(req):
        req.receive_websocket()
        raise RuntimeError("boom")

    node_factory(handler)
    fake.request(b"app", SID1, HTTP_UPGRADE="websocket")
    fake.send(b"app", SID1, b"websocket", b"hi")
    assert fake.recv()[2:] == [b"end", b"\x03\xf3"]


def test_websocket_backend_handshake(fake, node_factory):
    def handler(req):
        if req.path == "/refuse":
            req.reject_websocket(403, "not you")
            return
        req.accept_websocket(protocol="superchat")
        req.send_websocket("welcome")

    node_factory(handler)
    fake.request(b"app", SID1, path="/accept", HTTP_UPGRADE="websocket")
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                           b"Connection: Upgrade\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"]
    assert fake.recv()[2:] == [b"websocket", b"welcome"]
    assert fake.recv()[2:] == [b"end", b""]
    fake.request(b"app", SID2, path="/refuse", HTTP_UPGRADE="websocket")
    frames = fake.recv()
    assert frames[2] == b"headers" and frames[3].startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert frames[3].endswith(b"\r\n\r\nnot you")
    assert fake.recv()[2:] == [b"end", b"\x03\xf0"]  # 1008 where the gateway had upgraded already


def test_malformed_messages_are_dropped(fake, node_factory):
    node = node_factory(hello)
    fake.sock.send_multipart([b"app", b"only-two"])
    fake.send(b"app", SID1, b"bogus", b"")
    fake.send(b"app", SID2, b"uwsgi", b"\x00\x09\x00\x00junk")
    assert fake.recv()[1:] == [SID2, b"end", b""]
    fake.request(b"app", SID1, path="/still")
    assert fake.recv()[3].endswith(b"hi /still")
    assert node.stats["dropped"] == 3


def test_several_gateways(node_factory):
    gateways = [FakeGateway(), FakeGateway()]
    try:
        node_factory(hello, endpoints=[g.endpoint for g in gateways], gateways=gateways)
        for i, gw in enumerate(gateways):
            gw.request(b"app", SID1, path=f"/gw{i}")
        for i, gw in enumerate(gateways):
            assert gw.recv()[3].endswith(f"hi /gw{i}".encode())
    finally:
        for gw in gateways:
            gw.close()


def test_graceful_stop_finishes_in_flight_and_retries_new(fake):
    release = threading.Event()

    def handler(req):
        release.wait(5)
        hello(req)

    node = Node(fake.endpoint, "app", handler).start()  # the default identity: app#<pid>-<random>
    fake.wait_announce(node.identity)
    fake.request(node.identity, SID1, path="/slow")
    time.sleep(0.2)
    stopper = threading.Thread(target=node.stop, kwargs={"timeout": 5})
    stopper.start()
    time.sleep(0.2)
    fake.request(node.identity, SID2, path="/new")
    assert fake.recv()[1:] == [SID2, b"retry", b""]
    release.set()
    assert fake.recv()[3].endswith(b"hi /slow")
    stopper.join(5)
    assert not stopper.is_alive()
    assert node.stats["retried_while_draining"] == 1


def test_stop_deadline_ends_stuck_sessions(fake):
    release = threading.Event()
    node = Node(fake.endpoint, "app", lambda req: release.wait(10)).start()
    try:
        fake.wait_announce(node.identity)
        fake.request(node.identity, SID1)
        time.sleep(0.2)
        started = time.monotonic()
        node.stop(timeout=0.3)
        assert time.monotonic() - started < 3
        assert fake.recv()[1:] == [SID1, b"end", b""]
    finally:
        release.set()


def test_writes_after_stop_raise(fake):
    results = []
    node = Node(fake.endpoint, "app", None).start()
    node.stop(timeout=0)
    req = blastbeat.Request(node, 0, SID1, {"REQUEST_METHOD": "GET"})
    req.start(200)
    try:
        req.write(b"x")
    except ClientDisconnected:
        results.append("raised")
    assert results == ["raised"]


def test_send_head_early(fake, node_factory):
    gate = threading.Event()

    def handler(req):
        req.start(200, [("Content-Type", "text/event-stream")])
        req.send_head()
        req.send_head()  # once only
        gate.wait(5)
        req.write(b"data: 1\n\n")

    node_factory(handler)
    fake.request(b"app", SID1)
    assert fake.recv()[2:] == [b"headers", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n"]
    gate.set()
    assert fake.recv()[2:] == [b"chunk", b"data: 1\n\n"]
    assert fake.recv()[2:] == [b"chunk", b""]


def test_unread_body_after_response_is_dropped(fake, node_factory):
    node = node_factory(lambda req: req.respond(200, None, b"early"))
    fake.send(b"app", SID1, b"uwsgi", uwsgi.encode({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
                                                     "CONTENT_LENGTH": "9"}))
    assert fake.recv()[3].endswith(b"early")
    for piece in (b"abc", b"def", b"ghi", b""):
        fake.send(b"app", SID1, b"body", piece)
    fake.request(b"app", SID1, path="/next")
    assert fake.recv()[3].endswith(b"early")
    wait = time.monotonic() + 2
    while node._sessions and time.monotonic() < wait:
        time.sleep(0.02)
    assert not node._sessions, "finished sessions must not stay in the table"
