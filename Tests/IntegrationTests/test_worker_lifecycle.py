"""How the privileged parent and its workers start, stop and report (issue #18, README "Worker processes"), with
the real binary and ``workers = 2`` (and ``workers = 1`` where the single serving process must behave as before):

* a start failure inside the workers (a log file that cannot be opened, a certificate that does not load) makes
  the gateway exit 1 at once with the error printed once, exactly as ``--check`` prints it; a worker restarted
  after serving that cannot start is retried with backoff while the other serves;
* systemd's notifications come from the parent, the main process: READY=1 with its pid once every worker
  serves, RELOADING=1 / READY=1 around a reload every worker applied, STOPPING=1;
* an ``ipc://`` socket file is removed once, by the parent, and a failure to remove it is reported once;
* SIGUSR1 to the main process makes every worker reopen its logs."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import HTTPHandler, blastbeat_bin, free_port, hello_app, http_request, wait_until
from test_notify import NotifySocket
from test_upgrade import upgrade, upgraded, wait_log  # noqa: F401 - fixture
from tls_helpers import make_tls_gateway, pki  # noqa: F401 - fixtures

AS_ROOT = os.geteuid() == 0


def run(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def config(workers: int, extra: str = "") -> str:
    return (f"[blastbeat]\n"
            f"bind = 127.0.0.1:{free_port()}\n"
            f"zmq = tcp://127.0.0.1:{free_port()}\n"
            f"ping-freq = 0.5\n"
            f"workers = {workers}\n"
            f"{extra}\n"
            f"[blastbeat:localhost]\n"
            f"node = NODE1\n")


def workers_serving(gw, count: int = 2, log: Path | None = None) -> list[int]:
    """The worker pids, once each has logged that it serves (to ``log``, the error-log, or standard error)."""
    def ready():
        pids = gw.worker_pids()
        text = log.read_text() if log else gw.stderr()
        if len(pids) != count:
            return False
        return all(re.search(rf"worker \d+ of {count} serving as pid {p}\b", text) for p in pids) and pids
    return wait_until(ready, 10, what=f"{count} workers serving")


# --------------------------------------------------------------------------------------------------------------
# A start that fails inside the workers


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", ["error-log in a missing directory", "access-log is a directory"])
def test_a_start_failure_in_the_workers_exits_once_as_check_reports_it(tmp_path, workers, case):
    """Every worker fails the same way; the parent prints the error once (not once per worker, not once per
    restart: it restarted them forever) and exits 1 within a second or two, and the text is --check's."""
    if case == "error-log in a missing directory":
        extra, expected = f"error-log = {tmp_path}/no-such-dir/error.log", "error-log: open("
    else:
        extra, expected = f"access-log = {tmp_path}", f"access-log: open({tmp_path}): Is a directory"
    path = tmp_path / "c.ini"
    path.write_text(config(workers, extra))
    check = run(blastbeat_bin(), "--check", str(path))
    started = time.monotonic()
    start = run(blastbeat_bin(), str(path))
    took = time.monotonic() - started
    err = start.stderr.decode(errors="replace")
    assert start.returncode == 1, err
    assert took < 5, f"the failed start took {took:.1f} s"
    assert err.startswith(f"blastbeat: {path}: {expected}"), err
    assert err.count("blastbeat: ") == 1 and err.count("\n") == 1, f"reported more than once:\n{err}"
    assert "starting it again" not in err
    assert start.stderr == check.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_certificate_that_does_not_load_fails_the_start_once_at_its_line(make_tls_gateway, pki, tmp_path, workers):
    """A key of another certificate: every worker loads it and fails; one line, at the key's line, as --check."""
    gw = make_tls_gateway(options={"certificate": str(pki.localhost.cert), "key": str(pki.a.key), "workers": workers},
                          start=False)
    check = gw.check()
    proc = gw.run_to_exit()
    err = proc.stderr.decode(errors="replace")
    lines = gw.config_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("key = ") and str(pki.a.key) in text)
    assert proc.returncode == 1, err
    assert err.startswith(f"blastbeat: {gw.config_path}:{line}: key: ") and "does not match" in err, err
    assert err.count("\n") == 1, f"reported more than once:\n{err}"
    assert proc.stderr == check.stderr


