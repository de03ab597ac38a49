"""BlastBeat for Python: serve HTTP requests from a BlastBeat gateway over ZeroMQ.

* :class:`Node` -- a node process: DEALER sockets to one or several gateways (one per gateway worker), a handler per request in a
  thread pool, streaming request bodies, response helpers, WebSocket messages, ``retry`` and ``end``.
* :mod:`blastbeat.wsgi` -- run any WSGI application: ``python -m blastbeat.wsgi module:app --connect ... --node ...``.
* :mod:`blastbeat.bridge` -- forward requests to an existing HTTP server: ``python -m blastbeat.bridge ...``.
* :mod:`blastbeat.uwsgi` -- the uwsgi packet codec.
"""

from .node import (
    BodyReader,
    BodyTimeout,
    ClientDisconnected,
    ConnectionInfo,
    LinkState,
    Node,
    Request,
    ResponseError,
    request_has_body,
)
from .uwsgi import UwsgiError

__all__ = [
    "Node",
    "Request",
    "ConnectionInfo",
    "LinkState",
    "BodyReader",
    "ClientDisconnected",
    "BodyTimeout",
    "ResponseError",
    "UwsgiError",
    "request_has_body",
    "__version__",
]

__version__ = "0.1.0"
