"""HTTP/1.1 response heads for the ``headers`` message: status text, header validation, framing facts."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Iterable, List, Mapping, Optional, Tuple, Union

HeaderValue = Union[str, bytes, int]
HeadersArg = Union[Mapping[str, HeaderValue], Iterable[Tuple[str, HeaderValue]]]

#: RFC 9110 §7.6.1 connection-specific fields, plus the obsolete ones proxies still strip.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_STATUS = re.compile(r"^([1-9][0-9]{2})(?: (.*))?$")


def status_line_text(status: Union[int, str, HTTPStatus]) -> Tuple[int, str]:
    """``(code, "CODE REASON")`` from ``200``, ``"200"`` or ``"200 OK"``; a missing reason is filled in."""
    if isinstance(status, int):
        code, reason = int(status), None
    else:
        match = _STATUS.match(status.strip())
        if match is None:
            raise ValueError(f"invalid HTTP status {status!r}: expected a 3-digit code and an optional reason")
        code, reason = int(match.group(1)), match.group(2)
    if not 100 <= code <= 999:
        raise ValueError(f"invalid HTTP status code {code}")
    if reason is None or reason == "":
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = "Unknown"
    if any(c in reason for c in "\r\n\0"):
        raise ValueError(f"invalid character in reason phrase {reason!r}")
    return code, f"{code} {reason}"


def normalize_headers(headers: Optional[HeadersArg]) -> List[Tuple[str, str]]:
    """Headers as a list of ``(name, value)`` str pairs, validated: names are tokens, values have no CR/LF/NUL."""
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: List[Tuple[str, str]] = []
    for item in items:
        name, value = item
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if isinstance(value, bytes):
            text = value.decode("latin-1")
        elif isinstance(value, (str, int)):
            text = str(value)
        else:
            raise TypeError(f"header {name!r}: value must be str, bytes or int, not {type(value).__name__}")
        if any(c in text for c in "\r\n\0"):
            raise ValueError(f"invalid character in the value of header {name!r}")
        out.append((name, text.strip(" \t")))
    return out


def header_value(headers: List[Tuple[str, str]], name: str) -> Optional[str]:
    """All values of ``name`` (case-insensitive) joined with ``, ``; None if absent."""
    lname = name.lower()
    values = [v for k, v in headers if k.lower() == lname]
    return ", ".join(values) if values else None


def content_length(headers: List[Tuple[str, str]]) -> Optional[int]:
    """The response's Content-Length, or None. Raises ValueError for an invalid or conflicting value."""
    values = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if not values:
        return None
    if len(values) != 1:
        raise ValueError(f"conflicting Content-Length values {sorted(values)}")
    (text,) = values
    if not text.isdigit():
        raise ValueError(f"invalid Content-Length {text!r}")
    return int(text)


def is_chunked(headers: List[Tuple[str, str]]) -> bool:
    """True when the last transfer coding is ``chunked``."""
    te = header_value(headers, "transfer-encoding")
    if te is None:
        return False
    codings = [c.strip().lower() for c in te.split(",") if c.strip()]
    return bool(codings) and codings[-1] == "chunked"


def encode_head(status_text: str, headers: List[Tuple[str, str]]) -> bytes:
    """``HTTP/1.1 STATUS`` + header lines + the blank line, latin-1 encoded."""
    lines = [f"HTTP/1.1 {status_text}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connection_tokens(value: Optional[str]) -> List[str]:
    """Lowercased tokens of a ``Connection`` header value."""
    if not value:
        return []
    return [t.strip().lower() for t in value.split(",") if t.strip()]