def test_a_restarted_worker_that_cannot_start_is_retried_while_the_other_serves(make_gateway, make_backend, tmp_path):
    """After serving, a worker's death is not a failed start: the error-log's directory is gone, so the worker
    started again cannot open it and exits; the parent says why, starts it again later and later, and the
    gateway goes on serving through the other worker (it does not exit)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    gw = make_gateway(options={"workers": 2, "error-log": logs / "error.log"})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    pids = workers_serving(gw, log=logs / "error.log")
    shutil.rmtree(logs)
    os.kill(pids[1], signal.SIGKILL)
    line = wait_until(lambda: re.search(r"worker (\d) \(pid \d+\) exited with status 1 before serving: "
                                        r"\S+: error-log: open\(\S+error\.log\): No such file or directory", gw.stderr()),
                      5, what="the failed restart's reason").group(0)
    wait_until(lambda: "again within 1 s of its start; starting it again in 1 s" in gw.stderr(), 5,
               what="the restart with backoff")
    assert gw.running(), gw.logs()
    for _ in range(10):
        assert http_request(gw.port).status == 200
    index = line.split()[1]
    logs.mkdir()  # the next restart can open it again: the gateway serves on two workers once more
    wait_until(lambda: re.search(rf"worker {index} of 2 serving as pid", (logs / "error.log").read_text()
                                 if (logs / "error.log").exists() else ""), 40, what="the worker serving again")
    children = gw.worker_pids()
    assert len(children) == 2 and pids[1] not in children, children
    assert gw.stop() == 0


# --------------------------------------------------------------------------------------------------------------
# systemd's notifications


@pytest.fixture
def notify_socket():
    s = NotifySocket(f"@blastbeat-test-wlife-{os.getpid()}-{time.monotonic_ns()}")
    yield s
    s.close()


def test_notify_with_two_workers_names_the_parent_and_waits_for_every_worker(make_gateway, make_backend,
                                                                             notify_socket):
    """The parent is the process systemd tracks (it outlives a restarted worker): READY=1 names it, and comes
    once both workers logged that they serve; around a reload READY=1 comes once both applied it."""
    notify = notify_socket
    gw = make_gateway(options={"workers": 2}, start=False)
    gw.env["NOTIFY_SOCKET"] = notify.address
    gw.start()
    assert notify.receive() == {"READY": "1", "MAINPID": str(gw.proc.pid)} and gw.main_pid == gw.proc.pid
    assert len(re.findall(r"worker [01] of 2 serving as pid", gw.stderr())) == 2, gw.stderr()
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    assert http_request(gw.port).status == 200

    gw.proc.send_signal(signal.SIGHUP)
    reloading = notify.receive()
    assert set(reloading) == {"RELOADING", "MONOTONIC_USEC"} and reloading["RELOADING"] == "1", reloading
    assert notify.receive() == {"READY": "1"}
    assert gw.stderr().count("SIGHUP: reloaded") == 2, gw.stderr()
    notify.nothing_more()

    # A worker that dies and is started again is no news to the service manager.
    pids = workers_serving(gw)
    os.kill(pids[0], signal.SIGKILL)
    gw.wait_for_replacement(pids[0], 5)
    notify.nothing_more(0.5)

    gw.proc.send_signal(signal.SIGTERM)
    assert notify.receive() == {"STOPPING": "1"}
    gw.proc.wait(10)
    assert gw.proc.returncode == 0, gw.logs()
    notify.nothing_more()


def test_a_failed_start_with_two_workers_sends_no_ready(tmp_path, notify_socket):
    path = tmp_path / "c.ini"
    path.write_text(config(2, f"access-log = {tmp_path}"))
    proc = subprocess.run([blastbeat_bin(), str(path)], capture_output=True, timeout=10, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NOTIFY_SOCKET": notify_socket.address})
    assert proc.returncode == 1
    notify_socket.nothing_more()


# --------------------------------------------------------------------------------------------------------------
# ipc:// endpoints


@pytest.fixture
def open_dir():
    """A directory the workers could write to after dropping to nobody (tmp_path is 0700)."""
    path = tempfile.mkdtemp(prefix="bb-wlife-ipc-", dir="/tmp")
    os.chmod(path, 0o777)
    yield Path(path)
    subprocess.run(["chattr", "-i", path], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def serve_over_ipc(make_gateway, make_backend, path: Path, workers: int):
    gw = make_gateway(options={"workers": workers}, start=False)
    gw.endpoint = f"ipc://{path}"
    gw.start()
    make_backend(gw, "NODE1", handler=HTTPHandler(hello_app(b"over ipc")))
    for _ in range(10):
        r = http_request(gw.port)
        assert r.status == 200 and r.body == b"over ipc"
    assert path.is_socket()
    return gw


@pytest.mark.parametrize("workers", [1, 2])
def test_the_ipc_socket_file_is_removed_once_at_shutdown(make_gateway, make_backend, open_dir, workers):
    path = open_dir / "gw.sock"
    gw = serve_over_ipc(make_gateway, make_backend, path, workers)
    assert gw.stop() == 0
    assert not path.exists(), "the socket file is removed at shutdown"
    assert "socket file stays" not in gw.stderr() and "unlink" not in gw.stderr(), gw.stderr()


@pytest.mark.skipif(not AS_ROOT, reason="chattr +i needs root")
def test_an_ipc_socket_file_that_cannot_be_removed_is_reported_once(make_gateway, make_backend, open_dir):
    """Even root cannot remove a file from an immutable directory: the parent, which bound it, says so once."""
    path = open_dir / "gw.sock"
    gw = serve_over_ipc(make_gateway, make_backend, path, 2)
    if subprocess.run(["chattr", "+i", str(open_dir)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    try:
        assert gw.stop() == 0
    finally:
        subprocess.run(["chattr", "-i", str(open_dir)], capture_output=True)
    assert path.is_socket()
    line = f"the ROUTER's socket file stays (the next start replaces it): unlink {path}: Operation not permitted"
    assert gw.stderr().count(line) == 1, gw.stderr()
    assert gw.stderr().count("socket file stays") == 1, gw.stderr()


# --------------------------------------------------------------------------------------------------------------
# Log reopening


def test_sigusr1_to_the_main_process_reopens_every_workers_logs(make_gateway, make_backend):
    """As logrotate does (dist/blastbeat.logrotate: `create`, then USR1 to systemd's main process): the logs are
    moved away and created anew for the gateway's user, USR1 goes to the parent, and each worker writes its
    reopen line and its requests' access lines to the new files."""
    d = Path(tempfile.mkdtemp(prefix="bb-wlife-logs-", dir="/tmp"))
    try:
        d.chmod(0o755)
        error_log, access_log = d / "error.log", d / "access.log"
        gw = make_gateway(options={"workers": 2, "error-log": error_log, "access-log": access_log})
        make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
        workers_serving(gw, log=error_log)
        for log in (error_log, access_log):
            log.rename(log.with_suffix(".log.1"))
            log.touch(mode=0o640)
            if AS_ROOT:
                nobody = pwd.getpwnam("nobody")
                os.chown(log, nobody.pw_uid, nobody.pw_gid)
        gw.kill(signal.SIGUSR1)
        wait_until(lambda: error_log.read_text().count(f"SIGUSR1: reopened {error_log} and {access_log}") == 2, 5,
                   what="both workers' reopen lines in the new error log")
        # New connections until both workers served one (SO_REUSEPORT spreads them); bounded.
        for _ in range(200):
            assert http_request(gw.port, target="/after").status == 200
            if sorted(set(re.findall(r"/after .* worker=([01])$", access_log.read_text(), re.M))) == ["0", "1"]:
                break
        gw.stop()
        wait_until(lambda: sorted(set(re.findall(r"/after .* worker=([01])$", access_log.read_text(), re.M))) == ["0", "1"],
                   5, what="access lines of both workers in the new file")
        assert "/after" not in access_log.with_suffix(".log.1").read_text()
        assert gw.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# Upgrade


def test_an_upgrade_whose_workers_cannot_start_is_abandoned_at_once(make_gateway, make_backend, tmp_path):
    """The new binary's workers fail their start (access-log is now a directory): the new parent exits 1 at once
    (it restarted them forever, and the old one waited 60 s), and the old gateway serves on."""
    gw = make_gateway(options={"workers": 2})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"still here")))
    workers_serving(gw)
    gw.config_path.write_text(gw.config_text().replace("access-log = -", f"access-log = {tmp_path}"))
    offset = len(gw.stderr())
    started = time.monotonic()
    gw.kill(signal.SIGUSR2)
    wait_log(gw, r"SIGUSR2: upgrade abandoned: the new process exited( with status 1)? before serving; still serving",
             after=offset)
    assert time.monotonic() - started < 5
    assert gw.stderr()[offset:].count(f"access-log: open({tmp_path}): Is a directory") == 1, gw.stderr()[offset:]
    for _ in range(10):
        assert http_request(gw.port).body == b"still here"
    # The new process closed its pipe as it began to exit; the parent reaps it once it is gone (LeakSanitizer's
    # exit check makes that take a while under `make test-asan`), then only the two workers are its children.
    serving = workers_serving(gw)
    wait_until(lambda: gw.worker_pids() == serving, 10, what=f"only the workers {serving} as the parent's children")


def test_an_upgrade_stops_the_old_gateway_only_once_every_new_worker_serves(make_gateway, make_backend, upgraded):
    gw = make_gateway(options={"workers": 2})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    old = workers_serving(gw)
    offset = len(gw.stderr())
    new = upgrade(gw, upgraded)
    log = gw.stderr()[offset:]
    serves = log.index(f"SIGUSR2: pid {new} serves")
    new_workers = [int(p) for p in re.findall(r"worker [01] of 2 serving as pid (\d+)", log[:serves])]
    assert len(new_workers) == 2 and not set(new_workers) & set(old), log
    wait_until(lambda: http_request(gw.port).status == 200, 10, what="the new gateway serving")
