"""A BlastBeat node: ZeroMQ DEALER sockets connected to gateways, and a thread pool running a handler per request.

Threads:

* **The I/O thread** owns every ZeroMQ socket (pyzmq sockets are not thread-safe). It receives messages,
  answers ``ping`` with ``pong``, decodes ``uwsgi`` packets, feeds request bodies and WebSocket messages to
  their :class:`Request`, and sends what the workers post.
* **Worker threads** (``threads`` of them) each run the handler for one request at a time. Everything a
  worker sends goes into one outbound queue (bounded in bytes: a writer blocks while more than
  ``max_output_buffer`` bytes wait) and wakes the I/O thread through a pipe that the I/O thread polls
  together with the sockets.

Connections: one per gateway endpoint, and per gateway worker once the gateway has said it has several
(:mod:`blastbeat._workers`; docs/PROTOCOL.md). Each connection has its own DEALER socket, output queue and credit
state; whatever answers a message goes back on the connection it came in on.

Sessions are keyed by (connection, sid): the gateway sends a ``uwsgi`` per request (several per sid on a
keep-alive connection, each only after the previous response completed), then, when the request has a body,
``body`` messages and an empty ``body`` that ends it. ``end`` means the client connection is gone.

Identity: a node process connects with the ZeroMQ identity ``NODE#INSTANCE``. The gateway treats every
``NODE#...`` identity as one more process of node ``NODE``, so several processes can serve one node name;
each must use a different suffix, because two processes with the same identity steal the connection from
each other. That is why, without an explicit ``instance``, a node picks a unique suffix of its own
(``<pid>-<8 random hex digits>``): starting the same command twice adds capacity. ``plain_identity=True``
connects as exactly ``NODE``, for setups that expect one process per node name. The node sends one
unsolicited ``pong`` after every (re)connection so that the gateway learns an instance identity it has never
pinged.

CURVE: with ``curve_key`` (the node's secret certificate) and ``server_key`` (the gateway's public key) every
DEALER socket encrypts and authenticates its connection with CurveZMQ (see :mod:`blastbeat._curve`).
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import secrets
import signal
import socket
import struct
import threading
import time
from types import FrameType
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import zmq

from . import _credit, _curve, _http, _workers, uwsgi
from ._workers import ConnectionInfo, Link, LinkState

__all__ = [
    "Node",
    "Request",
    "ConnectionInfo",
    "LinkState",
    "BodyReader",
    "ClientDisconnected",
    "BodyTimeout",
    "ResponseError",
    "request_has_body",
    "unique_instance",
]

log = logging.getLogger("blastbeat")

#: A request handler: called in a worker thread with the request; returns when it is done with it.
Handler = Callable[["Request"], None]

#: Largest single ``body``/``chunk`` message the node sends; larger writes are split.
MAX_MESSAGE = 1 << 20
#: Most body bytes sent in the ``headers`` message when the node takes credit (docs/PROTOCOL.md, "Credit").
INLINE_WITH_CREDIT = 64 << 10


class ClientDisconnected(ConnectionError):
    """The session is over (the client went away, the gateway closed it, or the node stopped)."""


class BodyTimeout(TimeoutError):
    """No request body bytes arrived within the node's ``body_timeout``."""


class ResponseError(RuntimeError):
    """The response API was used out of order (``write`` before ``start``, ``start`` after the head went out...)."""


_EOF = object()
_CLOSED = object()


def request_has_body(env: Mapping[str, str]) -> bool:
    """Whether the gateway will send ``body`` messages and the empty end-of-body marker for this request.

    True when ``CONTENT_LENGTH`` > 0 or the request is chunked (``HTTP_TRANSFER_ENCODING`` contains
    ``chunked``); otherwise no ``body`` message at all is sent.
    """
    try:
        if int(env.get("CONTENT_LENGTH", "") or "0") > 0:
            return True
    except ValueError:
        pass
    return "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()


