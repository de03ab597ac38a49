#!/usr/bin/env python3
"""Open many backend connections to a gateway's ROUTER and keep them open: the `many-tenants` scenario's
crowd of tenants' nodes (bench/README.md). Each connection completes the ZMTP 3.1 NULL handshake as a DEALER
with identity PREFIX<i> (a node some vhost lists) and then only reads and discards what the gateway sends (its
pings). Prints `ready N` once all N are connected, and runs until killed.

Written by hand instead of with pyzmq so that thousands of connections cost one thread and one epoll set.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import sys
import time


def greeting() -> bytes:
    """Signature, version 3.1, mechanism NULL, as-server 0, filler (RFC 23, ZMTP 3.1)."""
    return b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + bytes([0]) + bytes(31)


def ready(identity: bytes) -> bytes:
    """The READY command with Socket-Type DEALER and Identity."""
    def prop(name: bytes, value: bytes) -> bytes:
        return bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value
    body = bytes([5]) + b"READY" + prop(b"Socket-Type", b"DEALER") + prop(b"Identity", identity)
    return bytes([0x04, len(body)]) + body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--prefix", default="tenant")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for all handshakes")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))

    sel = selectors.DefaultSelector()
    pending = {}  # socket -> bytes still expected of the handshake (the server's greeting and READY)
    deadline = time.monotonic() + args.timeout
    connected = 0
    # In batches, so the gateway's cap on connections still in their handshake (1,024) is never the limit.
    for start in range(0, args.count, 200):
        for i in range(start, min(args.count, start + 200)):
            s = socket.create_connection((args.host, args.port), timeout=10)
            s.sendall(greeting() + ready(f"{args.prefix}{i}".encode()))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            pending[s] = 64  # the server's greeting; its READY follows and is read with the rest
        while pending:
            if time.monotonic() > deadline:
                print(f"only {connected} of {args.count} handshakes completed", file=sys.stderr)
                return 1
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    print(f"the gateway closed connection {connected} (refused?)", file=sys.stderr)
                    return 1
                if s in pending:
                    pending[s] -= len(data)
                    if pending[s] < 0:  # greeting done and the READY (or more) arrived
                        del pending[s]
                        connected += 1
    print(f"ready {connected}", flush=True)
    while True:  # discard pings; a closed connection ends the swarm (the bench notices)
        for key, _ in sel.select(timeout=5.0):
            try:
                if not key.fileobj.recv(65536):
                    print("the gateway closed a connection", file=sys.stderr)
                    return 1
            except BlockingIOError:
                pass


if __name__ == "__main__":
    sys.exit(main())
