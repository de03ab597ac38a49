"""A BlastBeat node as a separate process, for tests that kill a node with SIGKILL.

Answers every request with ``200``, ``X-Node: NODE`` and the body ``NODE PATH_INFO`` after ``--delay``
seconds (request bodies are read up to the end-of-body marker first). Prints ``READY`` on stdout once the
gateway has pinged it. Exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import Backend, HTTPHandler, respond  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connect", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    backend: Backend | None = None

    def app(req, send):
        body = f"{args.node} {req.path}".encode()

        def answer():
            respond(send, req.sid, body, headers=[("X-Node", args.node)])

        if args.delay > 0:
            backend.call_later(args.delay, answer)
        else:
            answer()

    backend = Backend(args.connect, args.node, handler=HTTPHandler(app)).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        backend.wait_for(lambda: backend.messages(b"ping"), timeout=30, what="first ping")
    except TimeoutError:
        print("NO PING", flush=True)
        backend.stop()
        sys.exit(1)
    print("READY", flush=True)
    while not done.wait(0.2):
        pass
    backend.stop()


if __name__ == "__main__":
    main()
