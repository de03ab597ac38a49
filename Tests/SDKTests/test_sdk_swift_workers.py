"""The Swift SDK opens one connection per gateway worker by itself (README.md, "Backend libraries"; issue #18).

No gateway binary: the gateway is worker_standin.WorkerGateway, real pyzmq ROUTERs (one per worker, each
advertising ``X-BlastBeat-Workers`` with ``zmq.METADATA`` set before bind) behind one endpoint, with the
gateway's handover of a labelled connection to its worker. The node is the Swift SDK's conformance backend
(``sdk-conformance-backend``, Tests/SDKTests/ConformanceBackend), given that one endpoint.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sdk_helpers import REPO, Proc, subprocess_env, wait_until
from worker_standin import WorkerGateway

from blastbeat import uwsgi


def swift_backend() -> Path:
    binary = Path(os.environ.get("SWIFT_EXAMPLES_DIR", REPO / ".build" / "debug")) / "sdk-conformance-backend"
    if not binary.is_file():
        pytest.fail(f"{binary} not found: run `swift build`", pytrace=False)
    return binary


@pytest.fixture
def standin():
    made: list[WorkerGateway] = []

    def factory(workers: int, advertise: bool = True) -> WorkerGateway:
        gateway = WorkerGateway(workers, advertise)
        made.append(gateway)
        return gateway

    yield factory
    for gateway in made:
        gateway.close()


@pytest.fixture
def node(tmp_path):
    procs: list[Proc] = []

    def start(endpoint: str) -> Proc:
        proc = Proc([str(swift_backend()), "--connect", endpoint, "--node", "app"], tmp_path / "node.log",
                    env=subprocess_env())
        procs.append(proc)
        return proc

    yield start
    problems = []
    for proc in procs:
        rc = proc.stop()
        print(f"--- node output (exit {rc}) ---\n{proc.output()}")
        if rc != 0:  # a crash, or a sanitizer's report in an instrumented build
            problems.append(f"the node exited with {rc} after SIGTERM (expected 0)")
    assert not problems, problems


def request(path: str) -> bytes:
    return uwsgi.encode({"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
                         "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                         "REMOTE_PORT": "40000", "UWSGI_SCHEME": "http", "HTTP_HOST": "localhost",
                         "REQUEST_URI": path})


def answered_at(gateway: WorkerGateway, worker: int, identity: bytes) -> tuple:
    """Sends ``GET /length`` at ``worker`` with a sid that worker would make; returns the reply's label and
    whether any other worker saw a reply for that sid."""
    sid = gateway.sid_of(worker)
    gateway.send(worker, identity, sid, b"uwsgi", request("/length"))
    label, _, reply_sid, kind, body = gateway.expect(worker, b"headers", sid=sid)
    assert body.startswith(b"HTTP/1.1 200 OK\r\n") and body.endswith(b"length body\n"), body
    strays = [m for other in range(len(gateway.routers)) if other != worker
              for m in iter(lambda: gateway.recv(other, 0.05), None) if m[2] == sid]
    return label, strays


def ping_until(gateway: WorkerGateway, identity: bytes, done, timeout: float, what: str, routing_ids: dict) -> None:
    """Pings the node at worker 0 every 50 ms (as a gateway does every ping-freq) until ``done()``, noting in
    ``routing_ids`` the routing id the ROUTER gave each label's connection (a second connection with the
    node's identity gets one of libzmq's own)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        gateway.send(0, identity, b"", b"ping")
        while (message := gateway.recv(0, 0.05)) is not None:
            routing_ids[message[0]] = message[1]


