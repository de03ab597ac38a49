"""Flow control across the worker mesh (README "Worker processes" and "Memory budget", docs/PROTOCOL.md "Credit"
and "Flow control and limits"): with ``workers = 2`` a backend that holds ONE connection (a raw pyzmq DEALER that
knows nothing of workers) serves the requests of both workers, the other worker's through the holder. Credit,
the memory budget and ``max-node-queue`` must hold there as on the direct path, and no backend message may be
dropped on the way.

Which worker made a request: the first byte of its sid. A client is pinned to a worker by a keep-alive
connection whose first request (``GET /who``) that worker answered."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import time

import zmq

from budget_helpers import StreamingBackend, expected_digest
from helpers import RawConn, decode_env, http_request, request_bytes, response_head, rss_bytes, wait_until
from test_metrics import Scrape, admin_get
from test_workers import holder_pid, served_by, workers_ready

MIB = 1 << 20
COUNTED = (b"headers", b"body", b"chunk", b"websocket", b"websocket-binary")
WORKERS = {"workers": 2}


def raw_dealer(endpoint: str, identity: bytes) -> tuple[zmq.Context, zmq.Socket]:
    """A context and a DEALER connected as `identity` with one connection (a raw node, no SDK)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return ctx, sock


def scrape(gw) -> Scrape:
    return Scrape(admin_get(gw).body.decode())


def admin_options(**more) -> dict:
    from test_metrics import admin_options as base
    return base(**{**WORKERS, **more})


class CreditLoop(threading.Thread):
    """The minimal credit-aware backend loop of docs/PROTOCOL.md ("Credit") on one DEALER: it announces credit
    once, answers pings with a plain `pong`, and answers every request with ``w<sid[0]>`` plus ``size`` bytes in
    16 KiB `body` messages, each sent only within the sid's credit. Records the acknowledgements, the grants and
    which workers asked."""

    def __init__(self, endpoint: str, identity: bytes, size: int = 200_000):
        super().__init__(daemon=True)
        self.endpoint, self.identity, self.size = endpoint, identity, size
        self.acks = 0
        self.grants: list[int] = []
        self.workers: list[int] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        ctx, sock = raw_dealer(self.endpoint, self.identity)
        credit: dict[bytes, int] = {}
        waiting: dict[bytes, list] = {}
        granting = False

        def flush(sid: bytes) -> None:
            queue = waiting.get(sid, [])
            while queue:
                kind, body = queue[0]
                if granting and kind in COUNTED:
                    left = credit.get(sid, 0)
                    if left <= 0:
                        return
                    if kind in (b"body", b"chunk") and len(body) > left:
                        sock.send_multipart([sid, kind, body[:left]])
                        queue[0][1], credit[sid] = body[left:], 0
                        return
                    credit[sid] = left - len(body)
                sock.send_multipart([sid] + queue.pop(0))

        try:
            sock.send_multipart([b"", b"pong", b"credit"])
            while not self.stop_event.is_set():
                if not sock.poll(20):
                    continue
                sid, kind, body = sock.recv_multipart()
                if kind == b"ping":
                    sock.send_multipart([b"", b"pong", b""])
                elif kind == b"credit" and sid == b"":
                    self.acks += 1
                    granting = True
                elif kind == b"credit":
                    self.grants.append(int.from_bytes(body, "big"))
                    credit[sid] = credit.get(sid, 0) + int.from_bytes(body, "big")
                    flush(sid)
                elif kind == b"uwsgi":
                    decode_env(body)
                    self.workers.append(sid[0])
                    credit[sid] = 0
                    text = b"w%d " % sid[0] + b"x" * self.size
                    queue = waiting.setdefault(sid, [])
                    queue.append([b"headers", response_head(200, [("Content-Length", str(len(text)))])])
                    for at in range(0, len(text), 16 << 10):
                        queue.append([b"body", text[at:at + (16 << 10)]])
                    queue.append([b"end", b""])
                    flush(sid)
                elif kind == b"end":
                    credit.pop(sid, None)
                    waiting.pop(sid, None)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))
        finally:
            sock.close(linger=0)
            ctx.term()


def get_many(gw, count: int, size: int) -> list[tuple[int, bytes]]:
    """`count` requests, each on a new connection (the kernel spreads them over the workers): (status, body)."""
    answers = []
    for _ in range(count):
        with RawConn(gw.port, timeout=10) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            response = conn.read_response(timeout=10)
            answers.append((response.status, response.body))
    return answers


def check_served(answers, backend: CreditLoop, size: int) -> None:
    for status, body in answers:
        assert status == 200, answers
        assert len(body) == 3 + size and body[3:] == b"x" * size
    assert {body[:3] for _, body in answers} == {b"w0 ", b"w1 "}, "both workers' requests"
    assert not backend.errors


