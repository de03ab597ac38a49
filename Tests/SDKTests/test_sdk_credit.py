"""Credit in the Python SDK (docs/PROTOCOL.md, "Credit"): blastbeat.Node against a scripted ROUTER. The node
announces credit, waits for it per sid once the gateway acknowledges, splits bodies to fit it, and one session
without credit holds back no other. (Against the real gateway: test_sdk_credit_gateway.py.)"""

from __future__ import annotations

import os
import threading
import time

import pytest

from blastbeat import ClientDisconnected, Node
from test_sdk_node_protocol import FakeGateway

SID_BIG = os.urandom(16)
SID_SMALL = os.urandom(16)
BIG = os.urandom(300_000)


def credit(n: int) -> bytes:
    return n.to_bytes(4, "big")


def app(request) -> None:
    if request.path == "/big":
        request.respond(200, [("Content-Length", str(len(BIG)))], BIG)
    elif request.path == "/stream":
        request.start(200)
        try:
            for _ in range(40):
                request.write(b"x" * (256 << 10))
        except ClientDisconnected:
            request.node.stats["test_disconnected"] = 1
    else:
        request.respond(200, [("Content-Length", "2")], b"hi")


def started(gw: FakeGateway, **options) -> tuple[Node, bytes]:
    node = Node(gw.endpoint, "app", app, instance="1", threads=4, **options).start()
    identity, announcement = None, None
    deadline = time.monotonic() + 5
    while announcement is None and time.monotonic() < deadline:
        frames = gw.recv(5, skip_pongs=False)
        if frames[2] == b"pong":
            identity, announcement = frames[0], frames[3]
    assert identity == b"app#1"
    return node, announcement


@pytest.fixture
def fake():
    """A scripted ROUTER; ``fake.start(**options)`` starts a node on it (stopped after the test) and returns it
    with the body of its announcing pong."""
    gw = FakeGateway()
    nodes: list[Node] = []

    def start(**options) -> tuple[Node, bytes]:
        node, announcement = started(gw, **options)
        nodes.append(node)
        return node, announcement

    gw.start = start
    yield gw
    for node in nodes:
        node.stop(2)
    gw.close()


def body_of(messages: list) -> bytes:
    """The response body in `headers` (after the head) and `body` messages, in order."""
    data = b""
    for frames in messages:
        payload = frames[3]
        if frames[2] == b"headers":
            payload = payload.partition(b"\r\n\r\n")[2]
        data += payload
    return data


def collect(gw: FakeGateway, sid: bytes, until: int, timeout: float = 5.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(body_of(got)) < until:
        frames = gw.recv(max(0.01, deadline - time.monotonic()))
        assert frames[1] == sid, f"a message for another sid: {frames[:3]!r}"
        got.append(frames)
    return got


def test_announces_credit_and_sends_each_sid_what_it_was_granted(fake):
    node, announcement = fake.start()
    assert announcement == b"credit"
    fake.send(b"app#1", b"", b"credit")  # the acknowledgement: every sid waits for credit from now on
    fake.request(b"app#1", SID_BIG, path="/big")
    fake.request(b"app#1", SID_SMALL, path="/small")
    assert fake.nothing_for(0.4), "sent without credit"
    # The small session is served as soon as it has credit, while the big one still has none.
    fake.send(b"app#1", SID_SMALL, b"credit", credit(1000))
    small = collect(fake, SID_SMALL, 2)
    assert small[0][2] == b"headers" and body_of(small) == b"hi"
    # The big one gets its head (with at most 64 KiB of body: a head cannot be split) and the body split
    # to what is left of the credit.
    fake.send(b"app#1", SID_BIG, b"credit", credit(100_000))
    first = collect(fake, SID_BIG, 100_000 - 100)
    assert first[0][2] == b"headers"
    sent = sum(len(f[3]) for f in first)
    assert sent <= 100_000, sent
    assert fake.nothing_for(0.3), "sent past the credit"
    fake.send(b"app#1", SID_BIG, b"credit", credit(400_000))
    rest = collect(fake, SID_BIG, len(BIG) - len(body_of(first)))
    assert body_of(first) + body_of(rest) == BIG


def test_a_gateway_that_does_not_acknowledge_gets_responses_at_once(fake):
    node, announcement = fake.start()
    assert announcement == b"credit"
    fake.request(b"app#1", SID_BIG, path="/big")
    got = collect(fake, SID_BIG, len(BIG))
    assert body_of(got) == BIG


def test_credit_off_announces_nothing(fake):
    node, announcement = fake.start(credit=False)
    assert announcement == b""


def test_a_request_from_before_the_acknowledgement_is_answered_without_credit(fake):
    node, _ = fake.start()
    fake.request(b"app#1", SID_BIG, path="/small")
    fake.send(b"app#1", b"", b"credit")  # acknowledged while the request is being served
    got = collect(fake, SID_BIG, 2)
    assert body_of(got) == b"hi"
    fake.request(b"app#1", SID_BIG, path="/small")  # the next one waits for its credit
    assert fake.nothing_for(0.3)
    fake.send(b"app#1", SID_BIG, b"credit", credit(100))
    assert body_of(collect(fake, SID_BIG, 2)) == b"hi"


def test_end_releases_a_writer_waiting_for_credit(fake):
    node, _ = fake.start()
    fake.send(b"app#1", b"", b"credit")
    fake.request(b"app#1", SID_BIG, path="/stream")
    fake.send(b"app#1", SID_BIG, b"credit", credit(300_000))
    collect(fake, SID_BIG, 200_000)
    # The handler now waits in write() for credit that never comes; the client goes away.
    time.sleep(0.3)
    assert "test_disconnected" not in node.stats
    fake.send(b"app#1", SID_BIG, b"end")
    deadline = time.monotonic() + 5
    while "test_disconnected" not in node.stats and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.stats.get("test_disconnected") == 1
    assert threading.active_count() < 50
