"""The uwsgi packet: how BlastBeat sends a request's environment to a node.

Layout: byte 0 ``modifier1`` (0), bytes 1-2 ``size`` (uint16 little-endian), byte 3 ``modifier2`` (0), then
pairs of ``uint16 LE key length, key, uint16 LE value length, value``.

*Size convention.* Our gateway writes the standard value, the length of the pairs only. The original
BlastBeat wrote 4 + that. :func:`decode_pairs` accepts both, because the ZeroMQ frame holds exactly one
packet: the pairs always run to the end of the frame, and the size field is only checked for consistency.
"""

from __future__ import annotations

import struct
from typing import Iterable, List, Mapping, Tuple, Union

__all__ = ["UwsgiError", "decode", "decode_bytes", "decode_pairs", "encode", "MAX_PAIRS_LENGTH"]

#: The most bytes of pairs the 16-bit size field can describe.
MAX_PAIRS_LENGTH = 65535

_U16 = struct.Struct("<H")


class UwsgiError(ValueError):
    """A packet that is not a well-formed uwsgi packet (truncated pair, bad header, inconsistent size)."""


def decode_pairs(packet: bytes, *, standard_size: bool = False) -> List[Tuple[bytes, bytes]]:
    """Every (key, value) pair of ``packet`` as bytes, in packet order, duplicates kept.

    Raises :class:`UwsgiError` when the header is missing, a modifier is not 0, a pair runs past the end of
    the packet, or the size field matches neither convention (pairs only, or 4 + pairs). With
    ``standard_size=True`` only the standard convention (pairs only, what this repository's gateway writes)
    is accepted: the tests use that to check the gateway's packets.
    """
    data = memoryview(packet)
    total = len(data)
    if total < 4:
        raise UwsgiError(f"uwsgi packet of {total} bytes is shorter than its 4-byte header")
    if data[0] != 0 or data[3] != 0:
        raise UwsgiError(f"uwsgi modifiers must be 0, got {data[0]} and {data[3]}")
    (size,) = _U16.unpack_from(data, 1)
    pairs_length = total - 4
    # Standard (pairs only); original (4 + pairs); original at 65536 bytes, which wrapped to 0.
    if size != pairs_length and (standard_size or size != total & 0xFFFF):
        raise UwsgiError(f"uwsgi size field {size} does not match a packet of {total} bytes")
    pairs: List[Tuple[bytes, bytes]] = []
    pos = 4
    while pos < total:
        if pos + 2 > total:
            raise UwsgiError(f"truncated key length at offset {pos}")
        (klen,) = _U16.unpack_from(data, pos)
        pos += 2
        if pos + klen + 2 > total:
            raise UwsgiError(f"key of {klen} bytes at offset {pos} runs past the end of the packet")
        key = bytes(data[pos:pos + klen])
        pos += klen
        (vlen,) = _U16.unpack_from(data, pos)
        pos += 2
        if pos + vlen > total:
            raise UwsgiError(f"value of {vlen} bytes at offset {pos} runs past the end of the packet")
        value = bytes(data[pos:pos + vlen])
        pos += vlen
        pairs.append((key, value))
    return pairs


def decode(packet: bytes) -> dict[str, str]:
    """The packet as a ``str -> str`` dict, the form WSGI wants.

    Keys and values are decoded as latin-1, so every byte survives (``PATH_INFO`` with ``%FF`` decoded by the
    gateway arrives as ``"\\xff"``, exactly as PEP 3333 specifies). A repeated key keeps its last value; the
    gateway already joins repeated header lines into one variable.
    """
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in decode_pairs(packet)}


def decode_bytes(packet: bytes) -> dict[bytes, bytes]:
    """The packet as a ``bytes -> bytes`` dict (a repeated key keeps its last value): the raw form, for
    backends that never need text (``env[b"PATH_INFO"]``)."""
    return dict(decode_pairs(packet))


_Text = Union[str, bytes]


def _as_bytes(value: _Text) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def encode(env: Union[Mapping[str, _Text], Mapping[bytes, _Text], Iterable[Tuple[_Text, _Text]]],
           *, original_size: bool = False) -> bytes:
    """Encode variables as a uwsgi packet (str is encoded as latin-1).

    ``original_size=True`` writes the original BlastBeat's size value (4 + pairs) instead of the standard one;
    useful to test decoders. Raises :class:`UwsgiError` if a key or value exceeds 65535 bytes or the pairs do
    not fit the 16-bit size field.
    """
    items = env.items() if isinstance(env, Mapping) else env
    body = bytearray()
    for key, value in items:
        k, v = _as_bytes(key), _as_bytes(value)
        if not k:
            raise UwsgiError("uwsgi keys must not be empty")
        for part in (k, v):
            if len(part) > 0xFFFF:
                raise UwsgiError(f"a key or value of {len(part)} bytes does not fit a 16-bit length")
        body += _U16.pack(len(k)) + k + _U16.pack(len(v)) + v
    size = len(body) + (4 if original_size else 0)
    if len(body) > MAX_PAIRS_LENGTH or size > 0xFFFF:
        raise UwsgiError(f"{len(body)} bytes of pairs do not fit the 16-bit size field")
    return b"\x00" + _U16.pack(size) + b"\x00" + bytes(body)