def test_a_single_connection_that_takes_credit_serves_both_workers_within_their_grants(make_gateway):
    """Both workers' requests are answered within credit: only the holder acknowledges the announcement (one
    `credit` with an empty sid), and the other worker's grants reach the backend through it."""
    gw = make_gateway(options=admin_options())
    workers_ready(gw)
    backend = CreditLoop(gw.endpoint, b"NODE1")
    backend.start()
    try:
        wait_until(lambda: gw.logs().count("NODE1 takes credit") == 2, 5, what="both workers know the credit")
        answers = get_many(gw, 16, 200_000)
        check_served(answers, backend, 200_000)
        assert backend.acks == 1, "only the worker holding the connection acknowledges"
        assert len(backend.grants) >= 16 and max(backend.grants) < 0xFFFFFFFF, backend.grants
        metrics = scrape(gw)
        assert metrics.value("blastbeat_credit_overruns_total") == 0
        assert metrics.value("blastbeat_credit_grants_total") >= 16
    finally:
        backend.stop_event.set()
        backend.join(5)


def test_a_restarted_worker_learns_that_the_connection_takes_credit(make_gateway):
    """The backend announces credit once, after connecting; the worker that does not hold its connection is
    killed and started again. It learns the announcement from the holder (with the connection's `J`), so its
    requests are credited too. Before, they went out uncredited to a backend that waited for grants: 504."""
    gw = make_gateway(options=WORKERS)
    pids = workers_ready(gw)
    backend = CreditLoop(gw.endpoint, b"NODE1")
    backend.start()
    try:
        wait_until(lambda: gw.logs().count("NODE1 takes credit") == 2, 5, what="both workers know the credit")
        holder = holder_pid(gw, pids)
        other = next(p for p in pids if p != holder)
        os.kill(other, signal.SIGKILL)
        gw.wait_for_replacement(other, 10)
        wait_until(lambda: gw.logs().count("NODE1 takes credit") == 3, 5, what="the restarted worker told")
        answers = get_many(gw, 16, 200_000)
        check_served(answers, backend, 200_000)
        assert backend.acks == 1
        assert max(backend.grants) < 0xFFFFFFFF, "every request was credited, none answered by the largest grant"
    finally:
        backend.stop_event.set()
        backend.join(5)


class WhoStreamingBackend(StreamingBackend):
    """budget_helpers.StreamingBackend (a raw pyzmq node without credit and with one connection, SNDHWM 4: only
    the gateway holds a session back) that also answers `GET /who` with ``w<sid[0]>``: which worker made it."""

    def start_response(self, sid: bytes, env: dict, control, jobs: dict) -> None:
        if env.get("PATH_INFO") == "/who":
            control.append([sid, b"headers", response_head(200, [("Content-Length", "2")]) + b"w%d" % sid[0]])
            return
        super().start_response(sid, env, control, jobs)


def pinned_connection(gw, worker: int, source: str) -> RawConn:
    """A keep-alive connection from `source` whose `GET /who` worker `worker` answered."""
    for _ in range(200):
        conn = RawConn(gw.port, timeout=10, source=source)
        conn.send(request_bytes("GET", "/who", "localhost"))
        response = conn.read_response(timeout=10)
        assert response.status == 200, response.raw
        if response.body == b"w%d" % worker:
            return conn
        conn.close()
    raise AssertionError(f"no connection from {source} landed on worker {worker}")


def read_body(conn: RawConn, size: int, timeout: float) -> str:
    """Reads a response of `size` body bytes on `conn`; returns the body's SHA-256."""
    response = conn.read_response(timeout=timeout)
    assert response.status == 200 and len(response.body) == size, (response.status, len(response.body))
    return hashlib.sha256(response.body).hexdigest()


