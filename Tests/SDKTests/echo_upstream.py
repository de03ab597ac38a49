"""A small HTTP/1.1 upstream for the bridge tests (http.server, one thread per connection, keep-alive).

    python echo_upstream.py PORT

Routes: ``/echo`` (any method: the request as JSON: method, target, headers, body digest, client port),
``/stream`` (a chunked response written piece by piece), ``/hop`` (hop-by-hop response headers),
``/cookies`` (two Set-Cookie lines), ``/close`` (``Connection: close``), ``/no-length`` (body ended by close),
``/truncated`` (closes 90 bytes short of its Content-Length), ``/stream-cut`` (a chunked body cut off).
Prints ``READY`` once listening.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream: " + (fmt % args) + "\n")

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(length) if length else b""

    def send_json(self, obj, status=200, extra=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        url = urlsplit(self.path)
        if url.path == "/echo" or url.path.startswith("/prefix/"):
            body = self.read_body()
            self.send_json({
                "method": self.command, "target": self.path, "headers": [[k, v] for k, v in self.headers.items()],
                "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "body": body.decode("latin-1") if len(body) < 200 else None,
                "client_port": self.client_address[1],
            }, status=int(parse_qs(url.query).get("status", ["200"])[0]))
        elif url.path == "/stream":
            query = parse_qs(url.query)
            n, delay = int(query.get("n", ["3"])[0]), float(query.get("delay", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                piece = f"piece {i}\n".encode()
                self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/hop":
            self.send_json({"ok": True}, extra=[("Connection", "keep-alive, X-Private"), ("X-Private", "secret"),
                                                ("Keep-Alive", "timeout=5"), ("X-Public", "visible")])
        elif url.path == "/cookies":
            self.send_json({"ok": True}, extra=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
        elif url.path == "/close":
            self.send_json({"client_port": self.client_address[1]}, extra=[("Connection", "close")])
            self.close_connection = True
        elif url.path == "/stream-cut":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nfirst\r\n")
            self.wfile.flush()
            self.close_connection = True
        elif url.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"only ten b")
            self.wfile.flush()
            self.close_connection = True
        elif url.path == "/no-length":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the upstream closes")
            self.close_connection = True
        else:
            self.send_json({"error": "not found"}, status=404)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
