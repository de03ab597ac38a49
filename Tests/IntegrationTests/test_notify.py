"""systemd's notification protocol (issue #16), spoken by the gateway itself: with NOTIFY_SOCKET set it sends
READY=1 (with MAINPID) once listening, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a SIGHUP reload, and
STOPPING=1 when a stop signal arrives. The test plays systemd: an AF_UNIX datagram socket bound at a path or in
the abstract namespace, receiving from the real binary."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import time

import pytest

from helpers import HTTPHandler, hello_app, http_request, wait_until

AS_ROOT = os.geteuid() == 0


class NotifySocket:
    """The service manager's end: a bound SOCK_DGRAM socket and the messages it received, parsed."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(5)

    def receive(self, timeout: float = 5.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096)
        text = data.decode()
        fields = {}
        for line in text.split("\n"):
            if line:
                key, _, value = line.partition("=")
                fields[key] = value
        return fields

    def nothing_more(self, wait: float = 0.3) -> bool:
        self.sock.settimeout(wait)
        try:
            extra = self.sock.recv(4096)
        except socket.timeout:
            return True
        raise AssertionError(f"unexpected notification {extra!r}")

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_path(tmp_path):
    """A path socket in pytest's tmp_path: mode 0700 and root's when the suite runs as root, so a gateway that
    has dropped to nobody could not connect to it any more — it must have connected before the drop."""
    s = NotifySocket(str(tmp_path / "notify.sock"))
    yield s
    s.close()


@pytest.fixture
def notify_abstract():
    s = NotifySocket(f"@blastbeat-test-notify-{os.getpid()}-{time.monotonic_ns()}")
    yield s
    s.close()


def lifecycle(make_gateway, make_backend, notify: NotifySocket):
    gw = make_gateway(start=False)
    gw.env["NOTIFY_SOCKET"] = notify.address
    gw.start()
    ready = notify.receive()
    assert ready == {"READY": "1", "MAINPID": str(gw.main_pid)}, ready
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    assert http_request(gw.port).status == 200

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    gw.proc.send_signal(signal.SIGHUP)
    reloading = notify.receive()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert set(reloading) == {"RELOADING", "MONOTONIC_USEC"} and reloading["RELOADING"] == "1", reloading
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after, (before, reloading, after)
    assert notify.receive() == {"READY": "1"}
    assert http_request(gw.port).status == 200
    notify.nothing_more()

    gw.proc.send_signal(signal.SIGTERM)
    assert notify.receive() == {"STOPPING": "1"}
    gw.proc.wait(10)
    assert gw.proc.returncode == 0, gw.logs()
    notify.nothing_more()
    return gw


def test_notify_on_a_path_socket(make_gateway, make_backend, notify_path):
    gw = lifecycle(make_gateway, make_backend, notify_path)
    if AS_ROOT:
        # The gateway ran as nobody, and nobody cannot reach this socket: the notifications came through the
        # connection made as root.
        directory = os.stat(os.path.dirname(notify_path.address))
        assert directory.st_uid == 0 and stat.S_IMODE(directory.st_mode) & 0o077 == 0
        assert "running as uid 65534" in gw.stderr()


def test_notify_on_an_abstract_socket(make_gateway, make_backend, notify_abstract):
    lifecycle(make_gateway, make_backend, notify_abstract)


@pytest.mark.parametrize("address, reason", [
    ("relative/notify.sock", r"expected an absolute path or @abstract-name"),
    ("/nonexistent-dir/notify.sock", r"connect\(NOTIFY_SOCKET=/nonexistent-dir/notify.sock\): No such file"),
], ids=["relative", "missing"])
def test_unusable_notify_socket_is_reported_and_the_gateway_serves(make_gateway, make_backend, address, reason):
    """A NOTIFY_SOCKET that cannot be used gets an error line naming it (under systemd the start would then time
    out, and this line says why); the gateway serves all the same."""
    gw = make_gateway(start=False)
    gw.env["NOTIFY_SOCKET"] = address
    gw.start()
    make_backend(gw, "NODE1", HTTPHandler(hello_app(b"hello")))
    assert http_request(gw.port).status == 200
    line = wait_until(lambda: re.search(r"ERROR .*NOTIFY_SOCKET.*", gw.stderr()), 5, what="the error line").group(0)
    assert re.search(reason, line), line
    assert "the service manager will not be told that the gateway is ready" in line


def test_empty_notify_socket_means_none(make_gateway):
    """An empty NOTIFY_SOCKET means no service manager (as for sd_notify): no error, and the gateway serves."""
    gw = make_gateway(start=False)
    gw.env["NOTIFY_SOCKET"] = ""
    gw.start()
    assert http_request(gw.port).status == 503  # no backend: the gateway itself answers
    assert "NOTIFY" not in gw.stderr() and "ERROR" not in gw.stderr()
