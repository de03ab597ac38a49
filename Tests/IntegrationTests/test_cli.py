"""Command line: --check on good and bad configs, --version, --help, a bad config at startup."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from helpers import free_port


def run(bin_path: str, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run([bin_path, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def good_config() -> str:
    return (f"[blastbeat]\n"
            f"bind = 127.0.0.1:{free_port()}\n"
            f"zmq = tcp://127.0.0.1:{free_port()}\n"
            f"ping-freq = 0.5\n"
            f"\n"
            f"[blastbeat:localhost]\n"
            f"node = NODE1\n")


def test_check_good_config(blastbeat_bin, tmp_path):
    path = tmp_path / "good.ini"
    path.write_text(good_config())
    proc = run(blastbeat_bin, "--check", str(path))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def test_check_full_config(blastbeat_bin, tmp_path):
    """Every key of the contract, a second listener on [::1] and a default vhost."""
    path = tmp_path / "full.ini"
    path.write_text(
        "; a comment\n"
        "# another comment\n"
        "[blastbeat]\n"
        f"bind = 127.0.0.1:{free_port()}\n"
        f"bind = [::1]:{free_port()}\n"
        f"zmq = tcp://127.0.0.1:{free_port()}\n"
        "ping-freq = 0.5\nping-timeout = 2\nbackend-timeout = 2\nheader-timeout = 2\nkeepalive-timeout = 5\n"
        "body-timeout = 5\nshutdown-timeout = 5\nmax-hops = 3\nmax-body-size = 16m\nmax-header-size = 16384\n"
        "max-headers = 50\nmax-request-line = 8192\naccess-log = -\n"
        "\n[blastbeat:localhost]\nnode = NODE1\nnode = NODE2\n"
        "\n[blastbeat:other.test]\nnode = OTHER\ndefault = true\n")
    proc = run(blastbeat_bin, "--check", str(path))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


BAD = [
    # (line number, key, line text)
    (4, "ping-freq", "ping-freq = abc"),
    (2, "bind", "bind = 127.0.0.1:99999"),
    (4, "max-body-size", "max-body-size = lots"),
    (4, "backend-timeout", "backend-timeout = soon"),
    (4, "max-buffered", "max-buffered = 512k"),  # below the 1 MiB minimum
]


@pytest.mark.parametrize("line, key, text", BAD, ids=[b[1] for b in BAD])
def test_check_bad_config(blastbeat_bin, tmp_path, line, key, text):
    lines = good_config().splitlines()
    if line == 2:
        lines[1] = text
    else:
        lines[3] = text
    path = tmp_path / "bad.ini"
    path.write_text("\n".join(lines) + "\n")
    proc = run(blastbeat_bin, "--check", str(path))
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, f"exit {proc.returncode}, stderr: {stderr}"
    pattern = rf"^(?:blastbeat: )?(?:{re.escape(str(path))}|{re.escape(path.name)}):{line}: {re.escape(key)}: \S.*$"
    assert re.search(pattern, stderr, re.M), f"expected FILE:{line}: {key}: message in stderr, got:\n{stderr}"


def test_check_missing_zmq(blastbeat_bin, tmp_path):
    path = tmp_path / "nozmq.ini"
    path.write_text("\n".join(l for l in good_config().splitlines() if not l.startswith("zmq")) + "\n")
    proc = run(blastbeat_bin, "--check", str(path))
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, stderr
    assert "zmq" in stderr and str(path.name) in stderr, stderr


def test_check_missing_file(blastbeat_bin, tmp_path):
    proc = run(blastbeat_bin, "--check", str(tmp_path / "nope.ini"))
    assert proc.returncode != 0
    assert proc.stderr.strip(), "an error message is expected on stderr"


def test_bad_config_refuses_to_start(blastbeat_bin, tmp_path):
    path = tmp_path / "bad.ini"
    path.write_text(good_config().replace("ping-freq = 0.5", "ping-freq = abc"))
    proc = run(blastbeat_bin, str(path), timeout=10)
    assert proc.returncode != 0
    assert b"ping-freq" in proc.stderr


def test_version(blastbeat_bin):
    proc = run(blastbeat_bin, "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip(), "--version prints a version"
    assert re.search(rb"\d+\.\d+", proc.stdout), proc.stdout


def test_help(blastbeat_bin):
    proc = run(blastbeat_bin, "--help")
    assert proc.returncode == 0
    assert b"--check" in proc.stdout + proc.stderr


def test_help_lists_the_signals(blastbeat_bin):
    out = run(blastbeat_bin, "--help").stdout.decode()
    for name in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGPIPE", "NOTIFY_SOCKET"):
        assert name in out, name


@pytest.mark.parametrize("case", ["error-log in a missing directory", "access-log is a directory", "unknown uid"])
def test_check_reports_what_startup_would_fail_on(blastbeat_bin, tmp_path, case):
    """--check opens nothing for writing, yet fails where the start fails: a log file that cannot be opened (issue
    #16: --check checks everything startup checks), and, as root, a uid that names no account. Same message."""
    if case == "error-log in a missing directory":
        extra, expected = f"error-log = {tmp_path}/no-such-dir/error.log", \
            f"error-log: open({tmp_path}/no-such-dir/error.log): No such file or directory"
    elif case == "access-log is a directory":
        extra, expected = f"access-log = {tmp_path}", f"access-log: open({tmp_path}): Is a directory"
    else:
        if os.geteuid() != 0:
            pytest.skip("uid is used (and resolved) only when started as root")
        extra, expected = "uid = no-such-user-here", 'uid/gid: unknown user "no-such-user-here"'
    path = tmp_path / "c.ini"
    path.write_text(good_config().replace("ping-freq = 0.5\n", f"ping-freq = 0.5\n{extra}\n"))
    check = run(blastbeat_bin, "--check", str(path))
    start = run(blastbeat_bin, str(path))
    for proc in (check, start):
        stderr = proc.stderr.decode(errors="replace")
        assert proc.returncode == 1 and stderr.startswith(f"blastbeat: {path}: {expected}"), stderr
    assert check.stderr == start.stderr


def test_check_creates_no_log_file(blastbeat_bin, tmp_path):
    """A log file that does not exist yet passes --check when its directory allows creating it; it is not created."""
    path = tmp_path / "c.ini"
    path.write_text(good_config().replace("ping-freq = 0.5\n", f"ping-freq = 0.5\nerror-log = {tmp_path}/e.log\n"
                                                                f"access-log = {tmp_path}/a.log\n"))
    proc = run(blastbeat_bin, "--check", str(path))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert not (tmp_path / "e.log").exists() and not (tmp_path / "a.log").exists()
