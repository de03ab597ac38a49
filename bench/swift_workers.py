#!/usr/bin/env python3
"""What a connection per gateway worker saves a Swift SDK node (issue #18, README.md "Backend libraries"): the
gateway with ``workers = 2`` in front of one ``swift-hello`` built from this tree (a connection per worker: no
request crosses the worker mesh) against one built from an older tree (one connection: the other worker's requests
are forwarded through the worker holding it). Same gateway binary, same load, interleaved rounds (new, old, ...).

Per round: ``wrk -t1 -c50`` GETs for SECONDS (keep-alive, or ``Connection: close``: wrk opens its 50 keep-alive
connections in one burst, which one worker may accept whole, while new connections spread over both); requests/s,
the gateway workers' CPU per request (their utime + stime from /proc), the node's own, the mesh-forwarded messages
per request (``blastbeat_worker_mesh_forwarded_messages_total``) and the busier worker's share of the requests.
Prints each round and the medians.

    python3 bench/swift_workers.py GATEWAY_BIN NEW_SWIFT_HELLO OLD_SWIFT_HELLO [keepalive|close] [ROUNDS] [SECONDS]

e.g. ``.build/release/blastbeat .build/release/swift-hello /tmp/old/.build/release/swift-hello close 3 5``, with
the old tree from ``git archive <commit> | tar -x -C /tmp/old`` and ``swift build -c release --product swift-hello``.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "IntegrationTests"))
from helpers import Gateway, free_port, http_request, wait_until  # noqa: E402
from test_metrics import scrape  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def round_of(gateway_bin: str, node_bin: str, scenario: str, seconds: int, workdir: Path) -> dict:
    gw = Gateway(workdir, vhosts={"localhost": {"nodes": ["NODE1"], "default": True}},
                 options={"workers": 2, "admin": f"127.0.0.1:{free_port()}", "access-log": None})
    gw.binary = gateway_bin
    gw.start()
    node = subprocess.Popen([node_bin, "--connect", gw.endpoint, "--node", "NODE1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(gw.worker_pids()) == 2, 10, what="two workers")
        wait_until(lambda: all(http_request(gw.port).status == 200 for _ in range(8)), 10, interval=0.1,
                   what="the node serving")
        time.sleep(1.5)  # a second connection, if the node opens one, is in place
        pids = gw.worker_pids()
        before, cpu_before, node_before = scrape(gw), cpu_seconds(pids), cpu_seconds([node.pid])
        close = ["-H", "Connection: close"] if scenario == "close" else []
        out = subprocess.run(["wrk", "-t1", "-c50", *close, f"-d{seconds}s", f"http://127.0.0.1:{gw.port}/"],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
        cpu = cpu_seconds(pids) - cpu_before
        node_cpu = cpu_seconds([node.pid]) - node_before
        after = scrape(gw)
        if "Non-2xx" in out:
            raise RuntimeError(f"the node did not answer every request:\n{out}")
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        at = [after.value("blastbeat_requests_total", worker=str(w)) - before.value("blastbeat_requests_total",
                                                                                   worker=str(w)) for w in (0, 1)]
        forwarded = after.value("blastbeat_worker_mesh_forwarded_messages_total") - \
            before.value("blastbeat_worker_mesh_forwarded_messages_total")
        return {"rps": requests / seconds, "cpu_us": cpu / requests * 1e6, "node_us": node_cpu / requests * 1e6,
                "forwarded": forwarded / requests, "share": max(at) / max(1, sum(at))}
    finally:
        node.terminate()
        node.wait(10)
        gw.stop()


def main() -> None:
    gateway_bin, new_bin, old_bin = (str(Path(p).resolve()) for p in sys.argv[1:4])
    scenario = sys.argv[4] if len(sys.argv) > 4 else "keepalive"
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    seconds = int(sys.argv[6]) if len(sys.argv) > 6 else 5
    results: dict[str, list[dict]] = {"per-worker": [], "one connection": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            for name, binary in (("per-worker", new_bin), ("one connection", old_bin)):
                r = round_of(gateway_bin, binary, scenario, seconds, Path(tmp) / f"{name.replace(' ', '-')}-{n}")
                results[name].append(r)
                print(f"round {n + 1} {name:15} {r['rps']:9.0f} req/s  {r['cpu_us']:6.1f} µs gateway CPU/request  "
                      f"{r['node_us']:5.1f} µs node CPU/request  {r['forwarded']:.2f} mesh messages/request  "
                      f"busier worker {r['share']:.0%}", flush=True)
    for name, rs in results.items():
        print(f"median {name:15} {statistics.median(r['rps'] for r in rs):9.0f} req/s  "
              f"{statistics.median(r['cpu_us'] for r in rs):6.1f} µs gateway CPU/request  "
              f"{statistics.median(r['node_us'] for r in rs):5.1f} µs node CPU/request  "
              f"{statistics.median(r['forwarded'] for r in rs):.2f} mesh messages/request")


if __name__ == "__main__":
    main()
