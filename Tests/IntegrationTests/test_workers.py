"""Worker processes (issue #18, README "Worker processes"): ``workers = 2`` under the parent. Clients spread over
the workers; a backend's one connection lands in one worker and serves the requests arriving at both (the
other worker's go through the worker mesh); a worker killed with SIGKILL is started again within a second while
the other goes on serving; reload and upgrade reach every worker with no request failing; TLS sessions resume
on either worker.

Which worker served a request: every sid's first byte is the index of the worker that made it (the backends
below answer with it), and the access log line ends in ``worker=K``."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
import signal
import time

import pytest

from helpers import (HTTPHandler, LoadClient, RawConn, http_request, request_bytes, respond, socket_inodes,
                     tcp_inodes, wait_until)
from test_upgrade import Upgraded, upgrade, wait_log
from tls_helpers import cleanup_dir, make_tls_gateway, pki, s_client_exchange, world_readable_dir  # noqa: F401

WORKERS = {"workers": 2}


def worker_app(req, send):
    """Answers ``w`` + the index of the worker that made the request's sid."""
    respond(send, req.sid, b"w%d" % req.sid[0], headers=[("Content-Type", "text/plain")])


def workers_ready(gw, count: int = 2) -> list[int]:
    """The worker pids, once each has logged its start."""
    def ready():
        pids = gw.worker_pids()
        try:
            return len(pids) == count and all(gw.worker_index(p) >= 0 for p in pids) and pids
        except LookupError:
            return False
    return wait_until(ready, 10, what=f"{count} workers")


def holder_pid(gw, pids: list[int]) -> int:
    """The worker holding the (one) established backend connection to the ROUTER's port."""
    def find():
        established = tcp_inodes(gw.zmq_port, "01")
        holders = [pid for pid in pids if socket_inodes(pid) & established]
        return holders[0] if len(holders) == 1 else None
    return wait_until(find, 5, what="the worker holding the backend connection")


def served_by(resp) -> int:
    assert resp.status == 200, resp.raw
    match = re.fullmatch(rb"w(\d+)", resp.body)
    assert match, resp.body
    return int(match.group(1))


def test_raw_backend_with_one_connection_serves_requests_arriving_at_both_workers(make_gateway, make_backend):
    gw = make_gateway(options=WORKERS)
    make_backend(gw, "NODE1", HTTPHandler(worker_app))
    workers_ready(gw)
    # Eight clients at once, each a new connection per request: the first worker free to accept takes it (one
    # client alone, one connection after another, mostly finds the same worker awake: README "Worker processes").
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: served_by(http_request(gw.port)), range(200)))
    counts = {0: answers.count(0), 1: answers.count(1)}
    assert sum(counts.values()) == 200
    assert counts[0] >= 10 and counts[1] >= 10, counts
    logged = wait_until(lambda: len(re.findall(r" 200 .* worker=[01]$", gw.stdout(), re.M)) >= 200, 5,
                        what="200 access log lines")
    assert logged
    assert sorted(set(re.findall(r" worker=([01])$", gw.stdout(), re.M))) == ["0", "1"]
    # The worker without the connection says how its requests reach the node.
    assert re.search(r'node "NODE1" has its connection at worker [01]: requests arriving at this worker go to it',
                     gw.stderr()), gw.stderr()


def connections_on(gw, index: int, wanted: int) -> list[RawConn]:
    """Keep-alive connections whose requests worker ``index`` serves (others are closed)."""
    kept: list[RawConn] = []
    for _ in range(1000):
        conn = RawConn(gw.port, timeout=5)
        conn.send(request_bytes("GET", "/", "localhost"))
        if served_by(conn.read_response(timeout=5)) == index:
            kept.append(conn)
            if len(kept) == wanted:
                return kept
        else:
            conn.close()
    raise AssertionError(f"no {wanted} connections landed on worker {index}")


def test_kill_9_of_a_worker_restarts_it_within_a_second_and_the_other_serves_on(make_gateway, make_backend):
    gw = make_gateway(options=WORKERS)
    make_backend(gw, "NODE1", HTTPHandler(worker_app))
    pids = workers_ready(gw)
    holder = holder_pid(gw, pids)
    (victim,) = [p for p in pids if p != holder]
    survivors = connections_on(gw, gw.worker_index(holder), 3)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    replacement = wait_until(lambda: [p for p in gw.worker_pids() if p not in pids], 1.0, interval=0.01,
                             what="a new worker")
    assert time.monotonic() - killed_at < 1.0
    # The other worker's clients see nothing: each keep-alive connection goes on being answered by it.
    for _ in range(20):
        for conn in survivors:
            conn.send(request_bytes("GET", "/", "localhost"))
            assert served_by(conn.read_response(timeout=5)) == gw.worker_index(holder)
    for conn in survivors:
        conn.close()
    assert re.search(rf"worker {gw.worker_index(victim)} \(pid {victim}\) was killed by signal 9; starting it again",
                     gw.stderr()), gw.stderr()
    # The new worker serves, through the worker holding the backend's connection.
    wait_until(lambda: gw.worker_index(replacement[0]) >= 0, 5, what="the new worker's start")
    new_index = gw.worker_index(replacement[0])
    wait_until(lambda: any(served_by(http_request(gw.port)) == new_index for _ in range(10)), 10,
               what="a request served by the new worker")


