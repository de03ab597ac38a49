"""Shared pieces of the tenant isolation tests (test_tenant_isolation.py, issue #15): tenant B's latency
measured while tenant A is quiet and while A is flooded, on one gateway.

* ``release_binary()``: latency is measured on the release build (a debug build spends ~10× the CPU per
  request, which would measure the build, not the design), as test_allocations.py does.
* ``Flood``: A's flood, ``flood.c`` (compiled once per session) in a process of its own: as strong as wrk, but
  with a loopback source address per client; its counts and CPU seconds are read back when it stops. It runs at
  nice 19: a real flood comes from other machines, so here it may use the CPU that the gateway, the nodes and the
  measuring client leave, but not take theirs (on 2 cores a flood at equal priority measured the flood's own
  CPU share more than the gateway: B's stalls came and went with the load of other jobs on the box).
* ``measure_b``: B's clients, each request on a new connection (a client that arrives during the flood must
  get in, not only one connected before it), from their own loopback addresses, paced, each timed.
* ``isolation_run``: quiet measurement, flood, flooded measurement, and the verdict of the issue: every B
  request succeeds and B's flooded p99 ≤ 2 × quiet p99 + 50 ms (the allowance is for a 2-core box where the
  flood, the gateway, the nodes and the measuring client share the CPU).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from helpers import HERE, REPO

#: B's clients: their own loopback addresses (A's flood uses 127.0.1.x).
B_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def release_binary() -> str:
    return os.environ.get("BLASTBEAT_RELEASE_BIN", str(REPO / ".build" / "release" / "blastbeat"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_flood_binary: list[str] = []


def flood_binary() -> str:
    """flood.c compiled (once per test session) into a temporary directory."""
    if not _flood_binary:
        out = os.path.join(tempfile.mkdtemp(prefix="bb-flood-"), "flood")
        subprocess.run(["gcc", "-O2", "-Wall", "-o", out, str(HERE / "flood.c")], check=True, timeout=60)
        _flood_binary.append(out)
    return _flood_binary[0]


class Flood:
    """``flood -m MODE -p PORT -c CONNS ...`` started and waited for (READY), stopped with SIGTERM; ``stop``
    returns its JSON summary (answers by status, connections opened, errors, CPU seconds). It starts only when
    ``start`` is called (isolation_run measures B quiet first). ``interval``: the
    seconds between a slowloris's bytes or a held connection's requests; ``ramp``: the longest wait for
    every connection to be established before READY."""

    def __init__(self, mode: str, port: int, conns: int, sources: int = 20, interval: float = 1.0,
                 ramp: float = 8.0, host: str = "a.test"):
        args = [flood_binary(), "-m", mode, "-p", str(port), "-c", str(conns), "-s", str(sources), "-i", str(interval),
                "-r", str(ramp), "-H", host]
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.ready_line = ""

    def start(self, timeout: float = 15.0) -> "Flood":
        """Starts the flood and waits until its connections are open (READY)."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, preexec_fn=lambda: os.nice(19))
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, remaining))
            if not ready:
                self.stop()
                raise TimeoutError(f"flood not ready within {timeout}s")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"flood exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            line += chunk
        self.ready_line = line.decode().strip()
        assert self.ready_line.startswith("READY"), self.ready_line
        return self

    def stop(self) -> dict:
        if self.proc is None:
            return {}
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
        if not lines:
            return {"error": err.decode(errors="replace")[-2000:]}
        return json.loads(lines[-1])


@dataclass
class Latencies:
    """B's requests of one measurement: seconds of each one served, and what went wrong with the others."""

    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: (seconds, seconds of it until connected) of each request: where a slow one waited.
    phases: list[tuple[float, float]] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        if not ordered:
            return float("inf")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p99_ms(self) -> float:
        return self.quantile(0.99) * 1000

    def summary(self) -> str:
        slowest = ", ".join(f"{total * 1000:.0f} ({connect * 1000:.0f})" for total, connect in sorted(self.phases)[-5:])
        return (f"{len(self.seconds)} ok, {len(self.failures)} failed, p50 {self.quantile(0.5) * 1000:.1f} ms, "
                f"p99 {self.p99_ms:.1f} ms, max {max(self.seconds, default=0) * 1000:.1f} ms; "
                f"slowest ms (connecting): {slowest}")