def test_a_connection_per_worker_each_answering_its_own_requests(standin, node):
    gateway = standin(workers=2)
    proc = node(gateway.endpoint)
    # Connection 0 announces itself (credit) labelled 0, before the node knows the count.
    label, identity, sid, _, body = gateway.expect(0, b"pong")
    assert (label, sid, body) == ("0", b"", b"credit")
    assert identity.startswith(b"app#")
    # The gateway's first message tells the count: the node opens connection 1, which the handover puts at
    # worker 1, with the same identity.
    gateway.send(0, identity, b"", b"ping")
    assert gateway.expect(0, b"pong", sid=b"")[0] == "0"
    label1, identity1, _, _, body1 = gateway.expect(1, b"pong")
    assert (label1, identity1, body1) == ("1", identity, b"credit")
    assert gateway.open_labels() == ["0", "1"]

    # Requests made by each worker are answered on that worker's own connection, and only there.
    for worker in (0, 1, 1, 0):
        label, strays = answered_at(gateway, worker, identity)
        assert label == str(worker) and strays == []
    # Pings are answered per connection.
    gateway.send(1, identity, b"", b"ping")
    assert gateway.expect(1, b"pong", sid=b"")[0] == "1"
    # Nothing more was opened.
    time.sleep(0.3)
    assert gateway.accepted_labels() == ["0", "1"]
    assert "opening a connection to worker 1" in proc.output()


def post(path: str, length: int) -> bytes:
    return uwsgi.encode({"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
                         "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                         "REMOTE_PORT": "40000", "UWSGI_SCHEME": "http", "HTTP_HOST": "localhost",
                         "REQUEST_URI": path, "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": str(length)})


def test_a_request_forwarded_from_another_worker_is_served_across_the_handover(standin, node):
    """While worker 1 has no connection of the node yet, the gateway forwards its requests through worker 0's;
    once it has adopted its own, it sends the rest of such a session (body, credit, end) on that one. The node
    keeps the session where it began, answers it there (worker 0 hands the reply back), and does not wait for
    credit on it: the acknowledgement on connection 0 is worker 0's."""
    gateway = standin(workers=2)
    node(gateway.endpoint)
    _, identity, *_ = gateway.expect(0, b"pong")  # the announcement
    gateway.send(0, identity, b"", b"ping")
    gateway.expect(0, b"pong")  # the answer
    gateway.expect(1, b"pong")
    for worker in (0, 1):  # both acknowledge the credit announcement
        gateway.send(worker, identity, b"", b"credit")

    # Worker 1's request, forwarded through worker 0; its body then comes on worker 1's own connection.
    sid = gateway.sid_of(1)
    gateway.send(0, identity, sid, b"uwsgi", post("/echo", 5))
    # (Messages of one connection are handled in order: the pong shows the request arrived before its body.)
    gateway.send(0, identity, b"", b"ping")
    gateway.expect(0, b"pong", sid=b"")
    gateway.send(1, identity, sid, b"body", b"hello")
    gateway.send(1, identity, sid, b"body", b"")
    label, _, _, _, body = gateway.expect(0, b"headers", sid=sid, timeout=5)
    assert label == "0" and body.startswith(b"HTTP/1.1 200 OK\r\n") and body.endswith(b"\r\n\r\nhello"), body
    assert gateway.recv(1, 0.2) is None

    # Worker 0's own request on connection 0 still waits for worker 0's credit.
    own = gateway.sid_of(0)
    gateway.send(0, identity, own, b"uwsgi", request("/length"))
    assert gateway.recv(0, 0.5) is None, "answered before any credit"
    gateway.send(0, identity, own, b"credit", (65536).to_bytes(4, "big"))
    assert gateway.expect(0, b"headers", sid=own, timeout=5)[4].endswith(b"length body\n")


def test_a_lost_connection_reconnects_by_itself_without_the_others(standin, node):
    gateway = standin(workers=2)
    node(gateway.endpoint)
    _, identity, *_ = gateway.expect(0, b"pong")
    gateway.send(0, identity, b"", b"ping")
    gateway.expect(1, b"pong")
    # Worker 1 restarts: the connection it held closes.
    gateway.restart_worker(1)
    label, identity1, _, _, _ = gateway.expect(1, b"pong")
    assert (label, identity1) == ("1", identity)
    wait_until(lambda: gateway.open_labels() == ["0", "1"], 5, what="one open connection per worker")
    assert gateway.accepted_labels() == ["0", "1", "1"]  # connection 0 was never touched
    for worker in (0, 1):
        assert answered_at(gateway, worker, identity) == (str(worker), [])


