"""ZMTP 3 bytes written by hand, for the tests that play a peer themselves (test_zmtp, test_curve)."""

from __future__ import annotations

import struct


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
