"""The memory budget (`max-buffered`, issue #15): what the gateway holds for slow clients stays under the budget
plus a fixed base whatever its backends send, and bodies still arrive whole. These tests use a node that does not
take credit (raw pyzmq), so the budget is kept by the fallback: the node's connection is not read at the budget
and is read again below three quarters of it (README, "Memory budget"). Credit is in test_sdk_credit.py."""

from __future__ import annotations

import os
import threading
import time

from budget_helpers import BodyReader, RSSSampler, StreamingBackend, expected_digest
from helpers import rss_bytes, wait_until
from test_metrics import admin_options, scrape

MIB = 1 << 20
#: The issue's scenario is 20 readers of 50 MB; BUDGET_BODY_MB scales the bodies down on a slow machine.
BODY = int(float(os.environ.get("BUDGET_BODY_MB", "50")) * 1_000_000)


def budget_options(max_buffered: str, **more) -> dict:
    return admin_options(**{"max-buffered": max_buffered, "body-timeout": "60", "backend-timeout": "60",
                            "ping-freq": "1", "ping-timeout": "5", **more})


def test_twenty_slow_readers_stay_within_the_budget(make_gateway):
    budget = 32 * MIB
    gw = make_gateway(vhosts={"localhost": ["BIG"]}, options=budget_options("32m"))
    backend = StreamingBackend(gw.endpoint, "BIG")
    backend.start()
    try:
        wait_until(lambda: scrape(gw).value("blastbeat_node_instances_connected", node="BIG") == 1, 10, what="node BIG up")
        base = rss_bytes(gw.pid)
        slow = threading.Event()
        slow.set()
        readers = [BodyReader(gw.port, f"127.0.0.{i + 2}", f"/?size={BODY}&seed=r{i}", slow) for i in range(20)]
        sampler = RSSSampler(gw.pid)
        sampler.start()
        for reader in readers:
            reader.start()
        # Slow reading: at 800 KB/s each the clients take far less than the node sends, so without the budget
        # the gateway would queue up to max-output-buffer (64 MiB) for each of them.
        wait_until(lambda: scrape(gw).value("blastbeat_backend_read_pauses_total") >= 1, 20,
                   what="a pause at the budget")
        time.sleep(3)
        during = scrape(gw)
        slow.clear()
        for reader in readers:
            reader.join(180)
        peak = sampler.stop()
        print(f"RSS base {base / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB over {sampler.samples} samples; "
              f"budget {budget / MIB:.0f} MiB; body {BODY} bytes x 20; "
              f"pauses {scrape(gw).value('blastbeat_backend_read_pauses_total')}")
        for i, reader in enumerate(readers):
            assert not reader.error, f"reader {i}: {reader.error}"
            assert (reader.status, reader.length, reader.received) == (200, BODY, BODY), f"reader {i}"
            assert reader.digest == expected_digest(f"r{i}", BODY), f"reader {i}: body differs"
        assert during.value("blastbeat_budget_bytes", part="clients") <= budget + 4 * MIB
        # The fixed base: the idle process, plus what the budget does not count (one message being read from
        # the node, read buffers, allocator slack).
        assert peak <= base + budget + 48 * MIB, f"peak RSS {peak / MIB:.1f} MiB, base {base / MIB:.1f} MiB"
        after = scrape(gw)
        assert after.value("blastbeat_backends_paused") == 0
        assert after.value("blastbeat_budget_bytes", part="clients") == 0
        assert not backend.errors
    finally:
        backend.stop()
