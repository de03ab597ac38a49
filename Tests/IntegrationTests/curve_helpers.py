"""Peers for the CURVE suite (``test_curve.py``), built beside ``helpers.py`` without changing it.

* ``KeyPair``: a CURVE key pair, as pyzmq's certificate files (``zmq.auth.create_certificates``) or in memory.
* ``ZBackend``: ``helpers.Backend`` with the socket options a CURVE node sets (``curve_secretkey``,
  ``curve_publickey``, ``curve_serverkey``), plus ``ZMQ_HEARTBEAT_IVL``, ``ZMQ_RECONNECT_IVL``, a source
  address for the connection and a libzmq monitor (handshake events). Without ``curve`` it is a NULL peer.
* ``site_config``: wraps a ``helpers.Gateway`` so its ini gets ``node-key`` / ``max-instances`` lines per vhost.
* ``RawZMTP``: a hand-written ZMTP peer over a plain TCP socket, to send what libzmq never would.
* ``Sodium`` + ``CurveClient``: the client side of CurveZMQ (RFC 26) written in Python on libsodium (loaded
  with ctypes: the gateway's build already needs libsodium), so a test can complete a real handshake and then
  break the protocol on purpose (replayed nonce, forged box, a vouch for another server, ...).

Every read is bounded by a socket timeout; every wait has a deadline.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.monitor
import zmq.utils.z85

from helpers import Backend, Gateway
from zmtp_wire import closed_within, command, frame
from zmtp_wire import greeting as zmtp_greeting

# --------------------------------------------------------------------------------------------------------------
# Keys


@dataclass
class KeyPair:
    """A CURVE key pair: ``public``/``secret`` are the 40-byte Z85 forms pyzmq's socket options take;
    ``public_file``/``secret_file`` are set when the pair was written as certificate files."""

    public: bytes
    secret: bytes
    public_file: Path | None = None
    secret_file: Path | None = None

    @classmethod
    def create(cls, directory: Path, name: str, metadata: dict[str, str] | None = None) -> "KeyPair":
        """Writes NAME.key and NAME.key_secret with pyzmq's ``zmq.auth.create_certificates``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(str(directory), name, metadata=metadata)
        public, secret = zmq.auth.load_certificate(secret_file)
        return cls(public, secret, Path(public_file), Path(secret_file))

    @classmethod
    def load(cls, secret_file: Path) -> "KeyPair":
        public, secret = zmq.auth.load_certificate(str(secret_file))
        public_file = Path(str(secret_file).removesuffix("_secret"))
        return cls(public, secret, public_file if public_file.exists() else None, Path(secret_file))

    @classmethod
    def fresh(cls) -> "KeyPair":
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    @property
    def z85(self) -> str:
        return self.public.decode()

    @property
    def raw_public(self) -> bytes:
        return zmq.utils.z85.decode(self.public)

    @property
    def raw_secret(self) -> bytes:
        return zmq.utils.z85.decode(self.secret)


# --------------------------------------------------------------------------------------------------------------
# pyzmq node with CURVE options


