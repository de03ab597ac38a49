"""Free TCP ports for the integration and SDK tests, taken from below the kernel's ephemeral range.

A port the kernel hands out for `bind(port 0)` comes from the ephemeral range, the same range it uses for
the local end of every outgoing connection. Between the moment a test reads such a port and the moment the
gateway binds it, any client, backend or the gateway's own connections may take it as a source port, and a
wildcard bind (`tcp://*:PORT`) then fails with EADDRINUSE. Ports below the range are never used as source
ports, so a port that is free on the wildcard address now stays free unless someone binds it on purpose.
"""

from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(family: int = socket.AF_INET) -> int:
    """A TCP port free on every address of ``family`` a moment ago, below the ephemeral range, and not one
    this process handed out before (a gateway given one port for both `bind` and `bind-ssl` fails)."""
    high = _ephemeral_low() - 1
    low = max(1024, high - 12000)
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for _ in range(200):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # No SO_REUSEADDR: a port still held by anything, even in TIME_WAIT, is skipped.
            try:
                s.bind((wildcard, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high} after 200 tries")