class BodyReader:
    """The request body as a read-only binary stream (what WSGI calls ``wsgi.input``).

    Reads block until the gateway has sent enough bytes, the empty end-of-body marker (then they return what
    is left, and ``b""`` afterwards), the session ends (:class:`ClientDisconnected`) or ``body_timeout`` passes
    (:class:`BodyTimeout`). A request without a body reads as empty at once.
    """

    def __init__(self, request: "Request") -> None:
        self._request = request
        self._buf = bytearray()
        self._eof = not request.has_body
        #: Body bytes received so far (including those still buffered here).
        self.bytes_received = 0

    def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the body."""
        if self._eof:
            return False
        item = self._request._next_body_item()
        if item is None:
            self._eof = True
            return False
        self.bytes_received += len(item)
        self._buf += item
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when ``size`` is negative or None); ``b""`` at the end."""
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buf)
            self._buf.clear()
            return data
        while len(self._buf) < size and self._fill():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def read1(self, size: int = -1) -> bytes:
        """What is buffered, or else the next chunk as it arrives (at most ``size`` bytes if positive)."""
        if not self._buf:
            self._fill()
        n = len(self._buf) if size is None or size < 0 else min(size, len(self._buf))
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def readline(self, size: Optional[int] = -1) -> bytes:
        """One line including its ``\\n`` (or the rest of the body), at most ``size`` bytes if positive."""
        limit = -1 if size is None else size
        scanned = 0
        while True:
            idx = self._buf.find(b"\n", scanned)
            if idx >= 0:
                end = idx + 1
                break
            scanned = len(self._buf)
            if 0 <= limit <= len(self._buf) or not self._fill():
                end = len(self._buf)
                break
        if limit >= 0:
            end = min(end, limit)
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def readlines(self, hint: int = -1) -> List[bytes]:
        """The remaining lines (stopping once more than ``hint`` bytes were read, if ``hint`` > 0)."""
        lines: List[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives, one piece per gateway ``body`` message (buffered bytes first)."""
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            yield data
        while self._fill():
            data = bytes(self._buf)
            self._buf.clear()
            yield data

    def close(self) -> None:
        """Nothing to release; present so the reader can stand in for a file."""


class Request:
    """One HTTP request received by a node, and the response being sent for it.

    Created by the I/O thread when a ``uwsgi`` message arrives; the handler gets it in a worker thread.

    Reading: :attr:`env` (the decoded uwsgi variables, ``str -> str``), :attr:`input` (a
    :class:`BodyReader`), :meth:`iter_body` / :meth:`read`.

    Responding: :meth:`start` records the status and headers; the head goes out with the first
    :meth:`write` / :meth:`chunk`, or at :meth:`finish`. Framing is chosen when the head goes out:

    * ``Content-Length`` in the headers: ``write`` sends ``body`` messages (the head and the first bytes in
      one ``headers`` message); a body shorter than announced at :meth:`finish` ends the session (``end``),
      the only honest signal to the client; bytes past the length are dropped with a warning.
    * ``Transfer-Encoding: chunked`` in the headers: every write is a ``chunk`` message (the gateway writes
      the chunk framing) and :meth:`finish` sends the empty ``chunk`` that ends the response.
    * neither: at :meth:`finish` with nothing written, ``Content-Length: 0`` is added. Otherwise, for an
      HTTP/1.1 request, ``Transfer-Encoding: chunked`` is added and ``chunk`` messages are used (so that an
      :meth:`abort` or :meth:`end` mid-body leaves the client a visibly cut-off body; the gateway would
      complete a body it chunks itself); for an HTTP/1.0 request the body is delimited by the gateway closing
      the connection (``write`` sends ``body``, :meth:`chunk` sends ``chunk`` messages: the same bytes).
      The Swift SDK does the same (Tests/SDKTests/test_sdk_conformance.py compares them).
    * HEAD requests and 204/304 responses: the head only; written bytes are discarded.

    Interim (1xx) heads, such as ``103 Early Hints``, go out at once with :meth:`send_interim`, before the
    final response.

    :meth:`retry` hands the request to another node of the vhost (only before the head went out);
    :meth:`end` completes the response and closes the client connection; :meth:`abort` closes it
    without completing the response (after a failure mid-response).

    WebSocket (:attr:`is_websocket`): :meth:`receive_websocket` / :meth:`websocket_messages` (``str`` for text,
    ``bytes`` for binary), :meth:`send_websocket`, :meth:`close_websocket`; with ``websocket-handshake =
    backend`` on the vhost, :meth:`accept_websocket` or :meth:`reject_websocket` first. When the handler
    returns, the WebSocket is closed (1000).

    The response methods are meant to be called from one thread at a time (normally the handler's).
    """

    def __init__(self, node: "Node", link: Union[Link, int], sid: bytes, env: Dict[str, str]) -> None:
        if isinstance(link, int):  # a gateway index: its first connection
            link = node._first_link(link)
        self.node = node
        #: Index of the gateway endpoint (``node.endpoints``) the request came from.
        self.gateway = link.gateway
        #: The gateway worker whose connection carried the request (0 for a gateway without workers); the
        #: response goes back on that connection.
        self.worker = link.worker
        self._link = link
        #: The session id: 16 opaque bytes naming the client connection.
        self.sid = sid
        #: The request's variables (``REQUEST_METHOD``, ``PATH_INFO``, ``HTTP_HOST``...), latin-1 decoded.
        self.env = env
        #: True when body messages and the end-of-body marker will follow (see :func:`request_has_body`).
        self.has_body = request_has_body(env)
        self._chunks: "queue.SimpleQueue[object]" = queue.SimpleQueue()
        self._ws: "queue.SimpleQueue[object]" = queue.SimpleQueue()  # (type, payload) or _CLOSED
        self._closed = threading.Event()
        self._lock = threading.RLock()
        self._status_code: Optional[int] = None
        self._status_text: Optional[str] = None
        self._headers: List[Tuple[str, str]] = []
        self._head_sent = False
        self._mode = ""  # "length" | "chunked" | "close" | "none" | "websocket", once the head went out
        self._remaining = 0
        self._overflow_logged = False
        self._finished = False
        #: Body bytes of the response handed to the gateway (after HEAD/length rules).
        self.bytes_sent = 0
        #: The request body as a stream.
        self.input = BodyReader(self)
        # Owned by the I/O thread: the end-of-body marker arrived / the worker reported the response done.
        self._io_body_done = not self.has_body
        self._io_response_done = False
        # Bytes of this request's messages waiting for credit (blastbeat._credit); guarded by the node's
        # output condition. A writer waits while MAX_MESSAGE of them wait, so one slow client blocks only its
        # own handler.
        self._held_bytes = 0

    # -- request facts ------------------------------------------------------------------------------------

    @property
    def method(self) -> str:
        return self.env.get("REQUEST_METHOD", "GET")

    @property
    def path(self) -> str:
        """``PATH_INFO``: the percent-decoded path (latin-1 text of the raw bytes)."""
        return self.env.get("PATH_INFO", "")

    @property
    def query_string(self) -> str:
        return self.env.get("QUERY_STRING", "")

    @property
    def protocol(self) -> str:
        """The client's HTTP version, ``HTTP/1.1`` or ``HTTP/1.0``."""
        return self.env.get("SERVER_PROTOCOL", "HTTP/1.1")

    @property
    def content_length(self) -> Optional[int]:
        try:
            return int(self.env["CONTENT_LENGTH"])
        except (KeyError, ValueError):
            return None

    @property
    def is_websocket(self) -> bool:
        """True for a WebSocket upgrade request: the session carries WebSocket messages once upgraded."""
        return "websocket" in self.env.get("HTTP_UPGRADE", "").lower()

    @property
    def headers(self) -> Dict[str, str]:
        """Request headers by lowercase name (``content-type``, ``x-forwarded-for``...), from the env."""
        out: Dict[str, str] = {}
        for key, value in self.env.items():
            if key.startswith("HTTP_"):
                out[key[5:].replace("_", "-").lower()] = value
        if "CONTENT_TYPE" in self.env:
            out["content-type"] = self.env["CONTENT_TYPE"]
        if "CONTENT_LENGTH" in self.env:
            out["content-length"] = self.env["CONTENT_LENGTH"]
        return out

    @property
    def closed(self) -> bool:
        """True once the session is over (client gone, ``end`` received or sent, node stopped)."""
        return self._closed.is_set()

    @property
    def finished(self) -> bool:
        """True once the response is complete (or handed on with ``retry``, or the session ended)."""
        return self._finished

    @property
    def response_started(self) -> bool:
        """True once the response head has been sent; the status can no longer change."""
        return self._head_sent

    @property
    def status(self) -> Optional[int]:
        """The status code given to :meth:`start`, if any."""
        return self._status_code

    # -- request body -------------------------------------------------------------------------------------

    def _next_body_item(self) -> Optional[bytes]:
        if self._closed.is_set():
            raise ClientDisconnected("the session ended before the request body was complete")
        timeout = self.node.body_timeout
        try:
            item = self._chunks.get(timeout=timeout) if timeout is not None else self._chunks.get()
        except queue.Empty:
            raise BodyTimeout(f"no request body bytes for {timeout}s") from None
        if item is _EOF:
            return None
        if item is _CLOSED:
            raise ClientDisconnected("the session ended before the request body was complete")
        assert isinstance(item, bytes)
        return item

    def iter_body(self) -> Iterator[bytes]:
        """The request body as it arrives, chunk by chunk, until the end-of-body marker."""
        return self.input.chunks()

    def read(self, size: int = -1) -> bytes:
        """Read from the request body (everything left when ``size`` is negative)."""
        return self.input.read(size)

    # -- WebSocket ----------------------------------------------------------------------------------------

    def accept_websocket(self, protocol: Optional[str] = None) -> None:
        """Accept the WebSocket upgrade, optionally choosing ``protocol`` among those the client offered.

        Needed on vhosts with ``websocket-handshake = backend``, where the gateway waits for the node's
        ``101``; with the default gateway handshake the session is already upgraded when the handler runs,
        and the gateway drops this message, so calling it always is safe. To refuse an upgrade, use
        :meth:`reject_websocket`.
        """
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
        if protocol:
            (_, value), = _http.normalize_headers([("Sec-WebSocket-Protocol", protocol)])
            lines.append(f"Sec-WebSocket-Protocol: {value}")
        if not self.is_websocket:
            raise ResponseError("accept_websocket() on a request that is not a WebSocket upgrade")
        with self._lock:
            if self._head_sent or self._finished:
                raise ResponseError("accept_websocket() after a response was sent")
            if self._closed.is_set():
                raise ClientDisconnected("the session is over")
            self._head_sent = True
            self._mode = "websocket"
            self._status_code, self._status_text = 101, "101 Switching Protocols"
            self._post([b"headers", ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")])

    def reject_websocket(self, status: Union[int, str] = 403, body: Union[bytes, str] = b"") -> None:
        """Refuse a WebSocket upgrade: the client gets ``status`` (backend handshake), or, where the gateway
        has already upgraded the connection, a close with code 1008 (policy violation)."""
        self.respond(status, [("Content-Type", "text/plain; charset=utf-8")], body)

    def receive_websocket(self, timeout: Optional[float] = None) -> Union[str, bytes, None]:
        """The next message from the client: ``str`` for a text message, ``bytes`` for a binary one; None
        once the session is over (the client closed, or went away).

        Raises :class:`TimeoutError` if ``timeout`` seconds pass without a message.
        """
        if self._closed.is_set() and self._ws.empty():
            return None
        try:
            item = self._ws.get(timeout=timeout) if timeout is not None else self._ws.get()
        except queue.Empty:
            raise TimeoutError(f"no WebSocket message within {timeout}s") from None
        if item is _CLOSED:
            self._ws.put(_CLOSED)  # later calls return None too
            return None
        assert isinstance(item, tuple)
        kind: bytes = item[0]
        payload: bytes = item[1]
        if kind == b"websocket":
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                return payload  # from a gateway that does not check UTF-8 (the original sent binary so too)
        return payload

    def websocket_messages(self) -> Iterator[Union[str, bytes]]:
        """The client's messages (``str`` text, ``bytes`` binary) until the session ends."""
        while True:
            message = self.receive_websocket()
            if message is None:
                return
            yield message

    def send_websocket(self, data: Union[bytes, str], *, binary: Optional[bool] = None) -> None:
        """Send one message to the client: ``str`` as a text frame, ``bytes`` as a binary frame.

        ``binary=False`` sends bytes as text (they must be UTF-8; the gateway drops invalid text), which is
        what the original BlastBeat did with every message; ``binary=True`` sends a str's UTF-8 as binary.
        The gateway frames, fragments and compresses; the node sends whole messages.
        """
        as_binary = isinstance(data, (bytes, bytearray, memoryview)) if binary is None else binary
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if self._closed.is_set():
            raise ClientDisconnected("the WebSocket session is over")
        self._post([b"websocket-binary" if as_binary else b"websocket", payload])

    def close_websocket(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket with ``code`` (1000 normal, 1001 going away, 1008 policy, 1011 error...) and a
        short UTF-8 ``reason`` (at most 123 bytes). Idempotent."""
        data = reason.encode("utf-8")
        if not 1000 <= code <= 4999 or len(data) > 123:
            raise ValueError("a close code is 1000-4999 and a reason at most 123 bytes of UTF-8")
        with self._lock:
            if self._closed.is_set() or self._finished:
                self._mark_finished()
                return
            self._mark_finished(send=[b"end", struct.pack(">H", code) + data])
            self._session_ended()

    # -- response -----------------------------------------------------------------------------------------

    def start(self, status: Union[int, str], headers: Optional[_http.HeadersArg] = None, *,
              replace: bool = False) -> None:
        """Set the response status (``200``, ``"200"`` or ``"404 Not Found"``) and headers.

        Nothing is sent yet: the head goes out with the first :meth:`write` / :meth:`chunk`, at
        :meth:`send_head` or at :meth:`finish`. Calling it again raises :class:`ResponseError` unless ``replace`` is true and the
        head has not gone out (WSGI's ``exc_info`` rule). Raises ValueError for an invalid status, header name
        or value (CR, LF and NUL are refused), and for interim (1xx) statuses: those are not the response's
        status; send them with :meth:`send_interim`.
        """
        code, text = _http.status_line_text(status)
        if code < 200:
            raise ValueError(f"interim status {code} is not a final status; use send_interim()")
        normalized = _http.normalize_headers(headers)
        _http.content_length(normalized)  # validate early: raises ValueError
        with self._lock:
            if self._head_sent:
                raise ResponseError("the response head has already been sent")
            if self._finished:
                raise ResponseError("the response is already finished")
            if self._status_text is not None and not replace:
                raise ResponseError("start() was already called")
            self._status_code, self._status_text, self._headers = code, text, normalized

    def send_interim(self, status: Union[int, str], headers: Optional[_http.HeadersArg] = None) -> None:
        """Send an interim (1xx) head now, such as ``103 Early Hints`` with ``Link`` headers; the final
        response follows with :meth:`start` / :meth:`respond`. May be called several times before it.

        The gateway forwards interim heads to HTTP/1.1 clients only, and drops a ``100 Continue`` when it has
        sent its own (it answers ``Expect: 100-continue`` itself). ``101`` is refused here: accept a
        WebSocket upgrade with :meth:`accept_websocket`. Raises ValueError for a status outside 100-199.
        """
        code, text = _http.status_line_text(status)
        if not 100 <= code <= 199:
            raise ValueError(f"{code} is not an interim status (100-199)")
        if code == 101:
            raise ValueError("101 Switching Protocols: use accept_websocket() on a WebSocket upgrade")
        normalized = _http.normalize_headers(headers)
        with self._lock:
            if self._head_sent:
                raise ResponseError("the response head has already been sent")
            if self._finished:
                raise ResponseError("the response is already finished")
            if self._closed.is_set():
                raise ClientDisconnected("the session is over")
            self._post([b"headers", _http.encode_head(text, normalized)])

    def send_head(self) -> None:
        """Send the response head now, before any body bytes (e.g. to open an event stream at once).

        The framing is chosen as for a streamed body: without ``Content-Length`` the response becomes
        chunked (HTTP/1.1) or close-delimited (HTTP/1.0). Does nothing if the head already went out.
        """
        with self._lock:
            self._check_writable()
            if not self._head_sent:
                self._send_head(finishing=False, first=b"", streamed=True)

    def write(self, data: bytes) -> None:
        """Send response body bytes (the head first, if it has not gone out). Empty data sends nothing.

        Raises :class:`ClientDisconnected` when the session is over, so a streaming handler stops.
        """
        if not data:
            return
        with self._lock:
            self._check_writable()
            if not self._head_sent:
                self._send_head(finishing=False, first=bytes(data))
            else:
                self._send_body(bytes(data))

    def chunk(self, data: bytes) -> None:
        """Send one ``chunk`` message: a piece of a streamed response that the gateway frames as one HTTP
        chunk (``Transfer-Encoding: chunked`` is added to the head if needed, for an HTTP/1.1 client; an
        HTTP/1.0 client gets the bytes as they are, delimited by the close).

        An empty chunk sends nothing: :meth:`finish` sends the last chunk. Raises :class:`ResponseError` when
        the head announced a ``Content-Length``.
        """
        with self._lock:
            self._check_writable()
            if not self._head_sent:
                if _http.content_length(self._headers) is not None:
                    raise ResponseError("chunk() on a response with Content-Length; use write()")
                self._send_head(finishing=False, first=b"", streamed=True)
            elif self._mode == "length":
                raise ResponseError("chunk() on a response with Content-Length; use write()")
            if data:
                self._send_body(bytes(data), as_chunk=True)

    def finish(self) -> None:
        """Complete the response: send the head if still pending and whatever ends the body.

        Idempotent. A finished response lets the gateway reuse the client connection for the next request.
        """
        with self._lock:
            if self._finished:
                return
            if self._closed.is_set():
                self._mark_finished()
                return
            if self._status_text is None or self._mode == "websocket":
                if self.is_websocket:
                    self._mark_finished(send=[b"end", b""])  # the WebSocket closes with 1000
                    self._session_ended()
                    return
                raise ResponseError("finish() before start(): no response status")
            if not self._head_sent:
                self._send_head(finishing=True, first=b"")
            if self._mode == "length" and self._remaining > 0:
                log.warning("%s %s: response ended %d bytes short of its Content-Length; closing the connection",
                            self.method, self.path, self._remaining)
                self._mark_finished(send=[b"end", b""])
            elif self._mode in ("chunked", "close"):
                self._mark_finished(send=[b"chunk", b""])
            else:
                self._mark_finished()
            if self.is_websocket:
                # An HTTP answer to an upgrade refuses it. With the gateway's own handshake the connection is
                # already a WebSocket (the answer is dropped): close it, 1008 for a refusal.
                code = 1008 if (self._status_code or 0) >= 400 else 1000
                self._post_quietly([b"end", struct.pack(">H", code)])
                self._session_ended()

    def respond(self, status: Union[int, str], headers: Optional[_http.HeadersArg] = None,
                body: Union[bytes, str] = b"") -> None:
        """Send a whole response at once: status, headers (``Content-Length`` added) and body; then finish."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        items = _http.normalize_headers(headers)
        code, _ = _http.status_line_text(status)
        # RFC 9110 §8.6: no Content-Length in a 204; in a 304 it would describe the unsent representation.
        if code not in (204, 304) and _http.content_length(items) is None and not _http.is_chunked(items):
            items.append(("Content-Length", str(len(data))))
        self.start(status, items, replace=not self._head_sent)
        self.write(data)
        self.finish()

    def retry(self) -> None:
        """Ask the gateway to send this request (head and body so far) to another node of the vhost.

        Only before the response head went out. With no other live node, or after ``max-hops`` retries, the
        client gets 502.
        """
        with self._lock:
            if self._head_sent:
                raise ResponseError("retry() after the response head was sent")
            if self._finished:
                raise ResponseError("the response is already finished")
            if self._closed.is_set():
                raise ClientDisconnected("the session is over")
            self._mark_finished(send=[b"retry", b""])

    def end(self) -> None:
        """End the session: the gateway closes the client connection and sends ``end`` back. A body that is
        not complete (``Content-Length`` short, or chunked without its last chunk) stays visibly cut off; without any response the client gets 502. Only ``end`` is sent: an empty ``chunk`` first
        would complete the response and let the gateway start the connection's next request, which the
        ``end`` would then cut off (docs/PROTOCOL.md, "Backend → gateway messages"). Idempotent."""
        with self._lock:
            if self._closed.is_set():
                self._mark_finished()
                return
            self._mark_finished(send=[b"end", b""])
            self._session_ended()

    # -- internals ----------------------------------------------------------------------------------------

    def abort(self) -> None:
        """End the session without completing the response: the client sees the body cut off and the
        connection closed (the honest signal after a failure mid-response). Idempotent."""
        with self._lock:
            if self._closed.is_set():
                self._mark_finished()
                return
            body = struct.pack(">H", 1011) if self.is_websocket else b""  # 1011: internal error
            self._mark_finished(send=[b"end", body])
            self._session_ended()

    def _post_quietly(self, frames: List[bytes]) -> None:
        try:
            self._post(frames)
        except ClientDisconnected:
            pass

    def _check_writable(self) -> None:
        if self._closed.is_set():
            raise ClientDisconnected("the session is over")
        if self._finished:
            raise ResponseError("the response is already finished")
        if self._status_text is None:
            raise ResponseError("write() before start(): no response status")

    def _post(self, frames: List[bytes]) -> None:
        self.node._post(self._link, [self.sid, *frames], self)

    def _send_head(self, *, finishing: bool, first: bytes, streamed: bool = False) -> None:
        """Decide the framing, send the head (with ``first`` if the framing allows) and the first bytes."""
        assert self._status_code is not None and self._status_text is not None
        headers = list(self._headers)
        code = self._status_code
        length = _http.content_length(headers)
        if self.method == "HEAD" or code in (204, 304):
            mode = "none"
        elif length is not None:
            mode = "length"
            self._remaining = length
        elif _http.is_chunked(headers):
            mode = "chunked"
        elif finishing and not first and not streamed:
            headers.append(("Content-Length", "0"))
            mode, self._remaining = "length", 0
        elif _http.header_value(headers, "transfer-encoding") is not None:
            mode = "close"  # a coding other than chunked: delimited by the close
        elif self.protocol == "HTTP/1.1":
            # Framed here, not left to the gateway: on `end` the gateway completes a body it chunks itself,
            # so a response that fails half-way would reach the client looking whole. With our own
            # `Transfer-Encoding: chunked` an `end` leaves it visibly cut off (no last chunk).
            headers.append(("Transfer-Encoding", "chunked"))
            mode = "chunked"
        else:
            mode = "close"  # HTTP/1.0: delimited by the close (RFC 9112 §6.1: no chunked to an HTTP/1.0 client)
        self._mode = mode
        self._head_sent = True
        head = _http.encode_head(self._status_text, headers)
        if mode == "length" and first:
            n = self._take_length(len(first))
            # With credit a `headers` message goes out whole however little credit is left (it cannot be split),
            # so only a small first piece rides along with the head.
            inline = min(n, INLINE_WITH_CREDIT if self.node.credit else MAX_MESSAGE)
            self._post([b"headers", head + first[:inline]])
            self.bytes_sent += inline
            if n > inline:
                self._send_pieces(b"body", first[inline:n])
            return
        self._post([b"headers", head])
        if first:
            self._send_body(first)

    def _take_length(self, n: int) -> int:
        """How many of ``n`` bytes still fit the Content-Length; warns once about the rest."""
        allowed = min(n, self._remaining)
        if allowed < n and not self._overflow_logged:
            self._overflow_logged = True
            log.warning("%s %s: response body exceeds its Content-Length; %d extra bytes dropped",
                        self.method, self.path, n - allowed)
        self._remaining -= allowed
        return allowed

    def _send_body(self, data: bytes, as_chunk: bool = False) -> None:
        if self._mode == "none":
            return
        if self._mode == "length":
            n = self._take_length(len(data))
            if n:
                self._send_pieces(b"body", data[:n])
            return
        # Under a chunked head every piece is a `chunk` message (the gateway writes the chunk framing); a body
        # delimited by the close is `body` messages unless the caller asked for `chunk` (the same bytes reach
        # the client).
        self._send_pieces(b"chunk" if self._mode == "chunked" or as_chunk else b"body", data)

    def _send_pieces(self, kind: bytes, data: bytes) -> None:
        for offset in range(0, len(data), MAX_MESSAGE):
            piece = data[offset:offset + MAX_MESSAGE]
            self._post([kind, piece])
            self.bytes_sent += len(piece)

    def _mark_finished(self, send: Optional[List[bytes]] = None) -> None:
        if send is not None:
            try:
                self._post(send)
            except ClientDisconnected:
                pass
        self._finished = True
        self.node._post_done(self)

    def _fail(self) -> None:
        """After the handler raised: a 500 if nothing was sent yet, else end the session."""
        with self._lock:
            if self._finished or self._closed.is_set():
                self._finished = True
                return
            try:
                if self._head_sent or self.is_websocket:
                    self.abort()
                    return
                body = b"Internal Server Error\n"
                self._status_text = None
                self.start(500, [("Content-Type", "text/plain; charset=utf-8"),
                                 ("Content-Length", str(len(body)))], replace=True)
                self.write(body)
                self.finish()
            except ClientDisconnected:
                self._finished = True

    def _after_handler(self) -> None:
        """The handler returned: finish what it left open; a request with no response at all gets 500."""
        with self._lock:
            if self._finished or self._closed.is_set():
                self._finished = True
                return
            if self._status_text is None and not self.is_websocket:
                log.error("%s %s: the handler returned without a response", self.method, self.path)
                self._fail()
                return
        try:
            self.finish()
        except ClientDisconnected:
            pass

    # Called by the I/O thread.

    def _feed_body(self, data: bytes) -> None:
        self._chunks.put(data if data else _EOF)

    def _feed_websocket(self, kind: bytes, data: bytes) -> None:
        self._ws.put((kind, data))

    def _session_ended(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._chunks.put(_CLOSED)
            self._ws.put(_CLOSED)

    def __repr__(self) -> str:
        return (f"<Request {self.method} {self.path!r} sid={self.sid.hex()} gateway={self.gateway} "
                f"worker={self.worker}>")


#: A session: the connection its requests arrive on, and its sid.
_Key = Tuple[Link, bytes]
_Outbound = Tuple[Link, List[bytes], int, Optional[Request]]


def unique_instance() -> str:
    """A fresh instance suffix, ``<pid>-<8 random hex digits>``.

    The pid tells processes apart on one machine (and helps find the process from the gateway's logs); the
    random part tells apart processes on different machines, or a restarted process that got an old pid.
    """
    return f"{os.getpid()}-{secrets.token_hex(4)}"


class Node:
    """A BlastBeat backend node: connects to one or several gateways and runs ``handler`` for each request.

    ``connect`` is one endpoint (``tcp://127.0.0.1:5000``) or several: one DEALER per gateway, polled
    together; each reply goes back through the gateway its request came from. A gateway that advertises
    several worker processes (``workers = N``) gets one connection per worker, opened by the node itself
    (see :attr:`connections`), so no request is forwarded between the gateway's workers. ``node`` is the node
    name of the gateway's ``node = ...`` lines. The ZeroMQ identity (:attr:`identity`) is ``node#instance``: with
    ``instance`` given, that suffix (each process of a node needs its own); without it, a unique suffix
    ``<pid>-<8 random hex digits>`` (see :func:`unique_instance`), so that processes started the same way
    never take each other's identity. ``plain_identity=True`` connects as exactly ``node`` instead (one
    process per node name, as with the original BlastBeat); it excludes ``instance``.

    ``curve_key`` and ``server_key`` (both or neither) turn on CURVE: ``curve_key`` is the path of this
    node's secret certificate file (as written by ``zmq.auth.create_certificates``), ``server_key`` the
    gateway's public key, as 40 Z85 characters or the path of its public certificate file. The gateway
    must list the node's public key (``node-key``). Bad keys raise ValueError here, not at connect time.

    ``handler(request)`` runs in one of ``threads`` worker threads (subclasses may override :meth:`handle`
    instead). When it returns, an unfinished response is finished; when it raises, the client gets a 500
    (or, if the head was already sent, the connection is closed) and the worker goes on.

    ``body_timeout``: longest wait for request body bytes (None: no limit). ``graceful_timeout``: how long
    :meth:`stop` lets requests in flight finish. ``max_output_buffer``: bytes queued for the gateway before
    writers block.

    ``credit`` (default True): announce per-session flow control to each gateway (docs/PROTOCOL.md,
    "Credit"). A gateway that grants credit then sends each session what its client can take, and a handler
    whose client reads slowly waits in :meth:`Request.write` without holding up the node's other sessions.
    A gateway that does not acknowledge the announcement is sent to as before.

    Use :meth:`run` (blocks, stops gracefully on SIGTERM/SIGINT) or :meth:`start` / :meth:`stop`, or a
    ``with`` block.
    """

    def __init__(self, connect: Union[str, Sequence[str]], node: str, handler: Optional[Handler] = None, *,
                 instance: Optional[str] = None, plain_identity: bool = False, threads: int = 8,
                 body_timeout: Optional[float] = 120.0, graceful_timeout: float = 10.0,
                 max_output_buffer: int = 8 << 20, context: Optional["zmq.Context[Any]"] = None,
                 linger: float = 1.0, curve_key: Optional["Union[str, os.PathLike[str]]"] = None,
                 server_key: Optional[_curve.KeySource] = None, credit: bool = True) -> None:
        self.endpoints: List[str] = [connect] if isinstance(connect, str) else list(connect)
        if not self.endpoints:
            raise ValueError("at least one gateway endpoint is required")
        if not node:
            raise ValueError("the node name must not be empty")
        if plain_identity and instance is not None:
            raise ValueError("plain_identity and instance exclude each other: the plain identity is the node "
                             "name alone")
        if not plain_identity and "#" in node:
            # The gateway splits an identity at its first '#': "a#b" is already instance "b" of node "a".
            raise ValueError(f"the node name {node!r} contains '#'; give the suffix as instance=... "
                             f"(or plain_identity=True to connect as exactly {node!r})")
        if instance is not None and not instance:
            raise ValueError("instance needs a non-empty suffix")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.node = node
        #: True when the node connects as exactly ``node`` (``plain_identity=True``).
        self.plain_identity = plain_identity
        #: The instance suffix: the one given, the unique one chosen here, or None with a plain identity.
        self.instance: Optional[str] = None if plain_identity else (instance or unique_instance())
        self._instance_chosen = not plain_identity and instance is None
        #: The ZeroMQ identity: ``node#instance``, or ``node`` with ``plain_identity``.
        self.identity: bytes = (node if self.instance is None else f"{node}#{self.instance}").encode("utf-8")
        if len(self.identity) > 255 or self.identity.startswith(b"\0"):
            raise ValueError(f"a ZeroMQ identity is 1-255 bytes and must not start with a zero byte; "
                             f"{self.identity[:40]!r}... is {len(self.identity)} bytes"
                             + (" (the node name leaves no room for the instance suffix)"
                                if self._instance_chosen else ""))
        #: The CURVE keys set on every socket, or None for plain connections.
        self.curve: Optional[_curve.CurveKeys] = _curve.client_keys(curve_key, server_key)
        self.handler = handler
        self.threads = threads
        self.body_timeout = body_timeout
        self.graceful_timeout = graceful_timeout
        self.max_output_buffer = max_output_buffer
        self.credit = credit
        self.linger = linger
        self._own_context = context is None
        self._context = context

        self._out_cond = threading.Condition()
        self._outq: Deque[_Outbound] = collections.deque()
        self._out_bytes = 0
        self._wake_pending = False
        # A socket pair rather than a pipe: a closed socket object refuses writes instead of writing to
        # whatever file reuses its descriptor number.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        self._work: "queue.SimpleQueue[Optional[Request]]" = queue.SimpleQueue()
        self._workers: List[threading.Thread] = []
        self._flight_lock = threading.Lock()
        self._active: Set[Request] = set()

        self._io_thread: Optional[threading.Thread] = None
        self._started = threading.Event()
        self._setup_error: Optional[BaseException] = None
        self._io_done = threading.Event()
        self._stop_requested = threading.Event()
        self._state = "new"  # new -> running -> draining -> stopped
        self._deadline = 0.0
        self._lock = threading.Lock()
        #: Counters: requests dispatched, pings answered, messages dropped (unknown sid or type, malformed).
        self.stats: Dict[str, int] = {"requests": 0, "pings": 0, "dropped": 0, "retried_while_draining": 0}
        # Per gateway: its connections by worker index (owned by the I/O thread; created in _setup), and the
        # worker count it last advertised (None until a message said so).
        self._links: List[Dict[int, Link]] = [{} for _ in self.endpoints]
        self._worker_counts: List[Optional[int]] = [None] * len(self.endpoints)
        # Whether connections can be labelled (ZMQ_METADATA); without it the node keeps one per gateway.
        self._labelled = True
        # A snapshot of the connections for other threads (replaced, never mutated, by the I/O thread).
        self._link_view: Tuple[ConnectionInfo, ...] = ()
        # Malformed X-BlastBeat-Workers values already logged (bounded: only the first few are kept).
        self._malformed_logged: Set[str] = set()

    # -- public API ---------------------------------------------------------------------------------------

    def handle(self, request: Request) -> None:
        """Serve one request (runs in a worker thread). The default calls the ``handler`` given to the node."""
        if self.handler is None:
            raise NotImplementedError("pass handler= or override Node.handle")
        self.handler(request)

    def start(self) -> "Node":
        """Connect and start the I/O and worker threads; returns at once (raises if the sockets cannot be set up)."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError("a Node can be started once")
            self._state = "running"
        for i in range(self.threads):
            t = threading.Thread(target=self._worker_main, name=f"blastbeat-worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        log.info("node %s: identity %s (%s)%s", self.node, self.identity.decode(errors="replace"),
                 "plain" if self.plain_identity else "unique instance chosen at start" if self._instance_chosen
                 else "instance given", ", CURVE" if self.curve is not None else "")
        self._io_thread = threading.Thread(target=self._io_main, name="blastbeat-io", daemon=True)
        self._io_thread.start()
        self._started.wait()
        if self._setup_error is not None:
            self._stop_workers()
            raise self._setup_error
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop gracefully: requests in flight get up to ``timeout`` seconds (default ``graceful_timeout``)
        to finish, new ones are handed back to the gateway with ``retry``; sessions still open at the deadline
        are ended. Then the sockets close (pending replies get ``linger`` seconds). Idempotent."""
        grace = self.graceful_timeout if timeout is None else timeout
        with self._lock:
            if self._state == "new":
                self._state = "stopped"
                self._close_pipe()
                return
            if self._state == "running":
                self._state = "draining"
                self._deadline = time.monotonic() + max(0.0, grace)
                log.info("node %s stopping: %d request(s) in flight, up to %.1fs to finish",
                         self.identity.decode(errors="replace"), len(self._active), grace)
            else:
                self._deadline = min(self._deadline, time.monotonic() + max(0.0, grace))
        self._stop_requested.set()
        self._wake()
        if self._io_thread is not None and self._io_thread is not threading.current_thread():
            hard_limit = time.monotonic() + max(0.0, grace) + self.linger + 5.0
            while self._io_thread.is_alive() and time.monotonic() < hard_limit:
                self._io_thread.join(0.1)  # short joins keep the main thread responsive to signals
        self._stop_workers()

    def stop_now(self) -> None:
        """Stop without waiting for requests in flight (their sessions are ended)."""
        self.stop(timeout=0.0)

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Start, block until SIGTERM/SIGINT (or :meth:`stop` from another thread), then stop gracefully.

        A second signal during the graceful stop stops at once. Signal handlers are installed only when
        called from the main thread, and restored afterwards.
        """
        self.start()
        previous: Dict[int, object] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, frame: Optional[FrameType]) -> None:
                if self._stop_requested.is_set():
                    log.warning("second signal: stopping now")
                    with self._lock:
                        self._deadline = time.monotonic()
                    self._wake()
                self._stop_requested.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            while not self._stop_requested.wait(0.2):
                if self._io_done.is_set():
                    break
            self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def wait_connected(self, timeout: float = 10.0, *, all_workers: bool = False) -> bool:
        """Wait until every gateway connection has completed its ZeroMQ handshake; False on timeout.

        With ``all_workers``, also until every gateway's worker count is known (from a message it sent: the
        answer to the node's credit announcement, or a ping) and the node holds one connection per worker, each
        past its handshake, or one connection when this pyzmq/libzmq cannot label them (docs/PROTOCOL.md,
        "Worker processes")."""
        deadline = time.monotonic() + timeout
        while not self._connections_ready(all_workers):
            if time.monotonic() >= deadline or self._io_done.is_set():
                return False
            time.sleep(0.02)
        return True

    def _connections_ready(self, all_workers: bool) -> bool:
        view = self._link_view
        for gateway in range(len(self.endpoints)):
            links = [c for c in view if c.gateway == gateway]
            if not links or not all(c.state.handshaken for c in links):
                return False
            if all_workers and not all(c.state is LinkState.SERVING for c in links):
                return False
            if all_workers and len(links) != (links[0].workers if self._labelled else 1):
                return False
        return True

    @property
    def connections(self) -> List["ConnectionInfo"]:
        """The node's connections, one per gateway worker: endpoint, gateway index, worker, state, and the
        worker count the gateway advertised (1 when it advertised none)."""
        return list(self._link_view)

    @property
    def in_flight(self) -> int:
        """Requests whose handler has not returned yet."""
        with self._flight_lock:
            return len(self._active)

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- worker side --------------------------------------------------------------------------------------

    def _worker_main(self) -> None:
        while True:
            request = self._work.get()
            if request is None:
                return
            try:
                self._run_handler(request)
            finally:
                with self._flight_lock:
                    self._active.discard(request)
                self._wake()

    def _run_handler(self, request: Request) -> None:
        try:
            self.handle(request)
        except ClientDisconnected:
            log.debug("%r: client went away", request)
            request._after_handler()
        except BaseException:
            log.exception("handler failed on %s %s", request.method, request.path)
            try:
                request._fail()
            except BaseException:
                log.exception("could not send the error response")
        else:
            try:
                request._after_handler()
            except BaseException:
                log.exception("could not complete the response of %s %s", request.method, request.path)

    def _stop_workers(self) -> None:
        for _ in self._workers:
            self._work.put(None)
        deadline = time.monotonic() + 1.0
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))

    def _post(self, link: Link, frames: List[bytes], request: Optional[Request]) -> None:
        """Queue one message for the I/O thread (any thread). Blocks while the output buffer is full."""
        n = sum(len(f) for f in frames)
        with self._out_cond:
            while n > 0 and (self._out_bytes > self.max_output_buffer
                             or (request is not None and request._held_bytes >= MAX_MESSAGE)):
                if self._io_done.is_set() or (request is not None and request._closed.is_set()):
                    break
                self._out_cond.wait(0.25)
            if self._io_done.is_set():
                raise ClientDisconnected("the node has stopped")
            self._outq.append((link, frames, n, request))
            self._out_bytes += n
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def _post_done(self, request: Request) -> None:
        """Tell the I/O thread that ``request`` needs no more input (its session entry can go)."""
        with self._out_cond:
            self._outq.append((request._link, [], 0, request))
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full of wakeups already, or closed at shutdown

    def _close_pipe(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    # -- I/O thread ---------------------------------------------------------------------------------------

    def _io_main(self) -> None:
        try:
            self._setup()
        except BaseException as exc:  # reported by start()
            self._setup_error = exc
            self._io_done.set()
            self._started.set()
            self._teardown()
            return
        self._started.set()
        try:
            self._loop()
        except BaseException:
            log.exception("the node's I/O loop failed")
        finally:
            self._io_done.set()
            with self._out_cond:
                self._out_cond.notify_all()
            with self._flight_lock:
                active = list(self._active)
            for request in list(self._sessions.values()) + active:
                request._session_ended()
            self._teardown()
            with self._lock:
                self._state = "stopped"

    def _setup(self) -> None:
        if self._context is None:
            self._context = zmq.Context()
        self._sessions: Dict[_Key, Request] = {}
        self._poller = zmq.Poller()
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._by_socket: Dict["zmq.Socket[bytes]", Link] = {}
        self._by_monitor: Dict["zmq.Socket[bytes]", Link] = {}
        self._links_changed = False
        # Each gateway starts with the connection for worker 0; the others follow once the gateway has said how
        # many workers it has (docs/PROTOCOL.md, "Worker processes").
        for gateway in range(len(self.endpoints)):
            self._open_link(gateway, 0)
        self._publish_links()

    def _open_link(self, gateway: int, worker: int) -> Link:
        link = Link(gateway, worker, self.endpoints[gateway])
        labelled = link.open(self._context, self.identity, self.linger, self.curve, self._labelled)
        if self._labelled and not labelled:
            self._labelled = False
            log.info("node %s: this pyzmq/libzmq cannot label connections (ZMQ_METADATA); one connection per "
                     "gateway (a gateway with several workers forwards between them)",
                     self.identity.decode(errors="replace"))
        assert link.sock is not None and link.monitor is not None
        self._links[gateway][worker] = link
        self._by_socket[link.sock] = link
        self._by_monitor[link.monitor] = link
        self._poller.register(link.sock, zmq.POLLIN)
        self._poller.register(link.monitor, zmq.POLLIN)
        if worker:
            log.info("node %s: connecting to %s", self.identity.decode(errors="replace"), link.describe())
        return link

    def _close_link(self, link: Link) -> None:
        """Close a connection the gateway no longer has a worker for: its sessions end, its output is dropped."""
        assert link.sock is not None and link.monitor is not None
        self._poller.unregister(link.sock)
        self._poller.unregister(link.monitor)
        del self._by_socket[link.sock]
        del self._by_monitor[link.monitor]
        del self._links[link.gateway][link.worker]
        unsent = sum(n for _, n in link.pending)
        # The worker is gone (the gateway restarted with fewer): nothing queued for it can arrive any more.
        self._drop_held(link.close(linger=0))
        if unsent:
            with self._out_cond:
                self._out_bytes -= unsent
                self._out_cond.notify_all()
        for key in [key for key in self._sessions if key[0] is link]:
            self._sessions.pop(key)._session_ended()
        log.info("node %s: closed the connection to %s", self.identity.decode(errors="replace"), link.describe())

    def _reconcile_links(self) -> None:
        """Open the connections missing for a gateway's worker count, close those past it."""
        self._links_changed = False
        for gateway, links in enumerate(self._links):
            count = self._worker_counts[gateway]
            if count is None:
                continue
            wanted = count if self._labelled else 1
            for worker in sorted(w for w in links if w >= wanted):
                self._close_link(links[worker])
            if self._state == "running":
                for worker in range(1, wanted):
                    if worker not in links:
                        self._open_link(gateway, worker)
        self._publish_links()

    def _publish_links(self) -> None:
        self._link_view = tuple(
            ConnectionInfo(link.endpoint, gateway, worker, link.state, self._worker_counts[gateway] or 1)
            for gateway, links in enumerate(self._links) for worker, link in sorted(links.items()))

    def _first_link(self, gateway: int) -> Link:
        """The connection for worker 0 of a gateway; a closed stand-in before the node started or after it stopped
        (messages posted to it are dropped)."""
        link = self._links[gateway].get(0)
        if link is None:
            link = Link(gateway, 0, self.endpoints[gateway])
            link.state = LinkState.CLOSED
        return link

    def _all_links(self) -> List[Link]:
        return list(self._by_socket.values())

    def _teardown(self) -> None:
        for link in self._all_links() if hasattr(self, "_by_socket") else []:
            link.close()  # with the socket's LINGER: pending replies get ``linger`` seconds
        if self._own_context and self._context is not None:
            self._context.term()
        self._close_pipe()

    def _loop(self) -> None:
        while True:
            events = dict(self._poller.poll(100))
            if self._wake_r in events:
                self._drain_wakeups()
            self._take_outbound()
            for sock, link in list(self._by_socket.items()):
                if events.get(sock, 0) & zmq.POLLIN:
                    self._receive(link)
            for mon, link in list(self._by_monitor.items()):
                if mon in events:
                    self._monitor_event(link, mon)
            if self._links_changed:
                self._reconcile_links()
            self._flush()
            for link in self._all_links():
                want = bool(link.pending)
                if want != link.polling_out:
                    self._poller.modify(link.sock, zmq.POLLIN | (zmq.POLLOUT if want else 0))
                    link.polling_out = want
            if self._state == "draining" and self._drain_finished():
                return

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _take_outbound(self) -> None:
        with self._out_cond:
            self._wake_pending = False
            items = list(self._outq)
            self._outq.clear()
        dropped = 0
        for link, frames, n, request in items:
            if frames:
                if link.state is LinkState.CLOSED:
                    dropped += n  # its worker is gone, and the session with it
                elif request is not None and frames[0] and link.gate.granting:
                    self._queue_released(link, link.gate.offer((frames, n, request)), held=(request, n))
                else:
                    link.pending.append((frames, n))
            elif request is not None:
                # The response is done: once the body has fully arrived nothing more is expected for it.
                request._io_response_done = True
                key = (link, request.sid)
                if self._sessions.get(key) in (None, request):
                    # Not when the sid's next request has arrived meanwhile: the credit is that one's now.
                    link.gate.done(request.sid)
                if request._io_body_done and self._sessions.get(key) is request:
                    del self._sessions[key]
        if dropped:
            with self._out_cond:
                self._out_bytes -= dropped
                self._out_cond.notify_all()

    def _queue_released(self, link: Link, released: List[_credit.Item],
                        held: Optional[Tuple[Request, int]] = None) -> None:
        """Messages the credit gate let out go to the connection's pending queue. ``held``: a message just offered
        to the gate (counted in the output buffer until now): its bytes move to its request's waiting bytes, and
        whatever is released moves back, so only what may go out blocks the node's writers."""
        with self._out_cond:
            if held is not None:
                self._out_bytes -= held[1]
                held[0]._held_bytes += held[1]
            for _, n, owner in released:
                owner._held_bytes -= n
                self._out_bytes += n
            if released:
                self._out_cond.notify_all()
        for frames, n, _ in released:
            link.pending.append((frames, n))

    def _drop_held(self, dropped: List[_credit.Item]) -> None:
        """Messages that waited for credit on a session that is over: their writers stop waiting."""
        if not dropped:
            return
        with self._out_cond:
            for _, n, owner in dropped:
                owner._held_bytes -= n
            self._out_cond.notify_all()

    def _flush(self) -> None:
        released = 0
        for link in self._all_links():
            pending = link.pending
            sock = link.sock
            assert sock is not None
            while pending:
                frames, n = pending[0]
                try:
                    sock.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                pending.popleft()
                released += n
        if released:
            with self._out_cond:
                self._out_bytes -= released
                self._out_cond.notify_all()

    def _send_now(self, link: Link, frames: List[bytes]) -> None:
        """Send from the I/O thread, behind anything already pending on that connection."""
        if link.state is not LinkState.CLOSED:
            link.pending.append((frames, 0))

    def _receive(self, link: Link) -> None:
        sock = link.sock
        assert sock is not None
        for _ in range(1000):  # then let the other sockets have a turn
            try:
                if link.state is LinkState.SERVING:
                    frames = sock.recv_multipart(flags=zmq.NOBLOCK)
                else:
                    # The first message since the handshake: its peer properties say how many workers the
                    # gateway has (only a frame object, not plain bytes, carries them).
                    first = sock.recv(flags=zmq.NOBLOCK, copy=False)
                    frames = [first.bytes] + (sock.recv_multipart(flags=zmq.NOBLOCK) if first.more else [])
                    self._learn_workers(link, first)
            except zmq.Again:
                return
            self._message(link, frames)

    def _learn_workers(self, link: Link, frame: "zmq.Frame") -> None:
        kind, count, raw = _workers.read_worker_count(frame)
        if kind is _workers.WorkerCount.MALFORMED and raw not in self._malformed_logged \
                and len(self._malformed_logged) < 16:  # each value once, and only a few values
            self._malformed_logged.add(raw or "")
            log.info("gateway %s advertises %s = %r, not a count 1-%d; keeping one connection", link.endpoint,
                     _workers.WORKERS_PROPERTY, raw, _workers.MAX_WORKERS)
        link.state = LinkState.SERVING
        previous = self._worker_counts[link.gateway]
        self._worker_counts[link.gateway] = count
        if previous != count:
            self._links_changed = True
            if count > 1 or previous is not None:
                log.info("node %s: gateway %s has %d worker(s)%s", self.identity.decode(errors="replace"),
                         link.endpoint, count, "" if self._labelled else
                         " (this pyzmq/libzmq cannot label connections: keeping one)")
        self._publish_links()

    def _message(self, link: Link, frames: List[bytes]) -> None:
        if len(frames) != 3:
            self.stats["dropped"] += 1
            log.warning("dropped a message of %d frame(s) from %s; expected 3", len(frames), link.describe())
            return
        sid, kind, body = frames
        key = (link, sid)
        if kind == b"ping":
            self.stats["pings"] += 1
            try:
                # Answered on the connection it came in on: each gateway worker pings its own connections.
                assert link.sock is not None
                link.sock.send_multipart([sid, b"pong", b""], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
        elif kind == b"uwsgi":
            self._new_request(link, sid, body)
        elif kind == b"body":
            request = self._sessions.get(key)
            if request is None:
                return
            if not request._io_response_done:  # after the response nobody reads it: drop, don't buffer
                request._feed_body(body)
            if not body:
                request._io_body_done = True
                if request._io_response_done:
                    del self._sessions[key]
        elif kind in (b"websocket", b"websocket-binary"):
            request = self._sessions.get(key)
            if request is not None:
                request._feed_websocket(kind, body)
        elif kind == b"credit":
            gate = link.gate
            if not sid:
                if not gate.granting:
                    log.info("gateway %s grants credit: per-session flow control on", link.describe())
                gate.acknowledged()
            elif len(body) == 4 and gate.granting:
                self._queue_released(link, gate.grant(sid, int.from_bytes(body, "big")))
            else:
                self.stats["dropped"] += 1
        elif kind == b"end":
            self._drop_held(link.gate.ended(sid))
            request = self._sessions.pop(key, None)
            if request is not None:
                request._session_ended()
        else:
            self.stats["dropped"] += 1
            log.debug("dropped a message of unknown type %r", kind)

    def _new_request(self, link: Link, sid: bytes, packet: bytes) -> None:
        try:
            env = uwsgi.decode(packet)
        except uwsgi.UwsgiError as exc:
            self.stats["dropped"] += 1
            log.warning("undecodable uwsgi packet (%s); ending the session", exc)
            self._send_now(link, [sid, b"end", b""])
            return
        key = (link, sid)
        link.gate.new_request(sid)
        previous = self._sessions.pop(key, None)
        if previous is not None and not previous.finished:
            log.debug("%r replaced by a new request on the same session", previous)
        if self._state != "running":
            # Stopping: hand the request to another node of the vhost (502 if there is none).
            self.stats["retried_while_draining"] += 1
            self._send_now(link, [sid, b"retry", b""])
            return
        request = Request(self, link, sid, env)
        self._sessions[key] = request
        self.stats["requests"] += 1
        with self._flight_lock:
            self._active.add(request)
        self._work.put(request)

    def _monitor_event(self, link: Link, mon: "zmq.Socket[bytes]") -> None:
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                event = recv_monitor_message(mon, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event.get("event")
            if kind is not None and kind & _workers.HANDSHAKE_FAILED:
                # libzmq retries every RECONNECT_IVL: warn once until a handshake succeeds, not each time.
                if not link.handshake_warned:
                    link.handshake_warned = True
                    hint = ("check server_key (the gateway's public key) and that the gateway lists this node's "
                            "public key" if self.curve is not None else
                            "does the gateway require CURVE (curve_key/server_key)?")
                    log.warning("node %s: handshake with %s failed (%s); retrying", self.identity.decode(
                        errors="replace"), link.describe(), hint)
                else:
                    log.debug("handshake with %s failed again", link.describe())
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                link.handshake_warned = False
                # The worker count is read again from this connection's first message: a gateway that
                # restarted may have another.
                link.state = LinkState.LEARNING
                self._publish_links()
                log.info("node %s connected to %s", self.identity.decode(errors="replace"), link.describe())
                # Announce ourselves: an instance identity (NODE#x) is unknown to the gateway until it
                # hears from it, and a restarted gateway has forgotten it.
                self._send_now(link, [b"", b"pong", _credit.ANNOUNCEMENT if self.credit else b""])
            elif kind == zmq.EVENT_DISCONNECTED:
                # Also reported after every failed handshake: only the loss of a working connection is news.
                if link.state.handshaken:
                    log.warning("node %s lost its connection to %s; reconnecting",
                                self.identity.decode(errors="replace"), link.describe())
                    link.state = LinkState.RECONNECTING
                    self._publish_links()
                # The sessions of that connection are gone; the next one announces credit again.
                self._drop_held(link.gate.reset())

    def _drain_finished(self) -> bool:
        """While draining: True when nothing is in flight any more, or the deadline has passed (then the
        remaining sessions are ended); the pending output is flushed before returning True."""
        with self._flight_lock:
            active = list(self._active)
        if active and time.monotonic() < self._deadline:
            return False
        for request in active:
            if not request.finished and not request.closed:
                log.warning("%s %s still running at shutdown; ending its session", request.method, request.path)
                self._send_now(request._link, [request.sid, b"end", b""])
            request._session_ended()
        self._take_outbound()
        flush_deadline = time.monotonic() + self.linger
        while any(link.pending for link in self._all_links()) and time.monotonic() < flush_deadline:
            self._flush()
            if any(link.pending for link in self._all_links()):
                time.sleep(0.01)
        return True