def test_kill_9_of_the_worker_holding_the_backend_the_backend_reconnects(make_gateway, make_backend):
    gw = make_gateway(options={**WORKERS, "ping-freq": 1, "ping-timeout": 3})
    make_backend(gw, "NODE1", HTTPHandler(worker_app))
    pids = workers_ready(gw)
    holder = holder_pid(gw, pids)
    os.kill(holder, signal.SIGKILL)
    new_pids = gw.wait_for_replacement(holder, 1.0)
    # libzmq reconnects by itself; then both workers serve again.
    holder_pid(gw, new_pids)

    def both_serve():
        seen = set()
        for _ in range(40):
            resp = http_request(gw.port)
            if resp.status == 200:
                seen.add(served_by(resp))
        return seen == {0, 1}
    wait_until(both_serve, 10, interval=0.2, what="both workers serving after the backend reconnected")


@pytest.fixture
def upgraded():
    started = Upgraded()
    yield started
    started.stop()


def test_reload_and_upgrade_under_load_with_two_workers_fail_no_request(make_gateway, make_backend, upgraded):
    gw = make_gateway(options=WORKERS)
    make_backend(gw, "NODE1", HTTPHandler(worker_app))
    workers_ready(gw)
    loads = [LoadClient(gw.port, "localhost", source=f"127.0.0.{n}") for n in (2, 3, 4)]
    loads.append(LoadClient(gw.port, "localhost", source="127.0.0.5", keep_alive=False))
    for load in loads:
        load.start()
    time.sleep(0.5)
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: gw.stderr()[offset:].count("SIGHUP: reloaded") == 2, 10, what="both workers reloaded")
    time.sleep(0.5)
    upgrade(gw, upgraded)
    time.sleep(1.0)
    for load in loads:
        load.finish()
    for load in loads:
        assert load.errors == [] and load.ok > 10, (load.source, load.ok, load.resent, load.errors)
    assert http_request(gw.port).status == 200


