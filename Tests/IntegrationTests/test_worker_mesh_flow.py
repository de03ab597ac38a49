"""Flow control across the worker mesh (README "Worker processes" and "Memory budget", docs/PROTOCOL.md "Credit"):
with ``workers = 2`` a backend that holds ONE connection (a raw pyzmq DEALER that knows nothing of workers) serves
the requests of both workers, the other worker's through the holder. Its credit and the memory budget must hold
there as on the direct path."""

from __future__ import annotations

import threading
import time

import zmq

from helpers import RawConn, decode_env, response_head, wait_until
import os
import signal

from test_workers import holder_pid, workers_ready

COUNTED = (b"headers", b"body", b"chunk", b"websocket", b"websocket-binary")


class CreditLoop(threading.Thread):
    """The minimal credit-aware backend loop of docs/PROTOCOL.md ("Credit") on one DEALER: every request is
    answered with ``w<sid[0]>`` plus ``size`` bytes of body in 16 KiB `body` messages, each sent only within the
    sid's credit. Records the acknowledgements, grants, overruns (none may happen) and which workers asked."""

    def __init__(self, endpoint: str, identity: bytes, size: int = 200_000):
        super().__init__(daemon=True)
        self.endpoint, self.identity, self.size = endpoint, identity, size
        self.acks = 0
        self.grants = 0
        self.workers: list[int] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
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
                    self.grants += 1
                    credit[sid] = credit.get(sid, 0) + int.from_bytes(body, "big")
                    flush(sid)
                elif kind == b"uwsgi":
                    decode_env(body)
                    self.workers.append(sid[0])
                    credit[sid] = 0
                    text = b"w%d " % sid[0] + b"x" * self.size
                    head = response_head(200, [("Content-Length", str(len(text)))])
                    queue = waiting.setdefault(sid, [])
                    queue.append([b"headers", head])
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


def test_a_single_connection_credit_backend_serves_both_workers(make_gateway):
    gw = make_gateway(options={"workers": 2})
    workers_ready(gw)
    backend = CreditLoop(gw.endpoint, b"NODE1")
    backend.start()
    try:
        wait_until(lambda: "takes credit" in gw.logs(), 5, what="the credit announcement")
        statuses = []
        for _ in range(12):
            with RawConn(gw.port, timeout=10) as conn:
                conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                response = conn.read_response(timeout=10)
                statuses.append((response.status, response.body[:3]))
        print(statuses, backend.acks, backend.grants, backend.workers)
        assert set(backend.workers) == {0, 1}, backend.workers
        assert all(s == 200 for s, _ in statuses), statuses
        assert not backend.errors
    finally:
        backend.stop_event.set()
        backend.join(5)


def get_all(gw, count):
    statuses = []
    for _ in range(count):
        with RawConn(gw.port, timeout=10) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            response = conn.read_response(timeout=10)
            statuses.append((response.status, response.body[:3]))
    return statuses


def test_restarted_non_holder(make_gateway):
    gw = make_gateway(options={"workers": 2})
    pids = workers_ready(gw)
    backend = CreditLoop(gw.endpoint, b"NODE1")
    backend.start()
    try:
        wait_until(lambda: "takes credit" in gw.logs(), 5, what="the credit announcement")
        holder = holder_pid(gw, pids)
        other = [p for p in pids if p != holder][0]
        os.kill(other, signal.SIGKILL)
        wait_until(lambda: other not in gw.worker_pids() and len(gw.worker_pids()) == 2, 10, what="restart")
        time.sleep(1)
        statuses = get_all(gw, 12)
        print(statuses, backend.acks, backend.grants, backend.workers)
        assert all(s == 200 for s, _ in statuses), statuses
    finally:
        backend.stop_event.set()
        backend.join(5)
