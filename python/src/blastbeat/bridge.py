"""Put an existing HTTP server behind BlastBeat: a node that forwards every request to it.

    python -m blastbeat.bridge --connect tcp://127.0.0.1:5000 --node NAME --upstream http://127.0.0.1:8000
        [--instance SUFFIX | --plain-identity] [--curve-key FILE --server-key KEY]

Each request goes to the upstream over a pool of keep-alive connections (``http.client``), streaming both
ways: the request body is sent as it arrives from the gateway (with its ``Content-Length``, or chunked when
the client's length is unknown), and the response body is sent back as it arrives from the upstream.

Headers: hop-by-hop fields (``Connection`` and the fields it lists, ``Keep-Alive``, ``Transfer-Encoding``,
``TE``, ``Trailer``, ``Upgrade``, ``Proxy-*``) are removed in both directions, and ``Expect`` too (the
gateway has answered it). ``X-Forwarded-For`` (the client address appended), ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` are set. The client's ``Host`` is passed on (``--upstream-host`` sends the upstream's
instead).

An upstream that cannot be reached or fails before answering gives the client 502 (504 on a timeout); one
that fails mid-response gets the client connection closed.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import select
import socket
import threading
from typing import Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit

from . import _cli, _http
from .node import ClientDisconnected, Node, Request

__all__ = ["HTTPBridge", "UpstreamPool", "main"]

log = logging.getLogger("blastbeat.bridge")

#: Request body bytes kept so a request can be resent when a pooled connection turns out to be dead.
REPLAY_LIMIT = 1 << 20


class UpstreamPool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    def __init__(self, scheme: str, host: str, port: int, *, timeout: float, size: int) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.timeout = timeout
        self.size = size
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def new(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def acquire(self) -> Tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was reused. Idle connections the upstream has closed are skipped."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.new(), False
            if conn.sock is not None and not _readable(conn.sock):
                return conn, True
            conn.close()  # EOF or unexpected bytes: the upstream is done with it

    def release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if conn.sock is not None and len(self._idle) < self.size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class _UpstreamFailed(Exception):
    """The upstream failed before any response byte; ``retryable`` when nothing was lost."""

    def __init__(self, cause: BaseException, retryable: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retryable = retryable


class HTTPBridge:
    """A :class:`blastbeat.Node` handler forwarding requests to ``upstream`` (``http://host:port[/prefix]``)."""

    def __init__(self, upstream: str, *, timeout: float = 60.0, pool_size: int = 8,
                 preserve_host: bool = True) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be http://HOST[:PORT][/PREFIX] or https://..., not {upstream!r}")
        self.upstream = upstream
        self.prefix = parts.path.rstrip("/")
        self.netloc = parts.netloc
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.pool = UpstreamPool(parts.scheme, parts.hostname, port, timeout=timeout, size=pool_size)
        self.preserve_host = preserve_host

    # -- request ------------------------------------------------------------------------------------------

    def target(self, request: Request) -> str:
        """The upstream request target: the prefix, then the client's raw path and query."""
        raw = request.env.get("REQUEST_URI", "")
        if raw.startswith("/"):
            path = raw
        elif raw.lower().startswith(("http://", "https://")):
            parts = urlsplit(raw)
            path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        elif raw == "*" and not self.prefix:
            return "*"
        else:
            path = quote(request.path, safe="/%;:@&=+$,!~*'()") or "/"
            if request.query_string:
                path += "?" + request.query_string
        return self.prefix + path

    def upstream_headers(self, request: Request) -> List[Tuple[str, str]]:
        """The request headers for the upstream: hop-by-hop removed, X-Forwarded-* added."""
        env = request.env
        listed = set(_http.connection_tokens(env.get("HTTP_CONNECTION")))
        drop = _http.HOP_BY_HOP | listed | {"expect", "host", "content-length", "content-type",
                                             "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
        headers: List[Tuple[str, str]] = []
        for key, value in env.items():
            if not key.startswith("HTTP_"):
                continue
            name = key[5:].replace("_", "-").title()
            if name.lower() in drop:
                continue
            headers.append((name, value))
        host = env.get("HTTP_HOST", "")
        headers.insert(0, ("Host", host if (self.preserve_host and host) else self.netloc))
        if env.get("CONTENT_TYPE"):
            headers.append(("Content-Type", env["CONTENT_TYPE"]))
        if request.has_body:
            length = request.content_length
            if length is not None:
                headers.append(("Content-Length", str(length)))
            else:
                headers.append(("Transfer-Encoding", "chunked"))
        elif request.method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", "0"))
        client = env.get("REMOTE_ADDR", "")
        previous = env.get("HTTP_X_FORWARDED_FOR", "")
        if client:
            headers.append(("X-Forwarded-For", f"{previous}, {client}" if previous else client))
        elif previous:
            headers.append(("X-Forwarded-For", previous))
        headers.append(("X-Forwarded-Proto", env.get("UWSGI_SCHEME") or "http"))
        if host:
            headers.append(("X-Forwarded-Host", env.get("HTTP_X_FORWARDED_HOST") or host))
        return headers

    # -- handler ------------------------------------------------------------------------------------------

    def __call__(self, request: Request) -> None:
        if request.is_websocket:
            log.warning("%s %s: the HTTP bridge does not forward WebSocket sessions; refused",
                        request.method, request.path)
            request.reject_websocket(501, "the HTTP bridge does not forward WebSocket sessions\n")
            return
        target = self.target(request)
        headers = self.upstream_headers(request)
        chunked = request.has_body and request.content_length is None
        replay: List[bytes] = []
        replay_ok = [True]
        body_stream = request.iter_body() if request.has_body else iter(())

        def body_pieces(replaying: bool) -> Iterator[bytes]:
            if replaying:
                yield from replay
            for piece in body_stream:
                if replay_ok[0]:
                    replay.append(piece)
                    if sum(len(p) for p in replay) > REPLAY_LIMIT:
                        replay.clear()
                        replay_ok[0] = False
                yield piece

        attempt = 0
        while True:
            conn, reused = self.pool.acquire()
            try:
                response = self._exchange(conn, request.method, target, headers, body_pieces(attempt > 0),
                                          chunked)
                break
            except _UpstreamFailed as failure:
                conn.close()
                if reused and failure.retryable and replay_ok[0] and attempt == 0:
                    attempt += 1
                    log.debug("pooled upstream connection was dead (%s); retrying on a new one", failure)
                    continue
                self._fail(request, failure.cause)
                return
        self._relay(request, conn, response)

    def _exchange(self, conn: http.client.HTTPConnection, method: str, target: str,
                  headers: List[Tuple[str, str]], body: Iterator[bytes], chunked: bool) -> http.client.HTTPResponse:
        """Send the request (streaming the body) and read the response head."""
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            for piece in body:
                if piece:
                    conn.send(b"%X\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
            return conn.getresponse()
        except ClientDisconnected:
            conn.close()
            raise
        except (TimeoutError, socket.timeout) as exc:
            raise _UpstreamFailed(exc, retryable=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            # A stale keep-alive connection fails with a reset/closed error before any response byte.
            stale = isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected))
            raise _UpstreamFailed(exc, retryable=stale) from exc

    def _relay(self, request: Request, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        """Send the upstream's response to the client as it arrives."""
        listed = set(_http.connection_tokens(response.getheader("Connection")))
        headers = [(k, v) for k, v in response.getheaders()
                   if k.lower() not in _http.HOP_BY_HOP and k.lower() not in listed]
        if response.chunked or response.getheader("Transfer-Encoding"):
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        released = False
        try:
            request.start(f"{response.status} {response.reason}".strip(), headers)
            while True:
                data = response.read1(65536)  # what has arrived, up to 64 KiB: streams slow upstreams
                if not data:
                    break
                request.write(data)
            if response.length:  # read1 reports a premature close as a plain end of data
                raise http.client.IncompleteRead(b"", response.length)
            reusable = not response.will_close
            response.close()  # releases the connection for the next request (http.client needs this)
            if reusable:
                # Back in the pool before the response completes: the client may send its next request as soon
                # as it has this one, and that request should find the connection idle, not open another.
                self.pool.release(conn)
                released = True
            request.finish()
        except ClientDisconnected:
            raise
        except (OSError, http.client.HTTPException) as exc:
            log.warning("upstream %s failed mid-response: %r; closing the client connection", self.upstream, exc)
            request.abort()
        finally:
            if not released:
                conn.close()

    def _fail(self, request: Request, cause: BaseException) -> None:
        timeout = isinstance(cause, (TimeoutError, socket.timeout))
        status = 504 if timeout else 502
        log.warning("upstream %s: %s %s failed: %r", self.upstream, request.method, request.path, cause)
        text = f"{'Gateway Timeout' if timeout else 'Bad Gateway'}: upstream {self.upstream} " \
               f"{'did not answer in time' if timeout else 'is unreachable or failed'}\n"
        if request.response_started or request.finished:
            request.abort()
            return
        request.respond(status, [("Content-Type", "text/plain; charset=utf-8")], text)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blastbeat.bridge",
                                     description="Forward BlastBeat requests to an HTTP server.")
    parser.add_argument("--upstream", required=True, metavar="URL",
                        help="the HTTP server to forward to, e.g. http://127.0.0.1:8000 (an optional path is "
                             "prefixed to every request)")
    parser.add_argument("--upstream-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="connect/read timeout for the upstream (default 60)")
    parser.add_argument("--upstream-host", action="store_true",
                        help="send the upstream's host:port as Host instead of the client's Host")
    _cli.add_node_arguments(parser)
    args = parser.parse_args(argv)
    _cli.configure_logging(args.log_level)
    kwargs = _cli.node_kwargs(args)
    try:
        bridge = HTTPBridge(args.upstream, timeout=args.upstream_timeout, pool_size=max(1, args.threads),
                            preserve_host=not args.upstream_host)
        node = Node(kwargs.pop("connect"), kwargs.pop("node"), bridge, **kwargs)
    except ValueError as exc:  # a bad upstream URL, key file or option combination: a usage error
        parser.error(str(exc))
    log.info("forwarding node %s to %s", node.node, args.upstream)  # the identity: logged by Node.start
    try:
        node.run()
    finally:
        bridge.pool.close()


if __name__ == "__main__":
    main()
