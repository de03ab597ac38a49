"""Running it like a system service (issue #16): `make install` with PREFIX and DESTDIR, the systemd unit
(dist/blastbeat.service, checked by `systemd-analyze verify` and by its own reading here), the example
configuration, and the logrotate snippet run by the real `logrotate` against a running gateway."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import helpers
from helpers import HTTPHandler, hello_app, http_request, wait_until

REPO = helpers.REPO
DIST = REPO / "dist"
AS_ROOT = os.geteuid() == 0


def install_bin() -> str:
    """The binary `make install` copies: the release build when the suite has one, else the debug build."""
    return os.environ.get("BLASTBEAT_RELEASE_BIN") or helpers.blastbeat_bin()


def make_install(destdir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install", f"DESTDIR={destdir}",
                           f"INSTALL_BIN={install_bin()}", *args], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_make_install_with_destdir_and_prefix(tmp_path):
    dest = tmp_path / "root"
    out = make_install(dest, "PREFIX=/usr").stdout.decode()
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["etc/blastbeat/blastbeat.ini", "etc/logrotate.d/blastbeat", "usr/lib/systemd/system/blastbeat.service",
                     "usr/sbin/blastbeat"], files
    binary = dest / "usr/sbin/blastbeat"
    assert mode(binary) == 0o755 and binary.read_bytes() == Path(install_bin()).read_bytes()
    version = subprocess.run([str(binary), "--version"], capture_output=True, timeout=10)
    assert version.returncode == 0 and version.stdout.startswith(b"blastbeat "), version
    unit = dest / "usr/lib/systemd/system/blastbeat.service"
    assert mode(unit) == 0o644 and unit.read_text() == (DIST / "blastbeat.service").read_text()  # PREFIX=/usr: as is
    assert (dest / "etc/logrotate.d/blastbeat").read_text() == (DIST / "blastbeat.logrotate").read_text()
    config = dest / "etc/blastbeat/blastbeat.ini"
    assert config.read_text() == (DIST / "blastbeat.ini").read_text() and mode(config) == 0o644
    assert "install -m 644 dist/blastbeat.ini" in out
    assert (dest / "etc/blastbeat/sites.d").is_dir(), "the example's include = sites.d/*.ini has its directory"

    # Again, over an edited configuration: everything else is replaced, the configuration is kept.
    config.write_text("; mine\n")
    binary.write_bytes(b"old")
    out = make_install(dest, "PREFIX=/usr").stdout.decode()
    assert config.read_text() == "; mine\n"
    assert f"kept {config}" in out
    assert binary.read_bytes() == Path(install_bin()).read_bytes()

    # uninstall keeps the configuration.
    subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "uninstall", f"DESTDIR={dest}", "PREFIX=/usr"],
                   check=True, capture_output=True, timeout=30)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == ["etc/blastbeat/blastbeat.ini"]


def test_make_install_default_prefix_rewrites_the_unit(tmp_path):
    """The default PREFIX is /usr/local: the unit goes where systemd looks for local units and starts the binary
    where it was put; the configuration and logrotate stay in /etc."""
    dest = tmp_path / "root"
    make_install(dest)
    unit = (dest / "usr/local/lib/systemd/system/blastbeat.service").read_text()
    assert (dest / "usr/local/sbin/blastbeat").is_file() and (dest / "etc/blastbeat/blastbeat.ini").is_file()
    assert "ExecStart=/usr/local/sbin/blastbeat /etc/blastbeat/blastbeat.ini\n" in unit
    assert "ExecStartPre=/usr/local/sbin/blastbeat --check /etc/blastbeat/blastbeat.ini\n" in unit
    assert "/usr/sbin/" not in unit


def test_installed_example_configuration_passes_check(tmp_path):
    """The example passes --check once its log directory exists (the unit's LogsDirectory= makes it before
    ExecStartPre runs --check); here the directory is a temporary one, and without it --check says what is missing."""
    dest = tmp_path / "root"
    make_install(dest, "PREFIX=/usr")
    installed = (dest / "etc/blastbeat/blastbeat.ini").read_text()
    assert installed.count("/var/log/blastbeat/") == 2
    logs = tmp_path / "logs"
    config = tmp_path / "blastbeat.ini"
    config.write_text(installed.replace("/var/log/blastbeat/", f"{logs}/"))
    binary = str(dest / "usr/sbin/blastbeat")
    # include = sites.d/*.ini beside the file: a missing directory is an error (a typo must not drop every site),
    # an empty one is fine.
    proc = subprocess.run([binary, "--check", str(config)], capture_output=True, timeout=10)
    assert proc.returncode == 1 and f"{config}:19: include: cannot read the directory of {tmp_path}/sites.d/*.ini" in \
        proc.stderr.decode(errors="replace"), proc.stderr
    (tmp_path / "sites.d").mkdir()
    proc = subprocess.run([binary, "--check", str(config)], capture_output=True, timeout=10)
    assert proc.returncode == 1 and f"error-log: open({logs}/error.log): No such file or directory" in \
        proc.stderr.decode(errors="replace"), proc.stderr
    logs.mkdir()
    proc = subprocess.run([binary, "--check", str(config)], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert list(logs.iterdir()) == []


# --------------------------------------------------------------------------------------------------------------
# The unit


def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax, for what this file uses: [Section], Key=Value (repeatable), # and ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"line {number}: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, (key, values)
    return values[0]


def test_unit_file_has_what_the_gateway_needs():
    """Read here (so it is checked where systemd-analyze is missing too): Type=notify (the gateway sends READY=1
    itself), started as root (no User=: it binds, then drops to uid/gid), SIGHUP for reload, hardening whose
    capability set still allows binding below 1024, switching user and handing the log files over, and the log
    directory the example configuration and the logrotate snippet use."""
    unit = read_unit((DIST / "blastbeat.service").read_text())
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "all", "the serving process, a child of the privileged parent, notifies"
    assert "User" not in service and "Group" not in service and "DynamicUser" not in service
    assert one(service, "ExecStart") == "/usr/sbin/blastbeat /etc/blastbeat/blastbeat.ini"
    assert one(service, "ExecStartPre") == "/usr/sbin/blastbeat --check /etc/blastbeat/blastbeat.ini"
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert set(one(service, "CapabilityBoundingSet").split()) == {
        "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL"}
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("LogsDirectory", "blastbeat")]:
        assert one(service, key) == value, key
    assert "AF_UNIX" in one(service, "RestrictAddressFamilies")  # NOTIFY_SOCKET and ipc:// endpoints
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    # The shutdown grace period fits in systemd's stop timeout.
    assert int(one(service, "TimeoutStopSec")) > 10
    # The example configuration logs where LogsDirectory= lets it write (ProtectSystem=strict) and logrotate looks.
    config = (DIST / "blastbeat.ini").read_text()
    for key in ("error-log", "access-log"):
        path = re.search(rf"^{key} = (\S+)$", config, re.M).group(1)
        assert path.startswith("/var/log/blastbeat/") and path.endswith(".log"), (key, path)
    assert "/var/log/blastbeat/*.log {" in (DIST / "blastbeat.logrotate").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (package systemd)")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    """`systemd-analyze verify` on the installed unit. It checks that the commands exist on this machine, so a copy
    names the binary installed under DESTDIR; and since it reports unknown keys and bad values on standard error
    and still exits 0, any output fails the test."""
    dest = tmp_path / "root"
    make_install(dest, "PREFIX=/usr")
    unit = (dest / "usr/lib/systemd/system/blastbeat.service").read_text()
    checked = tmp_path / "blastbeat.service"
    checked.write_text(unit.replace("/usr/sbin/blastbeat", str(dest / "usr/sbin/blastbeat")))
    proc = subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0 and output == "", output


# --------------------------------------------------------------------------------------------------------------
# logrotate


@pytest.fixture
def root_log_dir():
    """Like /var/log/blastbeat under the unit's LogsDirectory=: root's, mode 0755 (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="blastbeat-logrotate-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed (scripts/install-deps.sh test)")