def test_a_stalled_client_at_the_other_worker_pauses_the_backend_at_the_holder(make_gateway):
    """The budget's fallback across the mesh: a client of the worker that does not hold the backend's connection
    stops reading; that worker's budget fills and it asks the holder to stop reading the connection (`P`). A
    client of the holder then waits too (the documented trade of the fallback), the node is not declared dead
    meanwhile, and once the stalled client goes both workers read again (`C`) and the body arrives whole."""
    gw = make_gateway(vhosts={"localhost": ["RAW"]},
                      options=admin_options(**{"max-buffered": "8m", "body-timeout": "60", "backend-timeout": "60",
                                               "ping-freq": "1", "ping-timeout": "3"}))
    pids = workers_ready(gw)
    backend = WhoStreamingBackend(gw.endpoint, "RAW")
    backend.start()
    try:
        wait_until(lambda: scrape(gw).value("blastbeat_node_instances_connected", node="RAW") == 1, 10,
                   what="node RAW up")
        holder = gw.worker_index(holder_pid(gw, pids))
        other = 1 - holder
        stalled = pinned_connection(gw, other, "127.0.0.2")
        fast = pinned_connection(gw, holder, "127.0.0.3")
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        stalled.send(request_bytes("GET", "/?size=200000000&seed=stalled", "localhost"))
        wait_until(lambda: scrape(gw).value("blastbeat_backends_paused") == 1, 20, what="the node paused")
        assert "not reading node RAW" in gw.logs()
        fast.send(request_bytes("GET", "/?size=8000000&seed=fast", "localhost"))
        time.sleep(4)  # past ping-timeout: the holder does not count the pause as silence
        assert "did not answer pings" not in gw.logs()
        metrics = scrape(gw)
        assert metrics.value("blastbeat_backends_paused") == 1
        # Each worker holds at most its share of the budget (4 MiB) plus what was in flight.
        assert metrics.value("blastbeat_budget_bytes", part="clients") <= 8 * MIB + 4 * MIB
        stalled.close()
        assert read_body(fast, 8_000_000, 60) == expected_digest("fast", 8_000_000)
        wait_until(lambda: scrape(gw).value("blastbeat_backends_paused") == 0, 10, what="the pause ended")
        assert "reading 1 backend connection(s) again" in gw.logs()
        fast.close()
        assert not backend.errors
    finally:
        backend.stop()


def test_twenty_slow_readers_on_both_workers_stay_within_each_workers_budget(make_gateway):
    """20 clients on both workers read 20 MB bodies slowly from a raw node with one connection (no credit): each
    worker's RSS stays under its share of max-buffered plus a fixed base (before: 102 MB for a 32 MiB budget at
    the worker that received the forwarded responses), and every body arrives whole (no message dropped)."""
    from budget_helpers import BodyReader, RSSSampler

    size = 20_000_000
    gw = make_gateway(vhosts={"localhost": ["BIG"]},
                      options=admin_options(**{"max-buffered": "32m", "body-timeout": "60", "backend-timeout": "60",
                                               "ping-freq": "1", "ping-timeout": "5"}))
    pids = workers_ready(gw)
    backend = WhoStreamingBackend(gw.endpoint, "BIG")
    backend.start()
    try:
        wait_until(lambda: scrape(gw).value("blastbeat_node_instances_connected", node="BIG") == 1, 10,
                   what="node BIG up")
        bases = {pid: rss_bytes(pid) for pid in pids}
        samplers = {pid: RSSSampler(pid) for pid in pids}
        for sampler in samplers.values():
            sampler.start()
        slow = threading.Event()
        slow.set()
        readers = [BodyReader(gw.port, f"127.0.0.{i + 2}", f"/?size={size}&seed=r{i}", slow) for i in range(20)]
        for reader in readers:
            reader.start()
        wait_until(lambda: scrape(gw).value("blastbeat_backend_read_pauses_total") >= 1, 20,
                   what="the budget holding the node back")
        time.sleep(2)
        during = scrape(gw)
        slow.clear()
        for reader in readers:
            reader.join(120)
        peaks = {pid: sampler.stop() for pid, sampler in samplers.items()}
        print("RSS base/peak MiB per worker:",
              {pid: (round(bases[pid] / MIB, 1), round(peaks[pid] / MIB, 1)) for pid in pids})
        for i, reader in enumerate(readers):
            assert not reader.error, f"reader {i}: {reader.error}"
            assert (reader.status, reader.received) == (200, size), f"reader {i}"
            assert reader.digest == expected_digest(f"r{i}", size), f"reader {i}: body differs"
        assert during.value("blastbeat_budget_bytes", part="clients") <= 32 * MIB + 8 * MIB
        for pid in pids:
            assert peaks[pid] <= bases[pid] + 16 * MIB + 24 * MIB, f"worker pid {pid}: {peaks[pid] / MIB:.1f} MiB"
        after = scrape(gw)
        assert after.value("blastbeat_worker_mesh_forwarded_messages_total") > 0, "responses crossed the mesh"
        wait_until(lambda: scrape(gw).value("blastbeat_backends_paused") == 0, 10, what="no pause left")
        assert not backend.errors
    finally:
        backend.stop()


