"""Signals (issue #16): none of HUP, USR1, USR2, QUIT, TERM, INT, PIPE kills the gateway by surprise. TERM, INT
and QUIT stop it gracefully (exit 0 and the stop line); HUP reloads the configuration (test_reload.py); USR1 reopens error-log and
access-log (also after the drop to nobody, with the arrangements README.md's "Log rotation" describes); USR2
upgrades (test_upgrade.py); PIPE is ignored. The real binary, real pyzmq backends, real HTTP clients."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from helpers import (HTTPHandler, Request, hello_app, http_request, request_in_background, respond, stopped_totals,
                     wait_until)

AS_ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody").pw_uid


def log_has(gw, pattern: str, after: int = 0, timeout: float = 5.0) -> re.Match:
    return wait_until(lambda: re.search(pattern, gw.stderr()[after:]), timeout, what=f"/{pattern}/ in the log")


def served(gw, path: str = "/") -> bool:
    r = http_request(gw.port, target=path, timeout=5)
    return (r.status, r.body) == (200, b"hello")


@pytest.fixture
def serving(make_gateway, make_backend):
    gw = make_gateway()
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    return gw


@pytest.mark.parametrize("sig, answer", [
    (signal.SIGHUP, r"SIGHUP: reloaded .*: no change in the configuration"),
    (signal.SIGUSR1, r"SIGUSR1: no log file to reopen"),
    (signal.SIGPIPE, None),
], ids=["HUP", "USR1", "PIPE"])
def test_signal_leaves_the_gateway_serving(serving, sig, answer):
    """Before #16 USR1 and USR2 killed the gateway at once (exit 138/140, nothing logged). Each signal, sent
    twice, leaves it running and answering; HUP and USR1 say what they did, PIPE is ignored. (USR2 upgrades:
    test_upgrade.py.)"""
    gw = serving
    assert served(gw)
    offset = len(gw.stderr())
    for _ in range(2):
        gw.kill(sig)
        time.sleep(0.2)
    assert gw.running(), f"{sig.name} killed the gateway (status {gw.proc.returncode})\n{gw.logs()}"
    assert served(gw, "/after")
    if answer:
        log_has(gw, answer, after=offset)
        # Each serving process says it, once per signal.
        assert len(re.findall(answer, gw.stderr()[offset:])) == 2 * gw.serving_count, gw.stderr()[offset:]
    else:
        time.sleep(0.2)
        assert "ERROR" not in gw.stderr()[offset:] and "stopped" not in gw.stderr()[offset:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=["TERM", "INT", "QUIT"])
def test_stop_signal_finishes_the_request_in_flight_and_exits_0(make_gateway, make_backend, sig):
    """TERM, INT and QUIT (nginx's graceful stop) are one graceful stop: no new connections, the request in
    flight answered, exit 0 with the stop line."""
    gw = make_gateway(options={"shutdown-timeout": "5"})
    backend = None

    def app(req: Request, send):
        backend.call_later(1.0, lambda: respond(send, req.sid, b"finished"))

    backend = make_backend(gw, "NODE1", HTTPHandler(app))
    t, result = request_in_background(gw.port, "/slow")
    backend.wait_message(b"uwsgi", timeout=5)
    gw.proc.send_signal(sig)
    log_has(gw, rf"{sig.name}: no longer accepting; finishing 1 connection")
    assert gw.running(), "the gateway waits for the request in flight"
    t.join(10)
    assert "error" not in result, result.get("error")
    assert (result["resp"].status, result["resp"].body) == (200, b"finished")
    gw.proc.wait(7)
    assert gw.proc.returncode == 0, gw.logs()
    assert stopped_totals(gw.stderr())["requests"] == 1, gw.stderr()


# --------------------------------------------------------------------------------------------------------------
# SIGUSR1: log files


def log_dir(owner: int | None) -> Path:
    """A fresh directory under /tmp (pytest's tmp_path is 0700), owned by ``owner`` when running as root."""
    path = Path(tempfile.mkdtemp(prefix="blastbeat-logs-", dir="/tmp"))
    path.chmod(0o755)
    if AS_ROOT and owner is not None:
        os.chown(path, owner, -1)
    return path


@pytest.fixture
def logs_owned_by_nobody():
    path = log_dir(NOBODY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def logs_owned_by_root():
    path = log_dir(0)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_logging_gateway(make_gateway, make_backend, directory: Path):
    gw = make_gateway(options={"error-log": directory / "error.log", "access-log": directory / "access.log"},
                      start=False)
    gw.start()
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    return gw


def file_has(path: Path, text: str, timeout: float = 5.0) -> None:
    """Waits until ``path`` contains ``text`` (the access log is flushed every second)."""
    wait_until(lambda: path.exists() and text in path.read_text(errors="replace"), timeout,
               what=f"{text!r} in {path}")


def usr1(gw, error_log: Path, expect: str) -> None:
    offset = error_log.stat().st_size if error_log.exists() else 0
    gw.kill(signal.SIGUSR1)
    wait_until(lambda: re.search(expect, error_log.read_text(errors="replace")[offset:]) if error_log.exists() else None,
               5, what=f"/{expect}/ in {error_log}")


def test_sigusr1_after_mv_writes_both_logs_to_new_files(make_gateway, make_backend, logs_owned_by_nobody):
    """nginx's rotation: mv the files, USR1, and new lines land in new files at the configured paths while the
    moved ones keep what came before. As root the gateway runs as nobody by then, so the directory is nobody's
    (README.md, "Log rotation": the serving user must be able to create the new files)."""
    d = logs_owned_by_nobody
    error_log, access_log = d / "error.log", d / "access.log"
    gw = start_logging_gateway(make_gateway, make_backend, d)
    assert gw.stderr() == "", "with error-log set, the log goes to the file"
    file_has(error_log, "listening on http://127.0.0.1")
    assert served(gw, "/before-rotation")
    file_has(access_log, "GET /before-rotation ")
    os.rename(error_log, d / "error.log.1")
    os.rename(access_log, d / "access.log.1")
    assert served(gw, "/between")  # still written to the moved file: the gateway holds it open
    time.sleep(0.1)
    gw.kill(signal.SIGUSR1)
    file_has(error_log, f"SIGUSR1: reopened {error_log} and {access_log}")
    assert served(gw, "/after-rotation")
    file_has(access_log, "GET /after-rotation ")
    old_access = (d / "access.log.1").read_text()
    assert "GET /before-rotation " in old_access and "GET /between " in old_access
    assert "/after-rotation" not in old_access
    assert "/before-rotation" not in access_log.read_text()
    assert "listening on" in (d / "error.log.1").read_text() and "listening on" not in error_log.read_text()
    if AS_ROOT:
        assert error_log.stat().st_uid == NOBODY and access_log.stat().st_uid == NOBODY
    assert gw.stop() == 0
    file_has(error_log, "INFO stopped: ")


@pytest.mark.skipif(not AS_ROOT, reason="needs root: the gateway must drop to nobody in a directory nobody cannot write")
def test_sigusr1_as_nobody_in_a_root_directory(make_gateway, make_backend, logs_owned_by_root):
    """The usual /var/log/blastbeat: owned by root, not writable by nobody. The files the gateway opened as root
    are handed to nobody, so USR1 without rotation reopens them; after an mv, logrotate's `create` (a new file
    owned by nobody) lets USR1 switch to it; after an mv without it, the reopen fails loudly and the gateway
    keeps writing to the moved files instead of losing lines."""
    d = logs_owned_by_root
    error_log, access_log = d / "error.log", d / "access.log"
    gw = start_logging_gateway(make_gateway, make_backend, d)
    file_has(error_log, "running as uid 65534")
    assert error_log.stat().st_uid == NOBODY and access_log.stat().st_uid == NOBODY, "handed to nobody"
    assert d.stat().st_uid == 0 and d.stat().st_mode & 0o022 == 0, "only root may create files in it"
    usr1(gw, error_log, rf"SIGUSR1: reopened {re.escape(str(error_log))} and {re.escape(str(access_log))}")

    # Rotation with `create 0640 nobody adm`, as dist/blastbeat.logrotate does.
    for log in (error_log, access_log):
        os.rename(log, log.with_suffix(".log.1"))
        log.touch(0o640)
        os.chown(log, NOBODY, -1)
    usr1(gw, error_log, r"SIGUSR1: reopened")
    assert served(gw, "/after-create")
    file_has(access_log, "GET /after-create ")

    # Rotation without `create`: nobody may not create files in root's directory.
    for log in (error_log, access_log):
        os.rename(log, log.with_suffix(".log.2"))
    gw.kill(signal.SIGUSR1)
    moved_error = error_log.with_suffix(".log.2")
    file_has(moved_error, "SIGUSR1: cannot reopen access-log, still writing to the old file: "
                          f"open({access_log}): Permission denied (the gateway, running as uid 65534")
    assert "SIGUSR1: cannot reopen error-log, still writing to the old file" in moved_error.read_text()
    assert gw.running()
    assert served(gw, "/kept")
    file_has(access_log.with_suffix(".log.2"), "GET /kept ")
    assert not error_log.exists() and not access_log.exists()


def test_sigusr1_reopens_a_vhosts_own_access_log(make_gateway, make_backend, logs_owned_by_nobody):
    """A vhost's own access-log (issue #15) is opened before the drop to nobody and rotated like the global
    one: after mv and USR1 the vhost's new lines go to a new file at its path, the old file keeps the earlier
    ones, and the other vhost's lines stay in [blastbeat]'s file."""
    d = logs_owned_by_nobody
    error_log, access_log, tenant_log = d / "error.log", d / "access.log", d / "tenant-a.log"
    gw = make_gateway(
        vhosts={"a.test": {"nodes": ["NODE1"], "options": {"access-log": tenant_log}}, "localhost": ["NODE1"]},
        options={"error-log": error_log, "access-log": access_log})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    assert http_request(gw.port, target="/a-before", host="a.test", timeout=5).status == 200
    assert served(gw, "/global-before")
    file_has(tenant_log, "GET /a-before ")
    file_has(access_log, "GET /global-before ")
    if AS_ROOT:
        assert tenant_log.stat().st_uid == NOBODY, "handed to nobody before the drop"
    os.rename(tenant_log, d / "tenant-a.log.1")
    time.sleep(0.1)
    gw.kill(signal.SIGUSR1)
    file_has(error_log, f"SIGUSR1: reopened {error_log} and {access_log} and {tenant_log}")
    assert http_request(gw.port, target="/a-after", host="a.test", timeout=5).status == 200
    file_has(tenant_log, "GET /a-after ")
    old = (d / "tenant-a.log.1").read_text()
    assert "GET /a-before " in old and "/a-after" not in old
    assert "/a-" not in access_log.read_text(), "a.test's lines go only to its own file"