def test_a_smaller_count_closes_the_extra_connection(standin, node):
    gateway = standin(workers=2)
    proc = node(gateway.endpoint)
    _, identity, *_ = gateway.expect(0, b"pong")
    gateway.send(0, identity, b"", b"ping")
    gateway.expect(1, b"pong")

    # The gateway restarts with one worker. Both connections come back to it (label 1 is out of range, so
    # that one stays at worker 0 too); the node reads the count 1 and closes connection 1 for good.
    gateway.restart(workers=1)
    routing_ids: dict = {}
    closing = "now has 1 worker(s): closing the connection(s) to worker 1"
    # (Both connections closed with the old ROUTERs: connection 0 alone may be back before connection 1 is.)
    ping_until(gateway, identity, lambda: closing in proc.output() and gateway.open_labels() == ["0"], 10,
               "connection 1 closed by the node", routing_ids)
    # And it stays closed: no reconnection with label 1.
    time.sleep(1.0)
    assert gateway.open_labels() == ["0"]
    # Connection 0 serves under the node's identity: if connection 1 held it at the ROUTER (which ignores a
    # second connection with an identity in use), the node connected 0 anew once 1 was gone. (Nothing reached
    # connection 0 during the second above, so the node connects it anew after 1 s, and, should that meet the
    # old connection still at the ROUTER, again 2 s after that: NodeCore.reclaimIdentity.)
    routing_ids.clear()
    ping_until(gateway, identity, lambda: routing_ids.get("0") == identity, 10, "a pong from connection 0",
               routing_ids)
    assert answered_at(gateway, 0, identity) == ("0", [])


def test_connection_zero_takes_the_identity_back_from_a_closed_extra_one(standin, node):
    """A libzmq ROUTER ignores a second connection with an identity in use. After a restart with one worker,
    connection 1 reaches it first and holds the identity; connection 0 gets nothing. When the node closes
    connection 1 (the count says 1), it connects 0 anew, which then gets the identity and serves."""
    gateway = standin(workers=2)
    proc = node(gateway.endpoint)
    _, identity, *_ = gateway.expect(0, b"pong")
    gateway.send(0, identity, b"", b"ping")
    gateway.expect(1, b"pong")

    gateway.handover_delay["0"] = 0.3
    gateway.restart(workers=1)
    wait_until(lambda: sorted(gateway.open_labels()) == ["0", "1"], 5, what="both connections back")
    time.sleep(0.6)  # connection 0's handshake at the ROUTER too, after connection 1's
    routing_ids: dict = {}
    closing = "now has 1 worker(s): closing the connection(s) to worker 1"
    ping_until(gateway, identity, lambda: closing in proc.output(), 10, "connection 1 closed", routing_ids)
    assert routing_ids.get("1") == identity  # connection 1 had the identity
    routing_ids.clear()
    ping_until(gateway, identity, lambda: routing_ids.get("0") == identity, 5,
               "a pong from connection 0 under the node's identity", routing_ids)
    assert answered_at(gateway, 0, identity) == ("0", [])
    assert gateway.open_labels() == ["0"] and "connecting to" in proc.output() and "anew" in proc.output()


def test_no_count_keeps_one_connection(standin, node):
    gateway = standin(workers=1, advertise=False)  # an older gateway, or zmq-engine = libzmq
    node(gateway.endpoint)
    label, identity, *_ = gateway.expect(0, b"pong")
    assert label == "0"
    for _ in range(10):
        gateway.send(0, identity, b"", b"ping")
        assert gateway.expect(0, b"pong", sid=b"", timeout=2)[0] == "0"
    time.sleep(0.5)
    assert gateway.accepted_labels() == ["0"]
    assert answered_at(gateway, 0, identity) == ("0", [])
