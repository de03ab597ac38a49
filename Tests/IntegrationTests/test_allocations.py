"""Allocations per request on the gateway's event-loop thread, counted with an LD_PRELOAD malloc counter.

The hot path (read -> parse -> uwsgi encode -> zmq send -> response write) should not allocate per request:
with the native ZMTP engine the uwsgi message is encoded into the backend connection's reusable output
queue; with ``zmq-engine = libzmq`` the one allowed allocation is libzmq's copy of the uwsgi message body.
The counter (Tests/AllocationCounter/malloc_counter.c) counts malloc/calloc/realloc/memalign calls made by
the main thread and writes the total at exit. Two runs with different request counts cancel out start-up
and shut-down; the difference divided by the extra requests is the per-request figure. Measured on the
release build (debug builds do not specialise generics and allocate ~20 times per request, which says
nothing about production).
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Backend, free_port, port_accepts, respond, HTTPHandler

ROOT = Path(__file__).resolve().parents[2]
# Per engine: measured 0.00 (native) and 1.00 (libzmq: the zmq message body of the uwsgi packet).
THRESHOLDS = {"native": 0.2, "libzmq": 1.5}


def release_binary() -> str:
    return os.environ.get("BLASTBEAT_RELEASE_BIN", str(ROOT / ".build" / "release" / "blastbeat"))


@pytest.fixture(scope="module")
def counter_library(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("alloc") / "malloc_counter.so"
    source = ROOT / "Tests" / "AllocationCounter" / "malloc_counter.c"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(out), str(source), "-ldl"], check=True, timeout=60)
    return out


def read_response(s: socket.socket) -> bytes:
    """One Content-Length framed response: its status line."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        body += chunk
    assert len(body) == length, "one response at a time"
    return head.split(b"\r\n", 1)[0]


def count_allocations(tmp_path: Path, library: Path, requests: int, name: str, engine: str,
                      vhost_options: str = "", status: bytes = b"200", main_options: str = "",
                      body: bytes = b"Hello, World!") -> int:
    port, zport = free_port(), free_port()
    config = tmp_path / f"{name}.ini"
    config.write_text(
        f"[blastbeat]\nbind = 127.0.0.1:{port}\nzmq = tcp://127.0.0.1:{zport}\naccess-log = off\n"
        # One process: the counter counts the serving process's main thread (workers are other processes).
        f"log-level = warning\nzmq-engine = {engine}\nworkers = 1\n{main_options}"
        # Stay the current user: the counter writes its result at exit into the test's private tmp dir.
        f"uid = {pwd.getpwuid(os.getuid()).pw_name}\ngid = {grp.getgrgid(os.getgid()).gr_name}\n"
        "\n[blastbeat:localhost]\nnode = ALLOC\n" + vhost_options
    )
    result = tmp_path / f"{name}.count"
    env = dict(os.environ, LD_PRELOAD=str(library), MALLOC_COUNTER_OUT=str(result))
    gateway = subprocess.Popen([release_binary(), str(config)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    backend = Backend(f"tcp://127.0.0.1:{zport}", b"ALLOC",
                      handler=HTTPHandler(lambda req, send: respond(send, req.sid, body))).start()
    try:
        deadline = time.monotonic() + 10
        while not port_accepts(port):
            assert gateway.poll() is None, gateway.stderr.read().decode()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        backend.wait_ready(10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            request = b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: alloc-test\r\nAccept: */*\r\n\r\n"
            for i in range(requests):
                s.sendall(request)
                status_line = read_response(s)
                assert status_line.startswith(b"HTTP/1.1 " + (b"200" if i == 0 else status) + b" "), status_line
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(15)
        backend.stop()
    assert gateway.returncode == 0
    return int(result.read_text())


@pytest.mark.parametrize("engine", ["native", "libzmq"])
def test_keepalive_get_allocates_at_most_threshold_per_request(tmp_path, counter_library, engine):
    base = count_allocations(tmp_path, counter_library, 500, f"base-{engine}", engine)
    more = count_allocations(tmp_path, counter_library, 3500, f"more-{engine}", engine)
    per_request = (more - base) / 3000
    threshold = THRESHOLDS[engine]
    print(f"{engine}: allocations: {base} for 500 requests, {more} for 3500 -> {per_request:.2f} per request")
    assert per_request <= threshold, f"{per_request:.2f} allocations per request (threshold {threshold})"


def test_64_kib_responses_allocate_nothing_per_request(tmp_path, counter_library):
    """A 64 KiB body makes each backend message a little larger than a ZMTP connection's first input buffer. The
    grown buffer is kept while messages keep needing it (ZMTPPeer.makeRoom): giving it back after each message
    cost a realloc (and a copy of the whole message) per response."""
    body = b"x" * 65536
    base = count_allocations(tmp_path, counter_library, 300, "base-64k", "native", body=body)
    more = count_allocations(tmp_path, counter_library, 1300, "more-64k", "native", body=body)
    per_request = (more - base) / 1000
    print(f"64 KiB: allocations: {base} for 300 requests, {more} for 1300 -> {per_request:.2f} per request")
    assert per_request <= THRESHOLDS["native"], f"{per_request:.2f} allocations per request"


# The per-tenant checks of Connection+TenantAdmission on the keep-alive path: admitted under limits that are
# configured but not reached, and refused with 429 (the connection stays) on every request after the first, with
# the pause after each refusal taken at once (refusal-pause = off: 3,500 refusals a second apart would take an
# hour; the pause's timer and resumption still run).
LIMITS = {
    "admitted": ("client-rate = 1000000\nclient-burst = 1000000\nmax-in-flight = 1000\nmax-connections = 100\n",
                 b"200", ""),
    "refused-429": ("client-rate = 0.001\nclient-burst = 1\n", b"429", "refusal-pause = off\n"),
}


@pytest.mark.parametrize("case", list(LIMITS))
def test_tenant_limits_allocate_nothing_per_request(tmp_path, counter_library, case):
    options, status, main = LIMITS[case]
    base = count_allocations(tmp_path, counter_library, 500, f"base-{case}", "native", options, status, main)
    more = count_allocations(tmp_path, counter_library, 3500, f"more-{case}", "native", options, status, main)
    per_request = (more - base) / 3000
    print(f"limits {case}: allocations: {base} for 500 requests, {more} for 3500 -> {per_request:.2f} per request")
    assert per_request <= THRESHOLDS["native"], f"{per_request:.2f} allocations per request"
