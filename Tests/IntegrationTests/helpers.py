"""Reusable peers for the BlastBeat integration tests.

* ``Gateway``: writes an ini with free ports, starts the real ``blastbeat`` binary, waits until it accepts,
  stops it with SIGTERM (kill -9 after 10 s) and remembers the exit status and the captured output.
* ``Backend``: a pyzmq DEALER node in a thread (identity, handler, auto-pong, stop event, recorded messages).
* ``HTTPHandler``: a Backend handler that assembles ``uwsgi`` + ``body`` messages (up to the empty end-of-body
  marker) into ``Request`` objects and calls an app with each complete request.
* ``RawConn``: a raw TCP HTTP/1.x client with a strict response reader, for byte-exact checks.

Everything is bounded in time: sockets carry timeouts and every wait has a deadline.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import zmq
from blastbeat import uwsgi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from free_ports import free_port  # noqa: E402  (shared with the SDK tests)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_BIN = str(REPO / ".build" / "debug" / "blastbeat")

#: What ends an access log line after ``vhost=NAME`` with several workers (README "Worker processes": the line
#: ends in ``worker=K``), and nothing with one: a regular expression, for the tests' access log patterns.
ACCESS_LOG_WORKER = r"(?: worker=\d+)?"

#: RFC 9110 reason phrases for the statuses the gateway produces itself.
REASONS = {
    100: "Continue",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def blastbeat_bin() -> str:
    return os.environ.get("BLASTBEAT_BIN", DEFAULT_BIN)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` holds, as /proc/net/tcp prints them. A process that starts or stops
    opens and closes descriptors while they are listed: one gone before it is read is skipped, and a process
    gone altogether holds none."""
    inodes = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def tcp_inodes(port: int, state: str, tables: Iterable[str] = ("/proc/net/tcp",)) -> set[str]:
    """The inodes of the TCP sockets whose local port is ``port`` in ``state`` ("0A" listening, "01"
    established; the kernel's hex codes)."""
    inodes = set()
    for table in tables:
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(f":{port:04X}") and fields[3] == state:
                    inodes.add(fields[9])
    return inodes


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``pred`` until it returns something truthy; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_accepts(port: int, host: str = "127.0.0.1", family: int = socket.AF_INET) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect((host, port))
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------------------
# uwsgi


# The one uwsgi decoder is the Python SDK's (python/, installed into the venv by `make venv`).
def uwsgi_to_dict(packet: bytes) -> dict[bytes, bytes]:
    """The env as bytes -> bytes (a repeated key keeps its last value)."""
    return uwsgi.decode_bytes(packet)


def uwsgi_pairs(packet: bytes) -> list[tuple[bytes, bytes]]:
    """Every pair, duplicates kept; the size field must be the standard one (pairs only), as the gateway writes it."""
    return uwsgi.decode_pairs(packet, standard_size=True)


def protocol_doc_decoder():
    """The standalone decoder docs/PROTOCOL.md gives backend authors ("The uwsgi environment"), run as written."""
    text = (REPO / "docs" / "PROTOCOL.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def uwsgi_to_dict" in b]
    namespace: dict = {}
    exec(code, namespace)
    return namespace["uwsgi_to_dict"]


def decode_env(packet: bytes) -> dict[str, str]:
    """The uwsgi env as a str → str dict (latin-1, so every byte survives)."""
    return uwsgi.decode(packet)


def request_has_body(env: dict[str, str]) -> bool:
    """True when the gateway will send body messages and the empty end-of-body marker for this request."""
    try:
        if int(env.get("CONTENT_LENGTH", "0") or "0") > 0:
            return True
    except ValueError:
        pass
    return "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()


# --------------------------------------------------------------------------------------------------------------
# Backend node


@dataclass
class Message:
    """One message a Backend received (3 frames), with the monotonic arrival time."""

    sid: bytes
    type: bytes
    body: bytes
    at: float


