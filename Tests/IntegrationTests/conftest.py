"""Fixtures for the BlastBeat integration tests: the real gateway binary, real pyzmq nodes, real clients.

* ``make_gateway(vhosts=..., options=..., extra_binds=...)`` starts a gateway with a generated ini and free
  ports; at teardown it is stopped with SIGTERM (kill -9 after 10 s) and must have exited 0. Its config,
  stdout and stderr are printed (pytest shows them when the test fails).
* ``make_backend(gateway_or_endpoint, identity, handler=..., auto_pong=True, ready=True)`` starts a
  ``helpers.Backend`` thread and by default waits until the gateway has pinged it.
* ``spawn_backend(gateway, node, delay=...)`` runs ``backend_proc.py`` as a subprocess (it can be killed -9).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

import helpers
from helpers import Backend, Gateway


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: scenario takes several seconds (timeouts, shutdown)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


# What a sanitizer build prints when it finds a bug (make test-sanitize runs this suite against an ASan gateway).
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer")


@pytest.fixture(autouse=True)
def no_sanitizer_report(tmp_path):
    """Fails a test whose gateway (or other process logging under tmp_path) printed a sanitizer report, even
    when the test itself passed: a report names a memory bug that the scenario merely survived."""
    yield
    found = []
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path.suffix in (".stderr", ".log"):
            text = path.read_text(errors="replace")
            for marker in SANITIZER_REPORTS:
                if marker in text:
                    at = text.index(marker)
                    found.append(f"{path.name}:\n{text[max(0, at - 200):at + 4000]}")
                    break
    if found:
        pytest.fail("sanitizer report:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(scope="session")
def blastbeat_bin() -> str:
    path = helpers.blastbeat_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"gateway binary not found or not executable: {path} (set BLASTBEAT_BIN)", pytrace=False)
    return path


def finish_gateways(gateways: list[Gateway]) -> list[str]:
    """Stop every gateway; return the problems (did not exit in time, nonzero exit)."""
    problems = []
    for gw in gateways:
        if gw.proc is None:
            continue
        rc = gw.returncode if gw.returncode is not None else gw.stop()
        print(gw.logs())
        if gw.killed:
            problems.append(f"{gw.name}: still running 10 s after SIGTERM, killed with SIGKILL")
        elif rc != 0:
            problems.append(f"{gw.name}: exited with status {rc} after SIGTERM (expected 0)")
    return problems


@pytest.fixture
def make_gateway(blastbeat_bin, tmp_path):
    gateways: list[Gateway] = []

    def factory(vhosts=None, options=None, extra_binds=(), start: bool = True) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(gateways)}", vhosts=vhosts, options=options, extra_binds=extra_binds,
                     name=f"gateway{len(gateways)}")
        gateways.append(gw)
        if start:
            gw.start()
        return gw

    yield factory
    problems = finish_gateways(gateways)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def make_backend(make_gateway):
    """Depends on make_gateway so that backends are stopped before the gateway."""
    backends: list[Backend] = []

    def factory(target, identity, handler=None, auto_pong: bool = True, ready: bool = True,
                rcvhwm: int | None = None) -> Backend:
        endpoint = target.endpoint if isinstance(target, Gateway) else target
        backend = Backend(endpoint, identity, handler=handler, auto_pong=auto_pong, rcvhwm=rcvhwm).start()
        backends.append(backend)
        if ready:
            backend.wait_ready()
        return backend

    yield factory
    for backend in backends:
        backend.stop()
    errors = [e for b in backends for e in b.errors]
    if errors:
        pytest.fail("backend handler raised:\n" + "\n".join(errors), pytrace=False)


class BackendProcess:
    """``backend_proc.py`` in a subprocess: killable for real (kill -9)."""

    def __init__(self, endpoint: str, node: str, delay: float, log_path):
        self.node = node
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(helpers.HERE / "backend_proc.py"), "--connect", endpoint, "--node", node,
             "--delay", str(delay)],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 10.0) -> "BackendProcess":
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
            if line.endswith(b"\n"):
                if line.strip() == b"READY":
                    time.sleep(0.15)
                    return self
                line = b""
        raise TimeoutError(f"backend process {self.node} not ready within {timeout}s")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self._log.close()


@pytest.fixture
def spawn_backend(make_gateway, tmp_path):
    procs: list[BackendProcess] = []

    def factory(gateway: Gateway, node: str, delay: float = 0.0, ready: bool = True) -> BackendProcess:
        bp = BackendProcess(gateway.endpoint, node, delay, tmp_path / f"backend-{node}-{len(procs)}.log")
        procs.append(bp)
        if ready:
            bp.wait_ready()
        return bp

    yield factory
    for bp in procs:
        bp.stop()
        print(f"--- backend process {bp.node} stderr ---\n{bp.log_path.read_text(errors='replace')}")


@pytest.fixture
def run_example(tmp_path):
    """``start(name, *args)`` runs ``examples/NAME.py``; stopped with SIGTERM after the test, which
    must leave it exiting cleanly (0, or -15 when killed by the signal) and without a traceback."""
    procs = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}-{len(procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, str(helpers.REPO / "examples" / f"{name}.py"), *args],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        text = open(log.name, errors="replace").read()
        print(f"--- {log.name} ---\n{text}")
        assert "Traceback" not in text, f"{log.name}: the example raised"
        assert proc.returncode in (0, -15), f"{log.name}: example exited with {proc.returncode}"
