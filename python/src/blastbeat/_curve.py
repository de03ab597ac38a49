"""CURVE keys for a node's DEALER sockets: its own certificate and the gateway's public key.

A node is a CURVE *client*: it needs its own key pair (``curve_secretkey`` / ``curve_publickey``) and the
gateway's public key (``curve_serverkey``). Keys are Z85 text (40 characters for 32 bytes), as in the
certificate files ``zmq.auth.create_certificates`` writes:

.. code-block:: text

    curve
        public-key = "..."
        secret-key = "..."      (only in the secret certificate, NAME.key_secret)

Everything is checked when the :class:`~blastbeat.Node` is created, so a bad key file is an error at
startup rather than a node that silently never completes its handshake.
"""

from __future__ import annotations

import logging
import os
import struct
from typing import NamedTuple, Optional, Union

import zmq
import zmq.auth
from zmq.utils import z85

__all__ = ["CurveKeys", "client_keys", "public_key_from"]

log = logging.getLogger("blastbeat")

#: A key given as text or bytes, or the path of a certificate file.
KeySource = Union[str, bytes, "os.PathLike[str]"]

_Z85_CHARS = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


class CurveKeys(NamedTuple):
    """Z85 keys (40 bytes each) to set on a CURVE client socket."""

    public: bytes
    secret: bytes
    server: bytes

    def __repr__(self) -> str:  # never put the secret key in a log line or a traceback
        return f"CurveKeys(public={self.public!r}, secret=<hidden>, server={self.server!r})"


def _is_z85_key(text: bytes) -> bool:
    """True for 40 Z85 characters that decode to a 32-byte key."""
    if len(text) != 40 or not set(text) <= _Z85_CHARS:
        return False
    try:
        return len(z85.decode(text)) == 32
    except (KeyError, ValueError, struct.error):  # struct.error: a group worth 2**32 or more
        return False


def _load(path: "Union[str, os.PathLike[str]]", what: str) -> "tuple[bytes, Optional[bytes]]":
    """(public, secret or None) from a certificate file, with errors that name the option."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:  # pyzmq raises OSError for a missing file
        raise ValueError(f"{what}: cannot read the certificate file {os.fspath(path)!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: {os.fspath(path)!r} is not a ZeroMQ certificate file ({exc})") from None
    if not _is_z85_key(public):
        raise ValueError(f"{what}: the public-key in {os.fspath(path)!r} is not a 40-character Z85 key")
    if secret is not None and not _is_z85_key(secret):
        raise ValueError(f"{what}: the secret-key in {os.fspath(path)!r} is not a 40-character Z85 key")
    return public, secret


def public_key_from(source: KeySource, what: str = "server_key") -> bytes:
    """A public key: the 40-character Z85 text itself, or the path of a (public) certificate file.

    An existing file wins over the text reading: a 40-character path can consist of Z85 characters only.
    """
    if isinstance(source, (str, bytes)):
        text = source.encode("ascii", "replace") if isinstance(source, str) else bytes(source)
        if not os.path.isfile(source) and _is_z85_key(text.strip()):
            return text.strip()
        if not os.path.exists(source):
            raise ValueError(f"{what}: {source!r} is neither a 40-character Z85 public key "
                             f"nor the path of a certificate file")
    public, secret = _load(source, what)  # type: ignore[arg-type]
    if secret is not None:
        # Works, but the gateway's secret key should not be copied to node machines: say so.
        log.warning("%s: %s also holds a secret key; a node needs only the public certificate",
                    what, os.fspath(source) if not isinstance(source, bytes) else source.decode(errors="replace"))
    return public


def client_keys(curve_key: Optional["Union[str, os.PathLike[str]]"], server_key: Optional[KeySource]) -> Optional[CurveKeys]:
    """The keys for a node's sockets, or None when CURVE is off (both options None).

    ``curve_key`` is the path of the node's *secret* certificate; ``server_key`` the gateway's public key
    (Z85 text or a certificate path). Raises ValueError for one without the other, a certificate without a
    secret key, a secret key that does not belong to the public key next to it, or a malformed key; and
    RuntimeError when libzmq was built without CURVE.
    """
    if curve_key is None and server_key is None:
        return None
    if curve_key is None or server_key is None:
        raise ValueError("curve_key and server_key go together: the node's secret certificate and the "
                         "gateway's public key (give both, or neither for a plain connection)")
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support (zmq.has('curve') is False)")
    public, secret = _load(curve_key, "curve_key")
    if secret is None:
        raise ValueError(f"curve_key: {os.fspath(curve_key)!r} has no secret-key; give the node's secret "
                         f"certificate (NAME.key_secret), not its public one")
    # A certificate edited by hand (or two files mixed up) would fail every handshake with no clear cause.
    if zmq.curve_public(secret) != public:
        raise ValueError(f"curve_key: the secret-key in {os.fspath(curve_key)!r} does not belong to its public-key")
    return CurveKeys(public=public, secret=secret, server=public_key_from(server_key, "server_key"))
