"""A gateway with N workers, played by N real pyzmq ROUTERs behind one endpoint, for the per-worker
connection tests of the SDKs (test_sdk_swift_workers.py).

The native gateway's workers share one listening socket, and the worker that accepts a backend connection
reads its ``X-BlastBeat-Worker`` label right after the handshake and hands the connection to that worker
(README, "Worker processes"). libzmq cannot hand a connection from one socket to another, so the stand-in
does it a step earlier: its acceptor on the public port plays the first half of the ZMTP 3 NULL handshake
itself (greeting, then the node's READY, where the label is), picks the worker (the label; none or out of
range: worker 0, where the connection stays, as in the gateway), and splices the connection to that
worker's ROUTER on its private port, replaying the node's greeting and READY. The ROUTER's own READY, with
``X-BlastBeat-Workers`` set by ``zmq.METADATA`` before its bind, reaches the node unchanged, and every later
byte passes through in both directions. So each ROUTER sees exactly the connections its worker would hold,
and ``frame.get("X-BlastBeat-Worker")`` on what it receives names the label the node sent.

Bounded: at most ``MAX_CONNECTIONS`` connections are accepted, every socket has a timeout, and ``close``
stops every thread within a second.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Optional

import zmq

from sdk_helpers import free_port

MAX_CONNECTIONS = 64
LABEL = "X-BlastBeat-Worker"
COUNT = "X-BlastBeat-Workers"


def null_greeting() -> bytes:
    """ZMTP 3.1 greeting, NULL mechanism, as-server 0 (what a libzmq ROUTER sends without CURVE)."""
    return b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    return data


def read_command(sock: socket.socket) -> bytes:
    """One whole ZMTP command frame, as it came (flags, size, body)."""
    flags = recv_exact(sock, 1)
    if not flags[0] & 0x04:
        raise ConnectionError(f"expected a command, got flags {flags[0]:#x}")
    size_bytes = recv_exact(sock, 8 if flags[0] & 0x02 else 1)
    size = struct.unpack(">Q", size_bytes)[0] if len(size_bytes) == 8 else size_bytes[0]
    if size > 65536:
        raise ConnectionError("command too large")
    return flags + size_bytes + recv_exact(sock, size)


def ready_properties(command: bytes) -> dict:
    """The metadata of a READY command frame (ZMTP 3: name-size, name, value-size (4, BE), value)."""
    size_length = 9 if command[0] & 0x02 else 2
    body = command[size_length:]
    name_length = body[0]
    if body[1:1 + name_length] != b"READY":
        raise ConnectionError(f"expected READY, got {body[1:1 + name_length]!r}")
    props, pos = {}, 1 + name_length
    while pos < len(body):
        n = body[pos]
        name = body[pos + 1:pos + 1 + n].decode("latin-1")
        pos += 1 + n
        (v,) = struct.unpack(">I", body[pos:pos + 4])
        props[name] = body[pos + 4:pos + 4 + v]
        pos += 4 + v
    return props


class Connection:
    def __init__(self, label: Optional[str], worker: int):
        self.label = label
        self.worker = worker
        self.open = True


class WorkerGateway:
    """``workers`` ROUTERs behind ``endpoint``; ``advertise=False`` plays an old gateway (no count)."""

    def __init__(self, workers: int, advertise: bool = True):
        self.ctx = zmq.Context()
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.1)
        self.connections: list[Connection] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.routers: list = []
        self.router_ports: list[int] = []
        #: Seconds to hold a connection with this label before handing it to its worker (to make another
        #: connection reach a ROUTER first).
        self.handover_delay: dict[str, float] = {}
        self.restart(workers, advertise)
        self._spawn(self._accept)

    def restart(self, workers: int, advertise: bool = True) -> None:
        """The gateway restarts with ``workers`` workers: every ROUTER closes (and with it every node
        connection), new ones bind."""
        for router in self.routers:
            router.close(linger=0)
        self.routers, self.router_ports = [], []
        for _ in range(workers):
            router, port = self._router(workers, advertise)
            self.routers.append(router)
            self.router_ports.append(port)

    def restart_worker(self, worker: int) -> None:
        """One worker restarts: its ROUTER, and the connections it held, close; a new one takes its place."""
        old = self.routers[worker]
        self.routers[worker], self.router_ports[worker] = self._router(len(self.routers), True)
        old.close(linger=0)

    def _router(self, workers: int, advertise: bool) -> tuple:
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        if advertise:
            router.setsockopt(zmq.METADATA, f"{COUNT}:{workers}".encode())  # before bind: its READY carries it
        return router, router.bind_to_random_port("tcp://127.0.0.1")

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if len(self.connections) >= MAX_CONNECTIONS:
                client.close()
                continue
            self._spawn(self._hand_over, client)

    def _hand_over(self, client: socket.socket) -> None:
        upstream = None
        connection = None
        try:
            client.settimeout(5)
            client.sendall(null_greeting())
            greeting = recv_exact(client, 64)
            ready = read_command(client)
            raw = ready_properties(ready).get(LABEL)
            label = raw.decode("latin-1") if raw is not None else None
            ports = list(self.router_ports)
            worker = int(label) if label is not None and label.isdigit() and int(label) < len(ports) else 0
            connection = Connection(label, worker)
            with self.lock:
                self.connections.append(connection)
            if self.stopping.wait(self.handover_delay.get(label, 0.0)):
                return
            upstream = socket.create_connection(("127.0.0.1", ports[worker]), timeout=5)
            upstream.sendall(greeting + ready)
            recv_exact(upstream, 64)  # the ROUTER's greeting: the node has had the same one from us
            self._splice(client, upstream)
        except (OSError, ConnectionError):
            pass
        finally:
            if connection is not None:
                connection.open = False
            client.close()
            if upstream is not None:
                upstream.close()

    def _splice(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self.stopping.is_set():
            readable, _, _ = select.select([a, b], [], [], 0.1)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].settimeout(5)
                peers[sock].sendall(data)

    def open_labels(self) -> list:
        """The labels of the connections open now, in the order they were accepted."""
        with self.lock:
            return [c.label for c in self.connections if c.open]

    def accepted_labels(self) -> list:
        with self.lock:
            return [c.label for c in self.connections]

    def recv(self, worker: int, timeout: float) -> Optional[tuple]:
        """The next message at a worker as (label, identity, sid, type, body), or None after ``timeout``."""
        router = self.routers[worker]
        if not router.poll(int(timeout * 1000)):
            return None
        frames = router.recv_multipart(copy=False)
        try:
            label = frames[0].get(LABEL)
        except zmq.ZMQError:  # the property is absent
            label = None
        return (label, *[f.bytes for f in frames])

    def expect(self, worker: int, kind: bytes, timeout: float = 10.0, sid: Optional[bytes] = None) -> tuple:
        """The next message of ``kind`` (and ``sid``) at a worker; others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            message = self.recv(worker, max(0.0, left)) if left > 0 else None
            if message is None:
                raise TimeoutError(f"no {kind!r} at worker {worker} within {timeout}s")
            if message[3] == kind and (sid is None or message[2] == sid):
                return message

    def send(self, worker: int, identity: bytes, sid: bytes, kind: bytes, body: bytes = b"") -> None:
        self.routers[worker].send_multipart([identity, sid, kind, body])

    @staticmethod
    def sid_of(worker: int) -> bytes:
        """A session id as worker ``worker`` makes them: its index first."""
        return bytes([worker]) + os.urandom(15)

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(2)
        for router in self.routers:
            router.close(linger=0)
        self.ctx.term()