def b_request(port: int, source: str, host: str, expect: bytes, timeout: float) -> tuple[float, float] | str:
    """One GET for ``host`` on a new connection from ``source``: seconds in all and until connected, or what
    went wrong."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as s:
            connected = time.monotonic() - started
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            with s.makefile("rb") as answer:
                data = answer.read()  # up to the gateway's close (Connection: close)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if not data.startswith(b"HTTP/1.1 200 ") or not data.endswith(expect):
        return f"answer {data[:120]!r}"
    return time.monotonic() - started, connected


def measure_b(port: int, duration: float = 4.0, rate: float = 100.0, host: str = "b.test", expect: bytes = b"",
              timeout: float = 10.0, sources: tuple[str, ...] = B_SOURCES) -> Latencies:
    """B's clients for ``duration`` seconds: one thread per address of ``sources``, together ``rate`` requests
    per second, each on a new connection and timed (also bench/noisy_neighbour.py's B). Pacing is by schedule, so a slow answer is not hidden
    by the next request starting late (it starts at once, and its own time counts)."""
    result = Latencies()
    lock = threading.Lock()

    def client(source: str) -> None:
        interval = len(sources) / rate
        next_at = time.monotonic()
        deadline = next_at + duration
        while next_at < deadline:
            outcome = b_request(port, source, host, expect, timeout)
            with lock:
                if isinstance(outcome, tuple):
                    result.seconds.append(outcome[0])
                    result.phases.append(outcome)
                else:
                    result.failures.append(outcome)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=client, args=(source,), daemon=True) for source in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout + 5)
    return result


def isolation_run(gw, flood: Flood, settle: float = 2.0, duration: float = 4.0, rate: float = 100.0,
                  expect: bytes = b"BETA /") -> dict:
    """B measured quiet, then ``flood`` started (ready, then ``settle`` seconds so the flood is at its
    steady state), B measured again, the flood stopped. Asserts the issue's bound and returns the numbers
    (printed, so a passing run shows them with ``-s`` and a failing one in its report)."""
    measure_b(gw.port, duration=0.5, rate=rate, expect=expect)  # warm-up: first connections, caches
    quiet = measure_b(gw.port, duration=duration, rate=rate, expect=expect)
    cpu_before = cpu_seconds(gw.pid)
    flood.start()
    try:
        time.sleep(settle)
        flood_started = time.monotonic()
        cpu_flood = cpu_seconds(gw.pid)
        flooded = measure_b(gw.port, duration=duration, rate=rate, expect=expect)
        gateway_cpu = (cpu_seconds(gw.pid) - cpu_flood) / (time.monotonic() - flood_started)
    finally:
        a = flood.stop()
    numbers = {"quiet": quiet.summary(), "flooded": flooded.summary(), "A": a, "flood ready": flood.ready_line,
               "gateway CPU while flooded": f"{gateway_cpu:.2f} cores", "gateway CPU before": f"{cpu_before:.1f} s"}
    print("isolation:", json.dumps(numbers, indent=1))
    assert quiet.failures == [], f"B failed while A was quiet: {quiet.failures[:5]}"
    assert flooded.failures == [], f"B failed while A was flooded: {flooded.failures[:5]} ({numbers})"
    bound = 2 * quiet.p99_ms + 50
    assert flooded.p99_ms <= bound, (
        f"B's p99 with A flooded {flooded.p99_ms:.1f} ms > 2 × quiet {quiet.p99_ms:.1f} + 50 = {bound:.1f} ms "
        f"({numbers})")
    return {"quiet": quiet, "flooded": flooded, "A": a}
