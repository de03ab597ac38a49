"""WebSocket helpers for the integration tests (used by test_websocket*.py).

* ``with_vhost_keys(gateway, {"localhost": {"websocket-handshake": "backend"}})``: adds per-vhost keys to
  a ``helpers.Gateway`` created with ``make_gateway(..., start=False)`` (its ini knows only ``node`` and
  ``default``), so the fixture's teardown checks (SIGTERM, exit status 0) still apply.
* ``RawWS``: a WebSocket client on a plain socket, frame by frame: masked frames with any opcode, FIN and
  RSV bits, fragmentation, raw permessage-deflate, and a strict frame reader (server frames must be
  unmasked). Every read is bounded by a deadline.
* ``ws_echo_handler``: a ``helpers.Backend`` handler echoing ``websocket``/``websocket-binary`` messages.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time
import zlib
from dataclasses import dataclass

from helpers import ConnectionClosed, Gateway, RawConn, Response

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def with_vhost_keys(gw: Gateway, keys: dict[str, dict[str, str]]) -> Gateway:
    """Make ``gw`` write ``keys[vhost]`` (key → value) into each ``[blastbeat:vhost]`` section."""
    original = gw.config_text

    def config_text() -> str:
        out = []
        section = None
        for line in original().split("\n"):
            if line.startswith("[") and section in keys:
                out += [f"{k} = {v}" for k, v in keys[section].items()]
                section = None
            if line.startswith("[blastbeat:") and line.endswith("]"):
                section = line[len("[blastbeat:"):-1]
            out.append(line)
        text = "\n".join(out).rstrip("\n") + "\n"
        if section in keys:
            text += "".join(f"{k} = {v}\n" for k, v in keys[section].items())
        return text

    gw.config_text = config_text  # instance attribute: start() and logs() use it
    return gw


def ws_echo_handler(sid: bytes, mtype: bytes, body: bytes, send) -> None:
    """Backend handler: echo every WebSocket message with its own type; ignore the rest."""
    if mtype in (b"websocket", b"websocket-binary"):
        send(sid, mtype, body)


def close_body(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int  # the three RSV bits as 0..7 (RSV1 = 4)
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> bytes:
        assert self.opcode == OP_CLOSE
        return self.payload[2:]

    def __repr__(self) -> str:
        shown = self.payload[:60] + (b"..." if len(self.payload) > 60 else b"")
        return f"Frame(fin={self.fin}, rsv={self.rsv}, opcode={self.opcode:#x}, {len(self.payload)} bytes {shown!r})"


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    head += key
    if n:
        # XOR with the repeated key, fast for large payloads.
        reps = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(reps, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return bytes(head) + masked


def deflate_message(data: bytes) -> bytes:
    """permessage-deflate payload of one message (RFC 7692 §7.2.1: raw deflate, sync flush, tail removed)."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class Inflater:
    """Decompresses the server's messages (context takeover: one stream per connection)."""

    def __init__(self):
        self.d = zlib.decompressobj(-15)

    def message(self, payload: bytes) -> bytes:
        return self.d.decompress(payload + b"\x00\x00\xff\xff")


class RawWS:
    """A WebSocket client speaking frames by hand over ``helpers.RawConn``."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.conn = RawConn(port, timeout=timeout)
        self.timeout = timeout
        self.key = new_key()
        self.response: Response | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- handshake ---------------------------------------------------------------------------------------------

    def request(self, path: str = "/", host: str = "localhost", headers=(), key: str | None = None,
                version: str | None = "13", method: str = "GET", http: str = "HTTP/1.1") -> bytes:
        lines = [f"{method} {path} {http}", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade"]
        key = self.key if key is None else key  # "" leaves the header out
        if key:
            lines.append(f"Sec-WebSocket-Key: {key}")
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def handshake(self, path: str = "/", host: str = "localhost", headers=(), expect: int | None = 101,
                  timeout: float | None = None, **kwargs) -> Response:
        """Send the upgrade request and read the response (head only for a 101, whole otherwise)."""
        self.conn.send(self.request(path, host, headers, **kwargs))
        resp = self.conn.read_response(timeout=timeout or self.timeout)
        self.response = resp
        if expect is not None:
            assert resp.status == expect, f"expected {expect}, got {resp.status_line!r}\n{resp.raw[:500]!r}"
        if resp.status == 101:
            assert resp.has_token("Upgrade", "websocket"), resp.raw
            assert resp.has_token("Connection", "upgrade"), resp.raw
            assert resp.header("Sec-WebSocket-Accept") == accept_value(self.key), resp.raw
        return resp

    # -- frames ------------------------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.conn.send(data)

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> None:
        self.conn.send(encode_frame(opcode, payload, fin=fin, rsv=rsv))

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.send_frame(OP_CLOSE, b"" if code is None else close_body(code, reason))

    def recv_frame(self, timeout: float | None = None) -> Frame:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        c = self.conn
        b0, b1 = c._read_exact(2, deadline)
        assert not b1 & 0x80, "a server frame must not be masked (RFC 6455 §5.1)"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", c._read_exact(2, deadline))
        elif n == 127:
            (n,) = struct.unpack("!Q", c._read_exact(8, deadline))
        payload = c._read_exact(n, deadline) if n else b""
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload)

    def recv_message(self, timeout: float | None = None, inflater: Inflater | None = None,
                     answer_pings: bool = True) -> tuple[int, bytes]:
        """One whole data message (opcode, payload), reassembled and (with ``inflater``) decompressed.
        Pings in between are answered; a close frame raises AssertionError."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        opcode, parts, compressed = None, [], False
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            assert f.opcode != OP_CLOSE, f"connection closed by the server: {f!r}"
            if opcode is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"unexpected first frame {f!r}"
                opcode, compressed = f.opcode, bool(f.rsv & 4)
            else:
                assert f.opcode == OP_CONT, f"expected a continuation frame, got {f!r}"
            parts.append(f.payload)
            if f.fin:
                break
        data = b"".join(parts)
        if compressed:
            assert inflater is not None, "server sent a compressed message without permessage-deflate"
            data = inflater.message(data)
        return opcode, data

    def recv_close(self, timeout: float | None = None) -> Frame:
        """Skip data/ping/pong frames until a close frame arrives; return it."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                return f

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True when the server closes the TCP connection (EOF/reset) within ``timeout`` without more bytes."""
        try:
            return self.conn.is_closed_by_peer(timeout)
        except (ConnectionClosed, OSError):
            return True

    def is_silent(self, seconds: float) -> bool:
        """True when nothing at all arrives for ``seconds`` and the connection stays open."""
        if self.conn.buf:
            return False
        return not self.conn.is_closed_or_data(seconds)