def test_logrotate_snippet_rotates_a_running_gateways_logs(make_gateway, make_backend, root_log_dir, tmp_path):
    """dist/blastbeat.logrotate run by logrotate itself (-f, its own state file), with two changes: the log
    directory, and the postrotate command (systemctl kill needs a running systemd) replaced by the kill -USR1 it
    stands for. As root the gateway runs as nobody; the snippet's `create` gives it new files it may open."""
    d = root_log_dir
    error_log, access_log = d / "error.log", d / "access.log"
    gw = make_gateway(options={"error-log": error_log, "access-log": access_log})
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    assert http_request(gw.port, target="/before").status == 200
    wait_until(lambda: access_log.exists() and "GET /before " in access_log.read_text(), 5, what="access line")

    snippet = (DIST / "blastbeat.logrotate").read_text()
    postrotate = "systemctl kill --kill-who=main --signal=USR1 blastbeat.service >/dev/null 2>&1 || true"
    assert "\n/var/log/blastbeat/*.log {\n" in snippet and postrotate in snippet
    snippet = snippet.replace("\n/var/log/blastbeat/*.log {", f"\n{d}/*.log {{").replace(postrotate, f"kill -USR1 {gw.main_pid}")
    if not AS_ROOT:
        snippet = snippet.replace("create 0640 nobody adm", "create 0640")  # only root may give files away
    config = tmp_path / "logrotate.conf"
    config.write_text(snippet)
    proc = subprocess.run(["logrotate", "-v", "-f", "-s", str(tmp_path / "logrotate.state"), str(config)],
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, output

    for log in (error_log, access_log):
        rotated = log.with_suffix(".log.1")  # delaycompress: the newest rotation stays uncompressed
        assert rotated.is_file() and log.is_file(), output
        assert mode(log) == 0o640
        if AS_ROOT:
            assert log.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    wait_until(lambda: f"SIGUSR1: reopened {error_log} and {access_log}" in error_log.read_text(), 5,
               what="the reopen line in the new error log")
    assert gw.running()
    assert http_request(gw.port, target="/after").status == 200
    wait_until(lambda: "GET /after " in access_log.read_text(), 5, what="the new access line in the new file")
    old = access_log.with_suffix(".log.1").read_text()
    assert "GET /before " in old and "/after" not in old
    assert "listening on" in error_log.with_suffix(".log.1").read_text()
    assert gw.stop() == 0