class Backend:
    """A BlastBeat node: a DEALER with ``identity`` connected to ``endpoint``, served by a thread.

    ``handler(sid, type, body, send)`` is called in the backend thread for every message except ``ping``
    (answered with ``pong`` while ``auto_pong`` and ``pong_enabled`` are set; with ``auto_pong=False`` pings go
    to the handler too). ``send(sid, type, body)`` may be called from any thread: off the backend thread it is
    queued and sent by the loop within ~10 ms. ``call_later`` runs a function in the backend thread.
    Every received message is recorded in ``received``; handler exceptions are kept in ``errors``.
    """

    def __init__(self, endpoint: str, identity: bytes | str, handler=None, auto_pong: bool = True,
                 rcvhwm: int | None = None):
        self.endpoint = endpoint
        self.rcvhwm = rcvhwm  # ZMQ_RCVHWM: how many messages libzmq buffers while the handler is busy
        self.identity = identity.encode() if isinstance(identity, str) else identity
        self.handler = handler
        self.auto_pong = auto_pong
        self.pong_enabled = True
        self.received: list[Message] = []
        self.sent: list[tuple[float, bytes, bytes, bytes]] = []
        self.errors: list[str] = []
        self.malformed: list[list[bytes]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._outbox: list[Callable[[], None]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._sock = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> "Backend":
        self._thread = threading.Thread(target=self._run, name=f"backend-{self.identity!r}", daemon=True)
        self._thread.start()
        if not self._started.wait(5):
            raise TimeoutError("backend thread did not start")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_ready(self, timeout: float = 5.0) -> "Backend":
        """Wait until the gateway pinged this node and the pong went out, so the gateway sees it as alive."""
        self.wait_for(lambda: any(m.type == b"ping" for m in self.received), timeout, "first ping")
        time.sleep(0.15)  # let the gateway process the pong
        return self

    # -- sending -----------------------------------------------------------------------------------------------

    def send(self, sid: bytes, mtype: bytes, body: bytes = b"") -> None:
        if threading.current_thread() is self._thread:
            # Recorded before the send: the gateway may answer the client (and a test read `sent`) before
            # send_multipart returns.
            with self._lock:
                self.sent.append((time.monotonic(), sid, mtype, body))
            self._sock.send_multipart([sid, mtype, body])
        else:
            with self._lock:
                self._outbox.append(lambda: self.send(sid, mtype, body))

    def send_frames(self, frames: list[bytes]) -> None:
        """Send an arbitrary multipart message (for malformed-message tests)."""
        if threading.current_thread() is self._thread:
            self._sock.send_multipart(frames)
        else:
            with self._lock:
                self._outbox.append(lambda: self.send_frames(frames))

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn))

    # -- inspection --------------------------------------------------------------------------------------------

    def messages(self, mtype: bytes | None = None, sid: bytes | None = None) -> list[Message]:
        with self._cond:
            return [m for m in self.received
                    if (mtype is None or m.type == mtype) and (sid is None or m.sid == sid)]

    def sids(self) -> list[bytes]:
        """Distinct session ids seen in uwsgi messages, in order of first appearance."""
        seen: list[bytes] = []
        for m in self.messages(b"uwsgi"):
            if m.sid not in seen:
                seen.append(m.sid)
        return seen

    def wait_for(self, pred: Callable[[], object], timeout: float = 5.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"backend {self.identity!r}: timed out after {timeout}s waiting for {what}")
                self._cond.wait(min(remaining, 0.05))

    def wait_message(self, mtype: bytes, sid: bytes | None = None, count: int = 1, timeout: float = 5.0):
        return self.wait_for(lambda: len(self.messages(mtype, sid)) >= count and self.messages(mtype, sid),
                             timeout, f"{count} {mtype!r} message(s)")

    # -- loop --------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        if self.identity:  # b"": let libzmq generate one
            sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IPV6, 1)  # so tcp://[::1]:PORT endpoints work (IPv4 ones still do)
        if self.rcvhwm is not None:
            sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sock.connect(self.endpoint)
        self._sock = sock
        self._started.set()
        try:
            while not self._stop.is_set():
                if sock.poll(10):
                    self._receive_all(sock)
                self._run_due_work()
        finally:
            sock.close(linger=0)
            ctx.term()

    def _receive_all(self, sock) -> None:
        """Dispatches every message the socket holds."""
        while not self._stop.is_set():
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._dispatch(frames)

    def _run_due_work(self) -> None:
        """Runs the sends queued by other threads and the timers that are due."""
        with self._lock:
            work, self._outbox = self._outbox, []
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                work.append(heapq.heappop(self._timers)[2])
        for fn in work:
            if self._stop.is_set():
                break
            self._guard(fn)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - recorded and reported by the test
            self.errors.append(traceback.format_exc())
            traceback.print_exc()

    def _dispatch(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            self.malformed.append(frames)
            with self._cond:
                self._cond.notify_all()
            return
        sid, mtype, body = frames
        # Recorded before the handler runs: a reply the handler sends may reach a client (and the test)
        # before this thread gets back here.
        with self._cond:
            self.received.append(Message(sid, mtype, body, time.monotonic()))
            self._cond.notify_all()
        if mtype == b"ping" and self.auto_pong:
            if self.pong_enabled:
                self.send(sid, b"pong", b"")
        elif self.handler is not None:
            self._guard(lambda: self.handler(sid, mtype, body, self.send))


# --------------------------------------------------------------------------------------------------------------
# HTTP handler for backends


@dataclass
class Request:
    """A complete request as the backend saw it."""

    sid: bytes
    packet: bytes
    env: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    body_messages: int = 0
    end_marker: bool = False
    at: float = 0.0

    @property
    def path(self) -> str:
        return self.env.get("PATH_INFO", "")


def response_head(status: int = 200, headers: Iterable[tuple[str, str]] = (), reason: str | None = None,
                  version: str = "HTTP/1.1") -> bytes:
    reason = reason if reason is not None else {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Status")
    lines = [f"{version} {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(send, sid: bytes, body: bytes = b"", status: int = 200, headers: Iterable[tuple[str, str]] = (),
            piece: int = 1 << 20, include_body_in_headers: bool = False) -> None:
    """Send a Content-Length framed response: one ``headers`` then the body in ``body`` messages of ``piece``."""
    hdrs = [("Content-Length", str(len(body)))] + list(headers)
    head = response_head(status, hdrs)
    if include_body_in_headers:
        send(sid, b"headers", head + body)
        return
    send(sid, b"headers", head)
    for i in range(0, len(body), piece):
        send(sid, b"body", body[i:i + piece])


class HTTPHandler:
    """Backend handler that turns the message stream into complete requests.

    ``app(req, send)`` is called in the backend thread once a request is complete: at its ``uwsgi`` when the
    request has no body, else at the empty ``body`` marker. Requests without a body must not get ``body``
    messages; any that arrive are counted in ``stray``. ``end`` adds the sid to ``ended``.
    """

    def __init__(self, app: Callable[[Request, Callable], None]):
        self.app = app
        self.requests: list[Request] = []
        self.partial: dict[bytes, Request] = {}
        self.ended: list[bytes] = []
        self.stray: list[tuple[bytes, bytes, bytes]] = []
        self.unknown: list[tuple[bytes, bytes, bytes]] = []

    def __call__(self, sid: bytes, mtype: bytes, body: bytes, send) -> None:
        if mtype == b"uwsgi":
            req = Request(sid, body, decode_env(body), at=time.monotonic())
            if sid in self.partial:
                self.stray.append((sid, mtype, body))  # new request before the previous body ended
            if request_has_body(req.env):
                self.partial[sid] = req
            else:
                self._complete(req, send)
        elif mtype == b"body":
            req = self.partial.get(sid)
            if req is None:
                self.stray.append((sid, mtype, body))
            elif body == b"":
                req.end_marker = True
                del self.partial[sid]
                self._complete(req, send)
            else:
                req.body += body
                req.body_messages += 1
        elif mtype == b"end":
            self.partial.pop(sid, None)
            self.ended.append(sid)
        else:
            self.unknown.append((sid, mtype, body))

    def _complete(self, req: Request, send) -> None:
        self.requests.append(req)
        self.app(req, send)


# The options of a node whose reads stall while a client uploads (max-node-queue: the body waits in the
# client's TCP window, not in the gateway).
STALLED_NODE_OPTIONS = {"max-node-queue": "1m", "max-body-size": "64m", "backend-timeout": "30",
                        "body-timeout": "30", "ping-freq": "1", "ping-timeout": "10"}


def start_stalling_digest_node(make_backend, gw, node: str, stall_seconds: float) -> None:
    """A node that answers each request with its body's length and SHA-256, but reads nothing for
    `stall_seconds` once the first body message arrives (libzmq keeps at most RCVHWM = 4 messages)."""
    import hashlib
    stall = threading.Event()
    stall.set()

    def app(req: Request, send):
        respond(send, req.sid, b"%d %s" % (len(req.body), hashlib.sha256(req.body).hexdigest().encode()))

    handler = HTTPHandler(app)

    def stalling(sid, mtype, body, send):
        if mtype == b"body" and stall.is_set():
            stall.clear()
            time.sleep(stall_seconds)
        handler(sid, mtype, body, send)

    make_backend(gw, node, stalling, rcvhwm=4)


def hello_app(text: bytes = b"Hello World"):
    """App answering every request with ``text`` (Content-Length framed), HEAD without body."""

    def app(req: Request, send) -> None:
        if req.env.get("REQUEST_METHOD") == "HEAD":
            send(req.sid, b"headers", response_head(200, [("Content-Length", str(len(text)))]))
        else:
            respond(send, req.sid, text, headers=[("Content-Type", "text/plain")])

    return app


def echo_app(req: Request, send) -> None:
    """Echo the request body back (Content-Length framed), with the path in X-Path."""
    respond(send, req.sid, bytes(req.body), headers=[("X-Path", req.env.get("PATH_INFO", ""))])


# --------------------------------------------------------------------------------------------------------------
# Gateway process


DEFAULT_OPTIONS = {
    "ping-freq": "0.5",
    "ping-timeout": "2",
    "backend-timeout": "5",
    "header-timeout": "2",
    "keepalive-timeout": "5",
    "body-timeout": "5",
    "shutdown-timeout": "5",
    "max-hops": "3",
    "max-body-size": "16m",
    "access-log": "-",
}
# `make test` runs some suites a second time with ZeroMQ spoken by libzmq instead of the gateway's own ZMTP.
if os.environ.get("BLASTBEAT_ZMQ_ENGINE"):
    DEFAULT_OPTIONS["zmq-engine"] = os.environ["BLASTBEAT_ZMQ_ENGINE"]


class Gateway:
    """One ``blastbeat`` process with a generated config in ``workdir``.

    ``vhosts`` maps a section name to a list of node names, or to ``{"nodes": [...], "default": True,
    "options": {KEY: VALUE}}`` (keys of the vhost's own section).
    ``options`` override ``DEFAULT_OPTIONS`` (a value of None removes the key). ``extra_binds`` are added as
    further ``bind`` lines, e.g. ``"[::1]:PORT"``.
    """

    def __init__(self, workdir: Path, vhosts=None, options=None, extra_binds=(), name: str = "gateway"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.zmq_port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.zmq_port}"
        self.vhosts = vhosts if vhosts is not None else {"localhost": ["NODE1"]}
        self.options = dict(DEFAULT_OPTIONS)
        for key, value in (options or {}).items():
            if value is None:
                self.options.pop(key, None)
            else:
                self.options[key] = str(value)
        self.extra_binds = list(extra_binds)
        self.config_path = self.workdir / f"{name}.ini"
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.killed = False
        #: Environment variables added to the gateway's (e.g. NOTIFY_SOCKET); set before ``start``.
        self.env: dict[str, str] = {}
        #: A command the binary runs under (e.g. ``setpriv`` to start it without root); set before ``start``.
        self.command_prefix: list[str] = []
        #: The binary ``start`` runs (the release build for latency measurements: isolation.py).
        self.binary = blastbeat_bin()

    def config_text(self) -> str:
        lines = ["[blastbeat]", f"bind = 127.0.0.1:{self.port}"]
        lines += [f"bind = {b}" for b in self.extra_binds]
        lines.append(f"zmq = {self.endpoint}")
        lines += [f"{k} = {v}" for k, v in self.options.items()]
        for vhost, spec in self.vhosts.items():
            if isinstance(spec, dict):
                nodes, default = spec.get("nodes", []), spec.get("default", False)
                own = spec.get("options", {})
            else:
                nodes, default, own = spec, False, {}
            lines += ["", f"[blastbeat:{vhost}]"] + [f"node = {n}" for n in nodes]
            if default:
                lines.append("default = true")
            lines += [f"{k} = {v}" for k, v in own.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "Gateway":
        self.config_path.write_text(self.config_text())
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.command_prefix + [self.binary, str(self.config_path)],
                                     stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"blastbeat exited with {self.proc.returncode} during startup\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"blastbeat did not accept on {self.port} within {timeout}s\n{self.logs()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        """The serving process: started as root the gateway forks a privileged parent (``proc``, which gets
        the signals) and serves from its child (README "Reload")."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = f.read().split()
        except OSError:
            children = []
        return int(children[0]) if children else self.proc.pid

    @property
    def main_pid(self) -> int:
        """The process systemd tracks and signals (``MAINPID``, ``--kill-who=main``): with several workers the
        parent, which outlives them (README "Worker processes"), else the serving process."""
        return self.proc.pid if self.serving_count > 1 else self.pid

    def kill(self, sig: int) -> None:
        """Sends ``sig`` where an operator (or systemd: ``MAINPID``) does: the parent when there is one, which
        passes it to every worker (README "Worker processes"), else the gateway itself."""
        os.kill(self.proc.pid, sig)

    @property
    def serving_count(self) -> int:
        """How many processes serve: the workers, or the one gateway. From the workers' start lines ("worker K
        of N serving as pid P"), so it holds after ``stop`` too; else the parent's children."""
        counts = re.findall(r"worker \d+ of (\d+) serving as pid \d+", self.stderr())
        return int(counts[-1]) if counts else (len(self.worker_pids()) or 1)

    def worker_pids(self) -> list[int]:
        """With ``workers`` > 1 (or as root): the parent's children, the serving processes (README "Worker
        processes")."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def wait_for_replacement(self, gone: int, timeout: float, count: int = 2, interval: float = 0.01) -> list[int]:
        """Waits until the parent has ``count`` children again, ``gone`` not among them (a killed worker was
        reaped and its replacement forked), and returns them. One read of the children per poll: between two
        reads the parent may reap the killed worker, and a check reading twice would see two children (one a
        zombie) and then no ``gone``, while the replacement is not forked yet."""
        def replaced():
            pids = self.worker_pids()
            return pids if len(pids) == count and gone not in pids else None
        return wait_until(replaced, timeout, interval=interval, what=f"a worker in place of pid {gone}")

    def worker_index(self, pid: int) -> int:
        """The index a worker logged at its start ("worker K of N serving as pid P")."""
        found = re.findall(rf"worker (\d+) of \d+ serving as pid {pid}\b", self.stderr())
        if not found:
            raise LookupError(f"pid {pid} logged no worker start")
        return int(found[-1])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` (then kill -9), and return the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        for f in (self._out, self._err):
            f.close()
        return self.returncode

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_listing(self) -> str:
        out = []
        for fd in sorted(os.listdir(f"/proc/{self.pid}/fd"), key=int):
            try:
                out.append(f"{fd} -> {os.readlink(f'/proc/{self.pid}/fd/{fd}')}")
            except OSError:
                pass
        return "\n".join(out)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def logs(self, tail: int = 200) -> str:
        def cut(text: str) -> str:
            lines = text.splitlines()
            return "\n".join(lines[-tail:])

        return (f"--- {self.config_path} ---\n{self.config_text()}"
                f"--- {self.name} stdout (last {tail} lines) ---\n{cut(self.stdout())}\n"
                f"--- {self.name} stderr (last {tail} lines) ---\n{cut(self.stderr())}\n")


def stopped_totals(text: str) -> dict[str, int]:
    """The counts of every ``stopped: N WHAT, ...`` line in ``text`` (a gateway's standard error), summed.

    Each serving process logs its own line as it exits: with several workers (the default, ``auto``) there is
    one per worker, each counting only that worker's clients and backend connections (README "Worker
    processes"). Summed, they are what the gateway as a whole did, whatever the worker count. Raises
    LookupError when no process logged the line."""
    totals: dict[str, int] = {}
    lines = [line.split("stopped: ", 1)[1] for line in text.splitlines() if " INFO stopped: " in line]
    if not lines:
        raise LookupError(f"no stopped: line in the log:\n{text[-3000:]}")
    for line in lines:
        for part in line.split(", "):
            count, what = part.split(" ", 1)
            totals[what] = totals.get(what, 0) + int(count)
    return totals


# --------------------------------------------------------------------------------------------------------------
# Raw HTTP client


@dataclass
class Response:
    status_line: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    chunked: bool = False

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def has_token(self, name: str, token: str) -> bool:
        value = self.header(name) or ""
        return token.lower() in [t.strip().lower() for t in value.split(",")]


class ConnectionClosed(Exception):
    def __init__(self, message: str, received: bytes = b""):
        super().__init__(message)
        #: What had arrived of the response when the connection closed.
        self.received = received


class RawConn:
    """A plain TCP connection speaking HTTP/1.x by hand; every read is bounded by ``timeout``."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, family: int = socket.AF_INET,
                 source: str | None = None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:  # a distinct client: any address of 127.0.0.0/8 is loopback
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into buf; False on EOF. Raises TimeoutError at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("read deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("read deadline passed") from e
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                out = bytes(self.buf[:idx + len(marker)])
                del self.buf[:idx + len(marker)]
                return out
            if not self._fill(deadline):
                raise ConnectionClosed(f"connection closed before {marker!r}; have {bytes(self.buf)[:200]!r}",
                                       bytes(self.buf))

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed(f"connection closed after {len(self.buf)} of {n} bytes", bytes(self.buf) or b"?")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, timeout: float | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        deadline = time.monotonic() + (timeout or self.timeout)
        raw = self._read_until(b"\r\n\r\n", deadline)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"malformed response header line {line!r}"
            headers.append((name, value.strip(" \t")))
        return lines[0], headers, raw

    def read_response(self, method: str = "GET", timeout: float | None = None,
                      skip_interim: bool = True) -> Response:
        """Read one response, framed by its headers (HEAD/1xx/204/304: no body; chunked; length; EOF)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            status_line, headers, raw = self.read_head(deadline - time.monotonic())
            parts = status_line.split(" ", 2)
            assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), f"bad status line {status_line!r}"
            status = int(parts[1])
            resp = Response(status_line, status, headers, b"", raw)
            if 100 <= status < 200 and skip_interim and status != 101:
                continue
            break
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return resp
        if "chunked" in te:
            resp.chunked = True
            body = bytearray()
            raw_body = bytearray()
            while True:
                line = self._read_until(b"\r\n", deadline)
                raw_body += line
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self._read_until(b"\r\n", deadline)
                        raw_body += t
                        if t == b"\r\n":
                            break
                    break
                data = self._read_exact(size + 2, deadline)
                assert data[-2:] == b"\r\n", f"chunk not followed by CRLF: {data[-2:]!r}"
                raw_body += data
                body += data[:-2]
            resp.body = bytes(body)
            resp.raw += bytes(raw_body)
        elif cl is not None:
            assert "," not in cl, f"several Content-Length values: {cl!r}"
            resp.body = self._read_exact(int(cl), deadline)
            resp.raw += resp.body
        else:
            while self._fill(deadline):
                pass
            resp.body = bytes(self.buf)
            resp.raw += resp.body
            self.buf.clear()
        return resp

    def read_all_until_close(self, timeout: float = 5.0) -> bytes:
        """Everything until EOF/reset; TimeoutError if the peer keeps the connection open."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def is_closed_or_data(self, timeout: float) -> bool:
        """True if the peer sent bytes or closed within ``timeout`` (the bytes are kept in the buffer)."""
        try:
            self._fill(time.monotonic() + timeout)
        except TimeoutError:
            return False
        return True

    def is_closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True if EOF/reset arrives within ``timeout`` with no further bytes; False on timeout."""
        try:
            rest = self.read_all_until_close(timeout)
        except TimeoutError:
            return False
        assert rest == b"", f"unexpected bytes before close: {rest[:200]!r}"
        return True


def request_bytes(method: str = "GET", target: str = "/", host: str | None = "localhost",
                  headers: Iterable[tuple[str, str]] = (), body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_request(port: int, method: str = "GET", target: str = "/", host: str | None = "localhost",
                 headers: Iterable[tuple[str, str]] = (), body: bytes = b"", version: str = "HTTP/1.1",
                 timeout: float = 10.0) -> Response:
    """One request on a fresh connection (closed afterwards)."""
    with RawConn(port, timeout=timeout) as c:
        c.send(request_bytes(method, target, host, headers, body, version))
        return c.read_response(method, timeout=timeout)


def request_in_background(port: int, target: str = "/", host: str = "localhost", timeout: float = 10.0):
    """A GET on a thread of its own (for a request that must be in flight while the test does something else).
    Returns the started thread and a dict that gets "resp" (a Response) or "error" (the exception)."""
    result: dict = {}

    def client():
        try:
            with RawConn(port, timeout=timeout) as c:
                c.send(request_bytes("GET", target, host))
                result["resp"] = c.read_response(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            result["error"] = e

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    return thread, result


def curl(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run curl with no proxy and a hard time limit; output as bytes."""
    cmd = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", str(int(timeout) - 2), *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


@dataclass
class CurlResult:
    returncode: int
    heads: list[str]
    body: bytes
    stderr: str
    elapsed: float

    @property
    def status(self) -> int:
        return int(self.heads[-1].split(" ", 2)[1]) if self.heads else 0

    def header(self, name: str) -> str | None:
        if not self.heads:
            return None
        values = []
        for line in self.heads[-1].split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                values.append(v.strip())
        return ", ".join(values) if values else None


def curl_fetch(port: int, path: str = "/", *args: str, host: str = "localhost", timeout: float = 20.0) -> CurlResult:
    """Fetch http://HOST:PORT/PATH with curl (HOST resolved to 127.0.0.1); keeps every response head."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        body_path = os.path.join(d, "body")
        started = time.monotonic()
        proc = curl("--resolve", f"{host}:{port}:127.0.0.1", "-D", "-", "-o", body_path,
                    f"http://{host}:{port}{path}", *args, timeout=timeout)
        elapsed = time.monotonic() - started
        body = open(body_path, "rb").read() if os.path.exists(body_path) else b""
    text = proc.stdout.decode("latin-1")
    heads = [h for h in text.split("\r\n\r\n") if h.startswith("HTTP/")]
    return CurlResult(proc.returncode, heads, body, proc.stderr.decode("latin-1", "replace"), elapsed)


class LoadClient(threading.Thread):
    """GETs for ``host`` in a loop until stopped, on one keep-alive connection (a new one whenever the gateway
    closes it) or a new connection per request; counts answers and anything but a 200.

    Like browsers and curl (RFC 9112 §9.3.1), a GET on a *reused* connection that the server closed before
    sending a byte of the response is sent again once on a new connection: a server may close an idle
    connection at any moment, and the request may cross the close. That case is counted in ``resent``; any
    other failure, and a failure of the resent request, is an error."""

    def __init__(self, port: int, host: str, source: str = "127.0.0.2", keep_alive: bool = True):
        super().__init__(daemon=True)
        self.port, self.host, self.source, self.keep_alive = port, host, source, keep_alive
        self.ok, self.resent, self.errors = 0, 0, []
        self.stopping = threading.Event()

    def run(self) -> None:
        conn, used = None, 0
        while not self.stopping.is_set() and len(self.errors) < 10:
            for attempt in (1, 2):
                try:
                    if conn is None:
                        conn, used = RawConn(self.port, timeout=5, source=self.source), 0
                    used += 1
                    try:
                        conn.send(request_bytes("GET", "/", self.host))
                    except (BrokenPipeError, ConnectionResetError) as e:
                        raise ConnectionClosed(f"send failed: {e}") from e
                    resp = conn.read_response(timeout=5)
                except ConnectionClosed as e:
                    conn = None
                    if attempt == 1 and used > 1 and e.received == b"":
                        self.resent += 1
                        continue
                    self.errors.append(f"ConnectionClosed: {e}")
                    break
                except Exception as e:  # noqa: BLE001 - counted, asserted by the test
                    self.errors.append(f"{type(e).__name__}: {e}")
                    conn = None
                    break
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.errors.append(f"status {resp.status}")
                if resp.has_token("Connection", "close") or not self.keep_alive:
                    conn.close()
                    conn = None
                break
        if conn is not None:
            conn.close()

    def finish(self) -> "LoadClient":
        self.stopping.set()
        self.join(10)
        return self
