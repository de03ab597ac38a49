"""A blastbeat.Node in its own process, for tests that need several processes (instance suffixes).

Answers every request with 200, ``X-Identity: <identity>`` and the body ``<identity> <PATH_INFO>`` after
``--delay`` seconds. Logs ``node ... connected to ...`` (the SDK's log line) once connected.
"""

from __future__ import annotations

import argparse
import logging
import time

from blastbeat import Node


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", action="append", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--instance", default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    node: Node

    def handler(req):
        if args.delay:
            time.sleep(args.delay)
        ident = node.identity.decode()
        req.respond(200, [("Content-Type", "text/plain"), ("X-Identity", ident)], f"{ident} {req.path}")

    node = Node(args.connect, args.node, handler, instance=args.instance, threads=args.threads)
    node.run()


if __name__ == "__main__":
    main()