@pytest.mark.parametrize("flag,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_session_from_one_worker_resumes_on_the_other(make_tls_gateway, make_backend, pki, tmp_path, flag, name):
    gw = make_tls_gateway(vhosts={"localhost": {"nodes": ["L"], "certificate": str(pki.localhost.cert),
                                                "key": str(pki.localhost.key)}}, options=WORKERS)
    make_backend(gw, "L", HTTPHandler(worker_app))
    workers_ready(gw)
    session = tmp_path / f"session{flag}.pem"
    request = request_bytes("GET", "/", host="localhost")
    first = s_client_exchange(gw.tls_port, flag, "-CAfile", str(pki.ca_cert), "-sess_out", str(session),
                              request=request, until=b"\r\n\r\nw")
    assert first.returncode == 0 and first.complete, first.text
    issued_by = int(re.search(r"\r\n\r\nw(\d)", first.text).group(1))
    resumed_on = set()
    for _ in range(30):
        again = s_client_exchange(gw.tls_port, flag, "-CAfile", str(pki.ca_cert), "-sess_in", str(session),
                                  request=request, until=b"\r\n\r\nw")
        assert again.returncode == 0 and again.complete, again.text
        assert re.search(rf"^Reused, {re.escape(name)}", again.text, re.M), again.text
        resumed_on.add(int(re.search(r"\r\n\r\nw(\d)", again.text).group(1)))
        if 1 - issued_by in resumed_on:
            break
    assert 1 - issued_by in resumed_on, f"issued by worker {issued_by}, resumed only on {resumed_on}"


def test_check_names_the_workers_line(make_gateway):
    gw = make_gateway(options={"workers": 0}, start=False)
    gw.config_path.write_text(gw.config_text())
    import subprocess
    from helpers import blastbeat_bin
    out = subprocess.run([blastbeat_bin(), "--check", str(gw.config_path)], capture_output=True, text=True, timeout=10)
    line = gw.config_text().splitlines().index("workers = 0") + 1
    assert out.returncode == 1
    assert f"{gw.config_path}:{line}: workers: expected auto or a whole number from 1 to 64" in out.stderr, out.stderr
    gw.options.update({"workers": "2", "zmq-engine": "libzmq"})
    gw.config_path.write_text(gw.config_text())
    out = subprocess.run([blastbeat_bin(), "--check", str(gw.config_path)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1 and "workers: expected 1 (or auto) with zmq-engine = libzmq" in out.stderr, out.stderr
    gw.options.update({"workers": "auto", "zmq-engine": "native"})
    gw.config_path.write_text(gw.config_text())
    out = subprocess.run([blastbeat_bin(), "--check", str(gw.config_path)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr


def test_metrics_sum_both_workers_with_a_worker_label(make_gateway, make_backend):
    from test_metrics import Scrape, admin_get
    from helpers import free_port
    gw = make_gateway(options={**WORKERS, "admin": f"127.0.0.1:{free_port()}"})
    make_backend(gw, "NODE1", HTTPHandler(worker_app))
    workers_ready(gw)
    served = {0: 0, 1: 0}
    for _ in range(60):
        served[served_by(http_request(gw.port))] += 1
    assert served[0] and served[1], served
    for _ in range(4):  # whichever worker takes the scrape answers for both
        resp = admin_get(gw)
        assert resp.status == 200, resp.raw[:300]
        scrape = Scrape(resp.body.decode())
        assert scrape.value("blastbeat_responses_total", vhost="localhost", code="2xx") == 60
        assert scrape.value("blastbeat_requests_total") == 60
        assert scrape.value("blastbeat_requests_total", worker="0") == served[0]
        assert scrape.value("blastbeat_requests_total", worker="1") == served[1]
        assert scrape.value("blastbeat_node_instances_connected", node="NODE1") == 1
        assert scrape.value("blastbeat_node_responses_total", node="NODE1") == 60


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the gateway as nobody")
def test_without_root_a_parent_still_serves_two_workers(make_gateway, make_backend):
    """Not root (here: started as nobody), ``workers = 2`` still has a parent: it forks both workers, restarts
    one killed with SIGKILL, and stops them with itself."""
    from helpers import Gateway
    directory = world_readable_dir("blastbeat-workers-")
    try:
        gw = make_gateway(options=WORKERS, start=False)
        gw.workdir = directory
        gw.config_path = directory / "gateway.ini"
        gw.command_prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        Gateway.start(gw)
        make_backend(gw, "NODE1", HTTPHandler(worker_app))
        pids = workers_ready(gw)
        for pid in [gw.proc.pid] + pids:
            with open(f"/proc/{pid}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            assert set(uids) == {"65534"}, (pid, uids)
        with ThreadPoolExecutor(8) as pool:
            answers = set(pool.map(lambda _: served_by(http_request(gw.port)), range(100)))
        assert answers == {0, 1}
        os.kill(pids[0], signal.SIGKILL)
        gw.wait_for_replacement(pids[0], 1.0)
    finally:
        cleanup_dir(directory)


def test_a_worker_that_takes_no_reload_within_5_s_is_replaced_and_the_parent_goes_on(make_gateway, make_backend):
    """A worker whose event loop is stuck (here: stopped with SIGSTOP) reads nothing from its channel. The reload
    is far larger than the socket buffers (a 4 MB include), so the parent's send to it cannot complete: after 5 s
    the parent gives up, kills that worker and starts it again, instead of blocking its signals and restarts."""
    padding = ("# padding for a reload larger than any socket buffer " + "x" * 70 + "\n") * 32768
    gw = make_gateway(options=WORKERS, start=False)
    include = gw.config_path.parent / "big.ini"
    include.write_text(padding)
    gw.options["include"] = str(include)
    gw.start()
    make_backend(gw, "NODE1", HTTPHandler(worker_app))
    pids = workers_ready(gw)
    stuck = pids[1]
    os.kill(stuck, signal.SIGSTOP)
    offset = len(gw.stderr())
    sent_at = time.monotonic()
    gw.proc.send_signal(signal.SIGHUP)
    line = wait_until(
        lambda: re.search(rf"worker {gw.worker_index(stuck)} \(pid {stuck}\): cannot send it the reload: .*"
                          r"took (none of it|\d+ of \d+ bytes) in 5 s.*; killing it to start it again", gw.stderr()[offset:]),
        15, what="the parent giving up on the stuck worker")
    assert line
    assert 4.5 <= time.monotonic() - sent_at < 8
    # Started again (SIGCHLD), and both workers serve; the other worker took the reload.
    replacement = wait_until(lambda: [p for p in gw.worker_pids() if p not in pids], 5, what="a new worker")
    assert replacement
    wait_until(lambda: gw.stderr()[offset:].count("SIGHUP: reloaded") >= 1, 5, what="the other worker's reload")
    # The backend's connection was at the stopped worker: it reconnects, and the new worker learns where it is.
    wait_until(lambda: all(http_request(gw.port).status == 200 for _ in range(10)), 10,
               what="the node served again at both workers")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: served_by(http_request(gw.port)), range(100)))
    assert sorted(set(answers)) == [0, 1]


def test_a_worker_stopped_while_it_starts_stops_as_a_serving_one_does(make_gateway, make_backend):
    """A worker killed with SIGKILL is started again; SIGTERM to the parent the moment the new worker exists
    reaches it while it is still starting. Its signals stay blocked until its event loop watches them, so it
    stops as a serving worker stops (exit 0), not by the signal's default action (status 143, which the parent
    then reported as its own exit status)."""
    gw = make_gateway(options=WORKERS)
    pids = workers_ready(gw)
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        children = gw.worker_pids()
        if len(children) == 2 and pids[0] not in children:
            break
        time.sleep(0.0002)
    else:
        raise AssertionError("no new worker within 2 s")
    started = time.monotonic()
    assert gw.stop() == 0, gw.stderr()[-3000:]
    assert time.monotonic() - started < 5
    assert "killed by signal 15" not in gw.stderr(), gw.stderr()[-3000:]
