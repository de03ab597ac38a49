"""ZMTP 3 bytes written by hand, for the tests that play a peer themselves (test_zmtp, test_curve)."""

from __future__ import annotations

import socket
import struct
import time


def greeting(mechanism: bytes = b"NULL", as_server: int = 0, major: int = 3, minor: int = 1, first: int = 0xFF) -> bytes:
    """Signature (first byte, 8 padding, 0x7F), version, mechanism (20 bytes), as-server, filler."""
    return bytes([first]) + bytes(8) + b"\x7f" + bytes([major, minor]) + mechanism.ljust(20, b"\0") \
        + bytes([as_server]) + bytes(31)


def frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) <= 255:
        return bytes([flags, len(body)]) + body
    return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body


def command(name: bytes, data: bytes = b"") -> bytes:
    return frame(bytes([len(name)]) + name + data, command=True)


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes the connection within ``timeout`` (whatever it sends first)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
