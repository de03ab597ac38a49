"""Serve a WSGI application (PEP 3333) as a BlastBeat node.

    python -m blastbeat.wsgi module:app --connect tcp://127.0.0.1:5000 --node NAME [--threads N]
        [--instance SUFFIX | --plain-identity] [--curve-key FILE --server-key KEY]

``module:app`` names the application object (``module:create_app()`` calls a factory; ``module`` alone
means ``module:application``). The current directory is importable, as with ``python -m``.

What the application gets:

* ``environ``: every variable of the gateway's uwsgi packet (``REQUEST_METHOD``, ``PATH_INFO``
  percent-decoded, ``QUERY_STRING``, ``CONTENT_TYPE``/``CONTENT_LENGTH``, ``SERVER_NAME``/``SERVER_PORT``,
  ``REMOTE_ADDR``/``REMOTE_PORT``, ``REQUEST_URI``, ``HTTP_*``...), ``wsgi.url_scheme`` from
  ``UWSGI_SCHEME``, ``wsgi.input`` streaming the body as it arrives (``read(n)``, ``readline``, iteration;
  ``wsgi.input_terminated`` is true, so chunked uploads without a length work), ``wsgi.errors`` (standard
  error), ``wsgi.multithread``, ``wsgi.file_wrapper``, and ``blastbeat.request`` (the
  :class:`blastbeat.Request`, e.g. for WebSocket messages).
* ``start_response`` follows PEP 3333: the head goes out with the first non-empty body bytes (or when the
  iterable is exhausted), so ``exc_info`` can still replace the status until then; after that it re-raises.
* Framing: a ``Content-Length`` from the app is kept; a list or tuple body gets one computed; otherwise the
  response is streamed in ``chunk`` messages with ``Transfer-Encoding: chunked`` (HTTP/1.1 clients) and an
  empty chunk at the end. HEAD responses carry no body.
* ``close()`` of the returned iterable is always called, also when the client goes away mid-stream.
* An exception gives the client a 500 (or a closed connection if the head was already sent); the worker
  thread goes on with the next request.

SIGTERM or SIGINT stops gracefully: requests in flight get ``--graceful-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union
from wsgiref.util import FileWrapper

from . import _cli, _http
from .node import Node, Request

__all__ = ["WSGIServer", "WSGIHandler", "make_environ", "load_app", "main"]

log = logging.getLogger("blastbeat.wsgi")

ExcInfo = Tuple[Type[BaseException], BaseException, Optional[TracebackType]]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]

SERVER_SOFTWARE = "blastbeat-python-wsgi/0.1"


def make_environ(request: Request, *, multithread: bool = True, multiprocess: bool = False,
                 script_name: str = "", errors: Any = None) -> Dict[str, Any]:
    """The PEP 3333 environ for ``request``.

    ``script_name`` is a mount prefix: removed from the start of ``PATH_INFO`` and put in ``SCRIPT_NAME``.
    """
    env: Dict[str, Any] = dict(request.env)
    # PEP 3333: the body headers are CONTENT_TYPE / CONTENT_LENGTH, never HTTP_CONTENT_*.
    for key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        value = env.pop(key, None)
        if value is not None:
            env.setdefault(key[5:], value)
    if env.get("CONTENT_LENGTH", None) == "":
        del env["CONTENT_LENGTH"]
    scheme = env.get("UWSGI_SCHEME") or ("https" if env.get("HTTPS", "").lower() in ("on", "1") else "http")
    env.setdefault("REQUEST_METHOD", "GET")
    env.setdefault("SCRIPT_NAME", "")
    env.setdefault("PATH_INFO", "")
    env.setdefault("QUERY_STRING", "")
    env.setdefault("SERVER_PROTOCOL", "HTTP/1.1")
    if not env.get("SERVER_NAME"):
        host = env.get("HTTP_HOST", "")
        env["SERVER_NAME"] = (host.rsplit(":", 1)[0] if host.count(":") == 1 else host) or "localhost"
    if not env.get("SERVER_PORT"):
        env["SERVER_PORT"] = "443" if scheme == "https" else "80"
    if script_name:
        prefix = "/" + script_name.strip("/")
        path = env["PATH_INFO"]
        if path == prefix or path.startswith(prefix + "/"):
            env["SCRIPT_NAME"] = prefix
            env["PATH_INFO"] = path[len(prefix):]
    env.update({
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": request.input,
        "wsgi.input_terminated": True,
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "blastbeat.request": request,
    })
    return env


class WSGIHandler:
    """A :class:`blastbeat.Node` handler that runs a WSGI application for each request."""

    def __init__(self, app: WSGIApp, *, multithread: bool = True, multiprocess: bool = False,
                 script_name: str = "", errors: Any = None) -> None:
        self.app = app
        self.multithread = multithread
        self.multiprocess = multiprocess
        self.script_name = script_name
        self.errors = errors

    def __call__(self, request: Request) -> None:
        environ = make_environ(request, multithread=self.multithread, multiprocess=self.multiprocess,
                               script_name=self.script_name, errors=self.errors)
        status: List[str] = []
        headers: List[Tuple[str, str]] = []

        def write(data: bytes) -> None:
            """The legacy write() callable returned by start_response: sends at once."""
            if not status:
                raise AssertionError("write() before start_response()")
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
            request.write(bytes(data))

        def start_response(status_text: str, response_headers: List[Tuple[str, str]],
                           exc_info: Optional[ExcInfo] = None) -> Callable[[bytes], None]:
            if exc_info is not None:
                try:
                    if request.response_started:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None  # no reference cycle through the traceback
            elif status:
                raise AssertionError("start_response() called a second time without exc_info")
            if not isinstance(status_text, str):
                raise TypeError(f"status must be str, not {type(status_text).__name__}")
            if not isinstance(response_headers, list) or not all(
                    isinstance(h, tuple) and len(h) == 2 and isinstance(h[0], str) and isinstance(h[1], str)
                    for h in response_headers):
                raise TypeError("response headers must be a list of (str, str) tuples")
            request.start(status_text, response_headers, replace=True)
            status[:] = [status_text]
            headers[:] = response_headers
            return write

        result = self.app(environ, start_response)
        try:
            if (status and not request.response_started and isinstance(result, (list, tuple))
                    and request.method != "HEAD" and request.status not in (204, 304)
                    and _http.content_length(headers) is None
                    and not _http.is_chunked(headers)):
                total = sum(len(piece) for piece in result)
                request.start(status[0], headers + [("Content-Length", str(total))], replace=True)
            for data in result:
                if not isinstance(data, (bytes, bytearray)):
                    raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
                if not data:
                    continue
                if not status:
                    raise AssertionError("the application yielded body data before calling start_response()")
                request.write(bytes(data))
            if not status:
                raise AssertionError("the application returned without calling start_response()")
            request.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


class WSGIServer:
    """A WSGI application served by a :class:`blastbeat.Node` (the node's options are keyword arguments)."""

    def __init__(self, app: WSGIApp, connect: Union[str, Sequence[str]], node: str, *, script_name: str = "",
                 multiprocess: Optional[bool] = None, **node_options: Any) -> None:
        self.node = Node(connect, node, None, **node_options)
        # wsgi.multiprocess: an instance identity (the default) lets other processes serve the same node at
        # the same time; only a plain identity is held by one process at a time.
        self.handler = WSGIHandler(app, multithread=self.node.threads > 1,
                                   multiprocess=(self.node.instance is not None) if multiprocess is None
                                   else multiprocess,
                                   script_name=script_name)
        self.node.handler = self.handler

    def start(self) -> "WSGIServer":
        self.node.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        self.node.stop(timeout)

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        self.node.run()


def load_app(spec: str) -> WSGIApp:
    """Import ``module:attr`` (``module:factory()`` calls a factory; ``module`` means ``module:application``)."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "application"
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if call:
        obj = obj()
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj  # type: ignore[no-any-return]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blastbeat.wsgi",
                                     description="Serve a WSGI application as a BlastBeat node.")
    parser.add_argument("app", metavar="MODULE:APP", help="the WSGI application, e.g. myproject.wsgi:application")
    parser.add_argument("--script-name", default="", metavar="PREFIX",
                        help="mount prefix moved from PATH_INFO to SCRIPT_NAME (default: none)")
    parser.add_argument("--chdir", default=None, metavar="DIR", help="change to DIR and import from there")
    _cli.add_node_arguments(parser)
    args = parser.parse_args(argv)
    _cli.configure_logging(args.log_level)
    if args.chdir:
        import os

        os.chdir(args.chdir)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    app = load_app(args.app)
    kwargs = _cli.node_kwargs(args)
    try:
        server = WSGIServer(app, kwargs.pop("connect"), kwargs.pop("node"), script_name=args.script_name,
                            **kwargs)
    except ValueError as exc:  # a bad key file or option combination: a usage error, not a traceback
        parser.error(str(exc))
    log.info("serving %s as node %s", args.app, server.node.node)  # the identity: logged by Node.start
    server.run()


if __name__ == "__main__":
    main()
