"""Peers for the memory-budget tests (test_memory_budget.py): a raw pyzmq node that streams large bodies, slow
HTTP readers on their own loopback source addresses, and an RSS sampler of the serving process."""

from __future__ import annotations

import collections
import hashlib
import socket
import threading
import time
from urllib.parse import parse_qs

import zmq

from helpers import decode_env, response_head, rss_bytes

#: Bodies are one pseudo-random block per seed, repeated; pieces are slices of it (PIECE divides BLOCK).
BLOCK = 1 << 20
PIECE = 256 << 10


def block(seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(BLOCK)


def expected_digest(seed: str, size: int) -> str:
    data, digest, left = block(seed), hashlib.sha256(), size
    while left:
        n = min(left, BLOCK)
        digest.update(data[:n])
        left -= n
    return digest.hexdigest()


class StreamingBackend(threading.Thread):
    """A node written with nothing but pyzmq and no credit: `GET /?size=N&seed=S` is answered with N bytes of
    `block(S)` repeated, in 256 KiB `body` messages sent round-robin over the open sessions with non-blocking
    sends (SNDHWM 4), so this process never holds one session back for another: only the gateway can."""

    def __init__(self, endpoint: str, identity: str):
        super().__init__(daemon=True, name=f"streaming-{identity}")
        self.endpoint, self.identity = endpoint, identity.encode()
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.requests = 0

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)

    def start_response(self, sid: bytes, env: dict, control, jobs: dict) -> None:
        """`GET /?size=N&seed=S`: the head now (`control`), the body in pieces as sends allow (`jobs`)."""
        query = parse_qs(env.get("QUERY_STRING", ""))
        size, seed = int(query["size"][0]), query["seed"][0]
        control.append([sid, b"headers", response_head(200, [("Content-Length", str(size))])])
        jobs[sid] = [memoryview(block(seed)), 0, size]

    def run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        control: collections.deque = collections.deque([[b"", b"pong", b""]])
        jobs: dict[bytes, list] = {}
        try:
            while not self.stop_event.is_set():
                while True:
                    try:
                        sid, kind, body = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if kind == b"ping":
                        control.append([b"", b"pong", b""])
                    elif kind == b"uwsgi":
                        self.requests += 1
                        self.start_response(sid, decode_env(body), control, jobs)
                    elif kind == b"end":
                        jobs.pop(sid, None)
                blocked = False
                while control and not blocked:
                    try:
                        sock.send_multipart(control[0], zmq.NOBLOCK)
                        control.popleft()
                    except zmq.Again:
                        blocked = True
                for sid in list(jobs):
                    if blocked or control:
                        break
                    data, offset, size = jobs[sid]
                    n = min(PIECE, size - offset)
                    start = offset % BLOCK
                    try:
                        sock.send_multipart([sid, b"body", data[start:start + n]], zmq.NOBLOCK)
                    except zmq.Again:
                        blocked = True
                        break
                    jobs[sid][1] = offset + n
                    if offset + n >= size:
                        del jobs[sid]
                if blocked or not jobs:
                    sock.poll(10, zmq.POLLIN | (zmq.POLLOUT if blocked else 0))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))
        finally:
            sock.close(linger=0)
            ctx.term()


class BodyReader(threading.Thread):
    """One HTTP/1.1 client from its own loopback source address: GETs `path`, reads the head, then the body
    slowly (`chunk` bytes every `pause` s) while `slow` is set, then as fast as it can, hashing as it goes.
    A small receive buffer keeps the kernel from absorbing what the gateway should be holding."""

    def __init__(self, port: int, source: str, path: str, slow: threading.Event, *, chunk: int = 16 << 10,
                 pause: float = 0.02, timeout: float = 120.0):
        super().__init__(daemon=True, name=f"reader-{source}")
        self.port, self.source, self.path, self.slow = port, source, path, slow
        self.chunk, self.pause, self.timeout = chunk, pause, timeout
        self.status = 0
        self.length = 0
        self.received = 0
        self.digest = ""
        self.error = ""
        self.done_at = 0.0

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = repr(exc)

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        s.bind((self.source, 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", self.port))
        with s:
            s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                more = s.recv(4096)
                if not more:
                    raise ConnectionError(f"closed before the head: {data!r}")
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self.length = int(value)
            digest = hashlib.sha256(rest)
            self.received = len(rest)
            buffer = bytearray(1 << 20)
            view = memoryview(buffer)
            while self.received < self.length:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.received} of {self.length} bytes after {self.timeout}s")
                slow = self.slow.is_set()
                n = s.recv_into(view, self.chunk if slow else len(buffer))
                if n == 0:
                    break
                digest.update(view[:n])
                self.received += n
                if slow:
                    time.sleep(self.pause)
            self.digest = digest.hexdigest()
            self.done_at = time.monotonic()


class RSSSampler(threading.Thread):
    """The largest VmRSS of `pid` seen every `interval` s until stopped."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
                self.samples += 1
            except OSError:
                return
            time.sleep(self.interval)

    def stop(self) -> int:
        self._finished.set()
        self.join(2)
        return self.peak