class ZBackend(Backend):
    """``helpers.Backend`` (same handler, auto-pong, recording and ``send``) whose DEALER is configured first.

    * ``curve``/``server_key``: the node's key pair and the gateway's public key (Z85); None = NULL mechanism.
    * ``heartbeat_ivl`` (ms): ZMTP PING commands every that often (encrypted under CURVE); libzmq drops the
      connection when nothing arrives within ``heartbeat_timeout`` (ms, default: the interval).
    * ``reconnect_ivl`` (ms): ``-1`` = never reconnect, like a process whose socket outlived its use.
    * ``source``: local address to connect from (``127.0.0.2``), so the gateway's logs show distinct peers.
    * ``monitor``: record libzmq's connection events in ``events`` (``zmq.EVENT_*`` numbers).

    ``close_now()`` (from any thread, the handler included) closes the socket at once (linger 0) and ends
    the thread: what the gateway sees when a backend process dies.
    """

    def __init__(self, endpoint: str, identity: bytes | str, handler=None, *, curve: KeyPair | None = None,
                 server_key: bytes | None = None, heartbeat_ivl: int | None = None,
                 heartbeat_timeout: int | None = None, reconnect_ivl: int | None = None, source: str | None = None, monitor: bool = False,
                 auto_pong: bool = True):
        super().__init__(endpoint, identity, handler=handler, auto_pong=auto_pong)
        self.curve = curve
        self.server_key = server_key
        self.heartbeat_ivl = heartbeat_ivl
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect_ivl = reconnect_ivl
        self.source = source
        self.monitor = monitor
        self.events: list[int] = []
        self.closed_at: float | None = None

    def configure(self, sock) -> None:
        if self.curve is not None:
            sock.curve_secretkey = self.curve.secret
            sock.curve_publickey = self.curve.public
            sock.curve_serverkey = self.server_key
        if self.heartbeat_ivl is not None:
            sock.setsockopt(zmq.HEARTBEAT_IVL, self.heartbeat_ivl)
        if self.heartbeat_timeout is not None:
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.heartbeat_timeout)
        if self.reconnect_ivl is not None:
            sock.setsockopt(zmq.RECONNECT_IVL, self.reconnect_ivl)

    def connect_address(self) -> str:
        if self.source is None:
            return self.endpoint
        return self.endpoint.replace("tcp://", f"tcp://{self.source}:0;", 1)

    def close_now(self) -> None:
        self._stop.set()

    def has_event(self, event: int) -> bool:
        with self._cond:
            return event in self.events

    def handshakes(self) -> int:
        with self._cond:
            return self.events.count(zmq.EVENT_HANDSHAKE_SUCCEEDED)

    # Same loop as helpers.Backend._run, with configure(), a source address and an optional monitor.
    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        if self.identity:
            sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.LINGER, 0)
        self.configure(sock)
        mon = sock.get_monitor_socket() if self.monitor else None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if mon is not None:
            poller.register(mon, zmq.POLLIN)
        sock.connect(self.connect_address())
        self._sock = sock
        self._started.set()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(10))
                if mon is not None and mon in ready:
                    while True:
                        try:
                            event = zmq.utils.monitor.recv_monitor_message(mon, zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        with self._cond:
                            self.events.append(event["event"])
                            self._cond.notify_all()
                if sock in ready:
                    self._receive_all(sock)
                self._run_due_work()
        finally:
            if mon is not None:
                sock.disable_monitor()
                mon.close(linger=0)
            sock.close(linger=0)
            self.closed_at = time.monotonic()
            ctx.term()


# --------------------------------------------------------------------------------------------------------------
# Gateway configuration


def site_config(gw: Gateway, vhost_lines: dict[str, list[str]]) -> Gateway:
    """Adds ``vhost_lines[VHOST]`` (e.g. ``node-key = beta KEY``) right after each ``[blastbeat:VHOST]``
    header of the gateway's generated ini. Global keys (``curve-key``, ``max-instances``) go in options."""
    base = gw.config_text

    def config_text(self) -> str:
        out = []
        for line in base().splitlines():
            out.append(line)
            if line.startswith("[blastbeat:") and line.endswith("]"):
                out += vhost_lines.get(line[len("[blastbeat:"):-1], [])
        return "\n".join(out) + "\n"

    gw.config_text = types.MethodType(config_text, gw)
    return gw


# --------------------------------------------------------------------------------------------------------------
# Hand-written ZMTP


def greeting(mechanism: bytes = b"CURVE", as_server: int = 0, major: int = 3, minor: int = 0) -> bytes:
    """A client's greeting: CURVE and ZMTP 3.0 by default, as libzmq's CURVE clients send it."""
    return zmtp_greeting(mechanism, as_server=as_server, major=major, minor=minor)


def metadata(**props: bytes) -> bytes:
    """ZMTP metadata (READY / INITIATE): name-length, name, 4-byte value length, value."""
    out = b""
    for name, value in props.items():
        name_bytes = name.replace("_", "-").encode()
        out += bytes([len(name_bytes)]) + name_bytes + struct.pack(">I", len(value)) + value
    return out


class RawZMTP:
    """A ZMTP peer by hand over TCP: ``send`` bytes, read the gateway's greeting and frames, and tell when
    the gateway closes the connection."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0, source: str | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_slowly(self, data: bytes, pause: float = 0.002) -> None:
        """One byte per write (TCP_NODELAY, a pause between): the gateway must reassemble every field."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause)

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the gateway (have {len(self.buf)} of {n} bytes)")
            self.buf += chunk

    def take(self, n: int) -> bytes:
        self._need(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_greeting(self) -> bytes:
        return self.take(64)

    def read_frame(self) -> tuple[int, bytes]:
        flags = self.take(1)[0]
        size = struct.unpack(">Q", self.take(8))[0] if flags & 2 else self.take(1)[0]
        return flags, self.take(size)

    def read_command(self) -> tuple[bytes, bytes]:
        flags, body = self.read_frame()
        assert flags & 4, f"expected a command frame, got flags {flags:#x}: {body[:40]!r}"
        return body[1:1 + body[0]], body[1 + body[0]:]

    def closed_within(self, timeout: float) -> bool:
        """True when the gateway closes the connection within ``timeout`` (whatever it sends first)."""
        return closed_within(self.sock, timeout)


# --------------------------------------------------------------------------------------------------------------
# CurveZMQ client on libsodium


class Sodium:
    """The few libsodium calls a CurveZMQ client needs (crypto_box = Curve25519, XSalsa20, Poly1305)."""

    _lib = None
    MAC = 16

    @classmethod
    def lib(cls):
        if cls._lib is None:
            name = ctypes.util.find_library("sodium") or "libsodium.so.23"
            lib = ctypes.CDLL(name)
            if lib.sodium_init() < 0:
                raise RuntimeError("sodium_init failed")
            cls._lib = lib
        return cls._lib

    @classmethod
    def keypair(cls) -> tuple[bytes, bytes]:
        pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
        cls.lib().crypto_box_keypair(pk, sk)
        return pk.raw, sk.raw

    @classmethod
    def box(cls, message: bytes, nonce: bytes, their_public: bytes, our_secret: bytes) -> bytes:
        assert len(nonce) == 24, len(nonce)
        out = ctypes.create_string_buffer(len(message) + cls.MAC)
        rc = cls.lib().crypto_box_easy(out, message, ctypes.c_ulonglong(len(message)), nonce, their_public, our_secret)
        assert rc == 0, "crypto_box_easy failed"
        return out.raw

    @classmethod
    def open(cls, box: bytes, nonce: bytes, their_public: bytes, our_secret: bytes) -> bytes | None:
        assert len(nonce) == 24, len(nonce)
        if len(box) < cls.MAC:
            return None
        out = ctypes.create_string_buffer(max(1, len(box) - cls.MAC))
        rc = cls.lib().crypto_box_open_easy(out, box, ctypes.c_ulonglong(len(box)), nonce, their_public, our_secret)
        return out.raw[:len(box) - cls.MAC] if rc == 0 else None


class CurveRefused(Exception):
    """The gateway answered INITIATE with an ERROR command (``reason``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CurveClient(RawZMTP):
    """The client side of CurveZMQ (RFC 26) by hand: HELLO, WELCOME, INITIATE, READY, then MESSAGEs.

    ``long_term`` is the node's key pair, ``server_public`` the gateway's (raw 32 bytes). Short nonces go up
    by one per command/message, as libzmq's do; ``nonce`` can be set to replay or skip one.
    """

    def __init__(self, port: int, long_term: KeyPair, server_public: bytes, **kw):
        super().__init__(port, **kw)
        self.long_term = long_term
        self.server_public = server_public
        self.transient_public, self.transient_secret = Sodium.keypair()
        self.nonce = 1  # the next short nonce this client sends
        self.server_transient: bytes | None = None
        self.cookie: bytes | None = None
        self.last_sent: bytes = b""
        self.peer_nonce = 0
        self.commands: list[bytes] = []  # sealed commands from the gateway (PONG ...), name included

    def next_nonce(self) -> bytes:
        value = self.nonce
        self.nonce += 1
        return struct.pack(">Q", value)

    # -- handshake ---------------------------------------------------------------------------------------------

    def exchange_greetings(self) -> bytes:
        self.send(greeting(b"CURVE", as_server=0))
        theirs = self.read_greeting()
        assert theirs[0] == 0xFF and theirs[9] == 0x7F and theirs[10] == 3, theirs
        assert theirs[12:17] == b"CURVE" and theirs[32] == 1, f"the gateway must greet as the CURVE server: {theirs!r}"
        return theirs

    def hello_body(self) -> bytes:
        short = self.next_nonce()
        signature = Sodium.box(bytes(64), b"CurveZMQHELLO---" + short, self.server_public, self.transient_secret)
        return b"\x05HELLO" + b"\x01\x00" + bytes(72) + self.transient_public + short + signature

    def read_welcome(self) -> None:
        name, data = self.read_command()
        assert name == b"WELCOME", (name, data[:40])
        assert len(data) == 16 + 144, len(data)
        plain = Sodium.open(data[16:], b"WELCOME-" + data[:16], self.server_public, self.transient_secret)
        assert plain is not None, "WELCOME box does not open with the gateway's long-term key"
        self.server_transient, self.cookie = plain[:32], plain[32:]
        assert len(self.cookie) == 96

    def initiate_body(self, identity: bytes, socket_type: bytes = b"DEALER", vouch_server: bytes | None = None,
                      cookie: bytes | None = None, extra: bytes = b"") -> bytes:
        vouch_nonce = os.urandom(16)
        vouch = Sodium.box(self.transient_public + (vouch_server or self.server_public), b"VOUCH---" + vouch_nonce,
                           self.server_transient, self.long_term.raw_secret)
        props = metadata(Socket_Type=socket_type, Identity=identity) + extra
        short = self.next_nonce()
        box = Sodium.box(self.long_term.raw_public + vouch_nonce + vouch + props, b"CurveZMQINITIATE" + short,
                         self.server_transient, self.transient_secret)
        return b"\x08INITIATE" + (cookie if cookie is not None else self.cookie) + short + box

    def read_ready(self) -> dict[bytes, bytes]:
        """The gateway's READY (its metadata), or CurveRefused when it sent ERROR instead."""
        name, data = self.read_command()
        if name == b"ERROR":
            raise CurveRefused(data[1:1 + data[0]].decode("latin-1"))
        assert name == b"READY", (name, data[:40])
        short = data[:8]
        plain = Sodium.open(data[8:], b"CurveZMQREADY---" + short, self.server_transient, self.transient_secret)
        assert plain is not None, "READY box does not open"
        self.peer_nonce = struct.unpack(">Q", short)[0]
        props, pos = {}, 0
        while pos < len(plain):
            n = plain[pos]
            key = plain[pos + 1:pos + 1 + n]
            (vlen,) = struct.unpack(">I", plain[pos + 1 + n:pos + 5 + n])
            props[key] = plain[pos + 5 + n:pos + 5 + n + vlen]
            pos += 5 + n + vlen
        return props

    def handshake(self, identity: bytes, slowly: bool = False) -> dict[bytes, bytes]:
        send = self.send_slowly if slowly else self.send
        self.exchange_greetings()
        send(command(b"HELLO", self.hello_body()[6:]))
        self.read_welcome()
        send(command(b"INITIATE", self.initiate_body(identity)[9:]))
        return self.read_ready()

    # -- messages ----------------------------------------------------------------------------------------------

    def message_body(self, flags: int, data: bytes, short: bytes | None = None) -> bytes:
        short = short if short is not None else self.next_nonce()
        box = Sodium.box(bytes([flags]) + data, b"CurveZMQMESSAGEC" + short, self.server_transient, self.transient_secret)
        return b"\x07MESSAGE" + short + box

    def sealed_command(self, name: bytes, data: bytes = b"") -> bytes:
        """A ZMTP command (PING ...) as CURVE carries it after the handshake: a MESSAGE with flags 0x02."""
        return frame(self.message_body(0x02, bytes([len(name)]) + name + data))

    def send_message(self, frames: list[bytes]) -> None:
        out = b""
        for i, data in enumerate(frames):
            body = self.message_body(0x01 if i < len(frames) - 1 else 0x00, data)
            out += frame(body)
        self.last_sent = out
        self.send(out)

    def read_sealed(self) -> tuple[int, bytes]:
        """One MESSAGE from the gateway, opened: (flags, frame)."""
        _, body = self.read_frame()
        assert body[:8] == b"\x07MESSAGE", body[:16]
        short = body[8:16]
        value = struct.unpack(">Q", short)[0]
        assert value > self.peer_nonce, f"the gateway's nonces must go up: {value} after {self.peer_nonce}"
        self.peer_nonce = value
        plain = Sodium.open(body[16:], b"CurveZMQMESSAGES" + short, self.server_transient, self.transient_secret)
        assert plain is not None, "a MESSAGE from the gateway does not open"
        return plain[0], plain[1:]

    def read_message(self) -> list[bytes]:
        """The next multipart message (commands such as PONG inside MESSAGEs are skipped)."""
        frames: list[bytes] = []
        while True:
            flags, data = self.read_sealed()
            if flags & 0x02:
                self.commands.append(data)
                continue
            frames.append(data)
            if not flags & 0x01:
                return frames

    def read_session_message(self) -> list[bytes]:
        """The next message that is not a ``ping``, answering every ping before it with a ``pong``: with several
        workers each one pings the node through the worker holding this connection (README "Worker processes"),
        so a ping may come before a request whenever it is due."""
        while True:
            frames = self.read_message()
            if frames == [b"", b"ping", b""]:
                self.send_message([b"", b"pong", b""])
                continue
            return frames


def run_in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    """Runs ``fn(*args)`` in a daemon thread; the result (or the exception) lands in the returned dict."""
    out: dict = {}

    def target():
        started = time.monotonic()
        try:
            out["result"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - reported by the test
            out["error"] = e
        out["elapsed"] = time.monotonic() - started

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out