def test_an_upload_through_the_holder_to_a_stalled_node_waits_and_arrives_whole(make_gateway, make_backend):
    """Client data for a node whose connection the other worker holds: the holder tells the sending worker when
    its queue for the node passes max-node-queue (`F`) and when it drained (`E`), and that worker stops reading
    its client meanwhile. Before, the holder dropped body messages past 2 x max-node-queue (the upload hung)."""
    from helpers import STALLED_NODE_OPTIONS, HTTPHandler, respond

    gw = make_gateway(vhosts={"localhost": ["SLOW"]}, options={**STALLED_NODE_OPTIONS, **WORKERS})
    pids = workers_ready(gw)
    stall = threading.Event()
    stall.set()

    def app(req, send):
        if req.path == "/who":
            respond(send, req.sid, b"w%d" % req.sid[0])
        else:
            respond(send, req.sid, b"%d %s" % (len(req.body), hashlib.sha256(req.body).hexdigest().encode()))

    handler = HTTPHandler(app)

    def stalling(sid, mtype, body, send):
        if mtype == b"body" and stall.is_set():
            stall.clear()
            time.sleep(4)
        handler(sid, mtype, body, send)

    make_backend(gw, "SLOW", stalling, rcvhwm=4)
    holder = holder_pid(gw, pids)
    other = gw.worker_index(next(p for p in pids if p != holder))
    conn = pinned_connection(gw, other, "127.0.0.4")
    before = rss_bytes(holder)
    payload = os.urandom(24 * MIB)
    head = request_bytes("POST", "/up", "localhost", headers=[("Content-Length", str(len(payload)))])
    sent = threading.Event()

    def upload():
        conn.sock.sendall(head + payload)
        sent.set()

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    time.sleep(2)
    assert not sent.is_set(), "the whole upload left the client during the stall"
    during = rss_bytes(holder)
    response = conn.read_response(timeout=30)
    thread.join(5)
    conn.close()
    assert response.status == 200
    assert response.body == b"%d %s" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
    assert during - before < 16 * MIB, f"the holder's RSS grew {(during - before) >> 20} MiB during the stall"
    assert "message dropped" not in gw.logs()


class DrippingBackend(threading.Thread):
    """A raw pyzmq node with one connection: `GET /who` says which worker made it (``w<sid[0]>``); `GET /drip?s=S`
    is answered with 100 bytes every 50 ms for S seconds, and meanwhile the node reads nothing, so pings wait
    unanswered: the way a node busy streaming a long response looks to the health checks."""

    def __init__(self, endpoint: str, identity: str):
        super().__init__(daemon=True, name=f"dripping-{identity}")
        self.endpoint, self.identity = endpoint, identity.encode()
        self.stop_event = threading.Event()
        self.drips = 0

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)

    def run(self) -> None:
        ctx, sock = raw_dealer(self.endpoint, self.identity)
        sock.send_multipart([b"", b"pong", b""])
        try:
            while not self.stop_event.is_set():
                if not sock.poll(100):
                    continue
                sid, kind, body = sock.recv_multipart()
                if kind == b"ping":
                    sock.send_multipart([b"", b"pong", b""])
                elif kind == b"uwsgi":
                    env = decode_env(body)
                    if env.get("PATH_INFO") == "/who":
                        sock.send_multipart([sid, b"headers", response_head(200, [("Content-Length", "2")])
                                             + b"w%d" % sid[0]])
                        continue
                    pieces = int(float(env["QUERY_STRING"].removeprefix("s=")) * 20)
                    sock.send_multipart([sid, b"headers", response_head(200, [("Content-Length", str(100 * pieces))])])
                    for _ in range(pieces):
                        time.sleep(0.05)
                        sock.send_multipart([sid, b"body", b"d" * 100])
                        self.drips += 1
        finally:
            sock.close(0)
            ctx.term()


def test_the_holder_counts_the_messages_it_forwards_as_signs_of_life(make_gateway):
    """A node streams a response to a client of the worker that does not hold its connection for longer than
    `ping-timeout`, answering no ping meanwhile. Its messages pass through the holder, which must count them as
    the node speaking: neither worker declares it dead, and the holder's own clients are served right after.
    (Before, the holder saw only pings unanswered and marked the node dead: its requests got 503.)"""
    gw = make_gateway(vhosts={"localhost": ["RAW"]},
                      options={**WORKERS, "ping-freq": "1", "ping-timeout": "2", "backend-timeout": "30"})
    workers_ready(gw)
    backend = DrippingBackend(gw.endpoint, "RAW")
    backend.start()
    try:
        # Where the connection ended up (after its handover to the identity's home worker, if any): the other
        # worker says so.
        placed = wait_until(lambda: re.search(r'node "RAW" has its connection at worker (\d)', gw.logs()), 10,
                            what="the connection placed")
        holder = int(placed.group(1))
        wait_until(lambda: http_request(gw.port, target="/who").status == 200, 10, interval=0.2, what="node RAW up")
        streamed = pinned_connection(gw, 1 - holder, "127.0.0.2")
        streamed.send(request_bytes("GET", "/drip?s=5", "localhost"))
        response = streamed.read_response(timeout=20)
        assert response.status == 200 and response.body == b"d" * 10_000, (response.status, len(response.body))
        assert backend.drips == 100
        # None of the workers gave up on it meanwhile, and the holder serves its own clients at once.
        logs = gw.logs()
        assert "did not answer pings" not in logs, logs[-3000:]
        pinned_connection(gw, holder, "127.0.0.3").close()
        streamed.close()
    finally:
        backend.stop()
