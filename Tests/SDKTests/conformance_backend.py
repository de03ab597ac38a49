"""The scripted exchanges of test_sdk_conformance.py on the Python SDK (``blastbeat.Node``).

ConformanceBackend/main.swift is the same script on the Swift SDK; the test runs both behind the gateway and
compares what the clients receive. Keep the two in step: one route here, one route there.

    python conformance_backend.py --connect ENDPOINT --node NAME
"""

from __future__ import annotations

import argparse
import logging

from blastbeat import Node, Request

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


class ScriptedFailure(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", action="append", required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    node_name = args.node

    def handler(req: Request) -> None:
        if req.is_websocket:
            for message in req.websocket_messages():
                if message == "close":
                    req.close_websocket(4000, "bye")
                    return
                if message == "raise":
                    raise ScriptedFailure()
                req.send_websocket(message)
            return
        body = req.read()
        path = req.path
        if path == "/length":
            req.respond(200, TEXT, "length body\n")
        elif path == "/unframed":
            req.start(200, TEXT)
            req.write(b"one\n")
            req.write(b"two\n")
            req.finish()
        elif path == "/chunked":
            req.start(200, TEXT + [("Transfer-Encoding", "chunked")])
            req.write(b"one\n")
            req.write(b"two\n")
            req.finish()
        elif path == "/chunk-messages":
            req.start(200, TEXT)
            req.chunk(b"one\n")
            req.chunk(b"two\n")
            req.finish()
        elif path == "/empty-unframed":
            req.start(200, TEXT)
            req.send_head()
            req.finish()
        elif path == "/no-content":
            req.respond(204)
        elif path == "/interim":
            req.send_interim(103, [("Link", "</style.css>; rel=preload")])
            req.respond(200, TEXT, "final\n")
        elif path == "/interim-101":
            req.send_interim(101, [("Upgrade", "websocket")])
        elif path == "/respond-1xx":
            req.respond(103, TEXT, "not final\n")
        elif path == "/echo":
            req.respond(200, [("Content-Type", req.headers.get("content-type", "application/octet-stream"))], body)
        elif path == "/raise":
            raise ScriptedFailure()
        elif path == "/raise-after-head":
            req.start(200, TEXT)
            req.write(b"partial\n")
            raise ScriptedFailure()
        elif path == "/end-chunked":
            req.start(200, TEXT + [("Transfer-Encoding", "chunked")])
            req.write(b"one\n")
            req.end()
        elif path == "/end-length-short":
            req.start(200, TEXT + [("Content-Length", "10")])
            req.write(b"short\n")
            req.finish()
        elif path == "/retry":
            if node_name == "first":
                req.retry()
                return
            req.respond(200, TEXT, f"answered by {node_name}: {req.method} {path}, {len(body)} body bytes\n")
        else:
            req.respond(404, TEXT, f"no route {path}\n")

    Node(args.connect, node_name, handler).run()


if __name__ == "__main__":
    main()
