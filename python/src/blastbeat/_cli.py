"""Command-line options shared by ``python -m blastbeat.wsgi`` and ``python -m blastbeat.bridge``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Dict


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """``--connect`` (repeatable), ``--node``, ``--instance`` / ``--plain-identity``, ``--curve-key`` and
    ``--server-key``, ``--threads``, timeouts and ``--log-level``."""
    group = parser.add_argument_group("node")
    group.add_argument("--connect", action="append", metavar="ENDPOINT", required=True,
                       help="a gateway's zmq endpoint, e.g. tcp://127.0.0.1:5000 (repeat for several gateways)")
    group.add_argument("--node", required=True, metavar="NAME",
                       help="the node name listed as `node = NAME` in the gateway's config; the process "
                            "connects as NAME#<pid>-<random> unless --instance or --plain-identity is given")
    identity = group.add_mutually_exclusive_group()
    identity.add_argument("--instance", metavar="SUFFIX", default=None,
                          help="connect as NAME#SUFFIX instead of a unique suffix chosen at start "
                               "(each process of a node needs its own suffix)")
    identity.add_argument("--plain-identity", action="store_true",
                          help="connect as exactly NAME (one process per node name: a second one would take "
                               "the identity over)")
    curve = parser.add_argument_group("CURVE (encrypted, authenticated connections; give both or neither)")
    curve.add_argument("--curve-key", metavar="FILE", default=None,
                       help="this node's secret certificate file (from zmq.auth.create_certificates: "
                            "NAME.key_secret); the gateway lists its public key with node-key")
    curve.add_argument("--server-key", metavar="KEY", default=None,
                       help="the gateway's public key: 40 Z85 characters, or the path of its public "
                            "certificate file")
    group.add_argument("--threads", type=int, default=8, metavar="N",
                       help="worker threads, i.e. requests handled at the same time (default 8)")
    group.add_argument("--graceful-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="on SIGTERM/SIGINT, how long requests in flight may take to finish (default 10)")
    group.add_argument("--body-timeout", type=float, default=120.0, metavar="SECONDS",
                       help="longest wait for request body bytes (default 120)")
    group.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="logging level on standard error (default info)")


def node_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """Keyword arguments for :class:`blastbeat.Node` from the parsed options."""
    if args.threads < 1:
        raise SystemExit("--threads must be at least 1")
    if (args.curve_key is None) != (args.server_key is None):
        raise SystemExit("--curve-key and --server-key go together (the node's secret certificate and the "
                         "gateway's public key)")
    return {
        "connect": args.connect,
        "node": args.node,
        "instance": args.instance,
        "plain_identity": args.plain_identity,
        "curve_key": args.curve_key,
        "server_key": args.server_key,
        "threads": args.threads,
        "graceful_timeout": args.graceful_timeout,
        "body_timeout": args.body_timeout if args.body_timeout > 0 else None,
    }


def configure_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper()),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
