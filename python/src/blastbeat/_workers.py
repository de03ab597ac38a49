"""One connection per gateway worker (docs/PROTOCOL.md, "Worker processes").

A gateway with ``workers = N`` serves from N processes that share its ROUTER endpoint; every sid's first byte
names the worker that made it. The gateway's handshake metadata carries ``X-BlastBeat-Workers: N``; a node
labels each of its connections with ``X-BlastBeat-Worker: k`` (ZMQ_METADATA), and the gateway hands connection
k to worker k. With one connection per worker a request is answered by the worker that received it, without
crossing the gateway's worker mesh.

Here: the lifecycle of one such connection (:class:`LinkState`), one connection (:class:`Link`: its own DEALER
socket, handshake monitor, output queue and credit state), and reading the worker count from a received frame.
Owned by the node's I/O thread.
"""

from __future__ import annotations

import collections
import enum
from typing import Any, Deque, List, NamedTuple, Optional, Tuple

import zmq

from . import _credit

#: The gateway's handshake property: how many worker processes serve the endpoint.
WORKERS_PROPERTY = "X-BlastBeat-Workers"
#: The node's handshake property: which worker a connection is for.
WORKER_PROPERTY = "X-BlastBeat-Worker"
#: The gateway accepts ``workers`` = 1-64 (README.md, "Worker processes"); a larger count is not trusted, so a
#: malformed property cannot make the node open unbounded sockets.
MAX_WORKERS = 64


class LinkState(enum.Enum):
    """Where one connection to one gateway worker is."""

    #: ``connect`` was called; the ZeroMQ handshake has not completed yet (or failed and libzmq retries).
    CONNECTING = "connecting"
    #: Handshake done and announced with a ``pong``; the gateway's worker count is read from the next message.
    LEARNING = "learning"
    #: Handshake done and the worker count read since: requests arriving here are served.
    SERVING = "serving"
    #: A working connection was lost; libzmq reconnects by itself (the node's other connections go on).
    RECONNECTING = "reconnecting"
    #: Closed by the node (the gateway has fewer workers now, or the node stopped). Final.
    CLOSED = "closed"

    @property
    def handshaken(self) -> bool:
        return self in (LinkState.LEARNING, LinkState.SERVING)


#: Monitor events for a failed ZMTP handshake (a wrong CURVE key, CURVE on one side only...).
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
MONITORED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED

#: One message waiting to be sent on a link: its frames and the bytes it counts in the node's output buffer.
Pending = Tuple[List[bytes], int]


class Link:
    """One DEALER connection of a node to one worker of one gateway (``gateway`` indexes ``Node.endpoints``)."""

    def __init__(self, gateway: int, worker: int, endpoint: str) -> None:
        self.gateway = gateway
        self.worker = worker
        self.endpoint = endpoint
        self.state = LinkState.CONNECTING
        self.sock: Optional["zmq.Socket[bytes]"] = None
        self.monitor: Optional["zmq.Socket[bytes]"] = None
        #: Messages the credit gate let out (or that need no credit), in order, waiting for the socket.
        self.pending: Deque[Pending] = collections.deque()
        #: Per-sid credit of this connection: each connection announces and is granted credit on its own.
        self.gate = _credit.CreditGate()
        #: Whether POLLOUT is registered for the socket (only while ``pending`` is not empty).
        self.polling_out = False
        #: A failed handshake was reported; the next one is logged only at debug until a handshake succeeds.
        self.handshake_warned = False

    @property
    def label(self) -> bytes:
        """The ZMQ_METADATA option value naming this connection's worker."""
        return f"{WORKER_PROPERTY}:{self.worker}".encode("ascii")

    def describe(self) -> str:
        return self.endpoint if self.worker == 0 else f"{self.endpoint} (worker {self.worker})"

    def open(self, context: "zmq.Context[Any]", identity: bytes, linger: float, curve: Any,
             labelled: bool) -> bool:
        """Create the socket with every option set before ``connect`` (they apply to the connection only then).

        Returns whether the connection carries its label: False when ``labelled`` is false or this pyzmq/libzmq
        lacks ZMQ_METADATA (a draft option of libzmq 4.3), which leaves the node one connection per gateway."""
        sock = context.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.LINGER, int(linger * 1000))
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            if labelled:
                try:
                    sock.setsockopt(getattr(zmq, "METADATA"), self.label)
                except (AttributeError, zmq.ZMQError):
                    labelled = False
            if curve is not None:
                # Client side of CurveZMQ: the same keys on every connection of the node.
                sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
                sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server)
            self.monitor = sock.get_monitor_socket(MONITORED)
            sock.connect(self.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self.sock = sock
        return labelled

    def close(self, linger: Optional[float] = None) -> List[_credit.Item]:
        """Close the socket and monitor; returns the messages that waited for credit (dropped)."""
        self.state = LinkState.CLOSED
        if self.sock is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
        if self.monitor is not None:
            self.monitor.close(linger=0)
        if self.sock is not None:
            self.sock.close(linger=None if linger is None else int(linger * 1000))
        self.pending.clear()
        return self.gate.reset()


class WorkerCount(enum.Enum):
    """What a received message says about the gateway's workers."""

    #: No ``X-BlastBeat-Workers`` property: a gateway without workers, an older one, or the libzmq engine.
    ABSENT = "absent"
    #: The property is there but is not a count 1..MAX_WORKERS.
    MALFORMED = "malformed"
    #: A valid count (see :func:`read_worker_count`).
    VALID = "valid"


def read_worker_count(frame: "zmq.Frame") -> Tuple[WorkerCount, int, Optional[str]]:
    """The gateway's worker count from a received frame's peer properties: (kind, count, raw text).

    The count is 1 unless the kind is VALID."""
    try:
        raw = frame.get(WORKERS_PROPERTY)
    except zmq.ZMQError:
        return WorkerCount.ABSENT, 1, None
    text = raw if isinstance(raw, str) else str(raw)
    if text.isascii() and text.isdigit() and len(text) <= 3 and 1 <= int(text) <= MAX_WORKERS:
        return WorkerCount.VALID, int(text), text
    return WorkerCount.MALFORMED, 1, text


class ConnectionInfo(NamedTuple):
    """A snapshot of one connection (``Node.connections``)."""

    endpoint: str
    #: Index of the gateway endpoint in ``Node.endpoints``.
    gateway: int
    #: The worker the connection is labelled for (``X-BlastBeat-Worker``).
    worker: int
    state: LinkState
    #: The worker count the gateway advertised (``X-BlastBeat-Workers``); 1 when it advertised none (yet).
    workers: int
