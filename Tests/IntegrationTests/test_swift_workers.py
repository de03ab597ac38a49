"""The Swift SDK's example backend behind the real gateway with ``workers = 2`` (README.md, "Backend libraries" and
"Worker processes"): given the one ``zmq`` endpoint, ``swift-hello`` reads ``X-BlastBeat-Workers: 2`` from the
gateway, opens a second connection labelled ``X-BlastBeat-Worker: 1``, the gateway hands each connection to
the worker it names, and requests accepted by either worker are answered on that worker's own connection:
nothing crosses the worker mesh. With CURVE too, and after ``kill -9`` of a worker.

Which worker accepted a request: the access log line ends in ``worker=K`` (test_workers.py); where the
node's connections are: /proc, as test_worker_handoff.py reads it."""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import RawConn, request_bytes, wait_until
from test_swift_backend import HELLO, run_swift  # noqa: F401  (run_swift is a fixture)
from test_worker_handoff import established_per_worker, gateway, scrape


def hello(source: str, gw) -> tuple[int, bytes]:
    with RawConn(gw.port, timeout=10, source=source) as conn:
        conn.send(request_bytes("GET", "/", "localhost"))
        resp = conn.read_response(timeout=10)
    return resp.status, resp.body


def load(gw, count: int) -> list[tuple[int, bytes]]:
    """``count`` GETs from four client addresses at once, each on a new connection (so both workers accept)."""
    sources = [f"127.0.0.{n}" for n in (2, 3, 4, 5)]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: hello(sources[i % len(sources)], gw), range(count)))


def swift_node(run_swift, gw, keys):  # noqa: F811
    args = ["--connect", gw.endpoint, "--node", "NODE1"]
    if keys is not None:
        args += ["--curve-key", str(keys["node"].secret_file), "--server-key", str(keys["server"].public_file)]
    return run_swift("swift-hello", *args)


def served_by_both_without_the_mesh(gw, count: int) -> dict:
    """Sends ``count`` GETs; returns how many each worker accepted, after checking that all were answered by
    the node and none crossed the mesh."""
    before = scrape(gw)
    answers = load(gw, count)
    assert all(answer == (200, HELLO) for answer in answers), answers
    after = scrape(gw)
    assert after.value("blastbeat_worker_mesh_forwarded_messages_total") == \
        before.value("blastbeat_worker_mesh_forwarded_messages_total")
    accepted = {w: after.value("blastbeat_requests_total", worker=str(w)) -
                before.value("blastbeat_requests_total", worker=str(w)) for w in (0, 1)}
    assert sum(accepted.values()) >= count
    return accepted


@pytest.mark.parametrize("curve", [False, True], ids=["null", "curve"])
def test_swift_node_holds_a_connection_per_worker_and_serves_both_without_the_mesh(
        make_gateway, run_swift, tmp_path, curve):  # noqa: F811
    gw, keys = gateway(make_gateway, tmp_path, curve)
    node = swift_node(run_swift, gw, keys)
    # One connection of the node at each worker (the second one handed over if it landed at worker 0).
    wait_until(lambda: established_per_worker(gw) == {0: 1, 1: 1}, 10, interval=0.1,
               what="one node connection at each worker")
    wait_until(lambda: scrape(gw).value("blastbeat_node_instances_connected", node="NODE1") == 1, 5,
               what="NODE1 connected")
    # Until the second connection was adopted, worker 1's pings went through the mesh; now none may.
    wait_until(lambda: all(a == (200, HELLO) for a in load(gw, 8)), 10, interval=0.2, what="the node serving")
    accepted = served_by_both_without_the_mesh(gw, 200)
    assert accepted[0] >= 10 and accepted[1] >= 10, accepted
    assert scrape(gw).value("blastbeat_backend_handover_failures_total") == 0
    log = run_swift.log_of(node)
    assert "has 2 workers: opening a connection to worker 1" in log, log
    assert established_per_worker(gw) == {0: 1, 1: 1}


def test_swift_node_reconnects_to_a_restarted_worker_by_itself(make_gateway, run_swift, tmp_path):  # noqa: F811
    gw, keys = gateway(make_gateway, tmp_path, curve=False)
    node = swift_node(run_swift, gw, keys)
    wait_until(lambda: established_per_worker(gw) == {0: 1, 1: 1}, 10, interval=0.1,
               what="one node connection at each worker")
    (victim,) = [pid for pid in gw.worker_pids() if gw.worker_index(pid) == 1]
    os.kill(victim, signal.SIGKILL)
    gw.wait_for_replacement(victim, 5)
    # The node's connection to worker 1 comes back by itself (libzmq reconnects it; the gateway hands it to
    # the new worker 1); the one to worker 0 was never lost.
    wait_until(lambda: established_per_worker(gw) == {0: 1, 1: 1}, 15, interval=0.1,
               what="the connection to worker 1 back")
    wait_until(lambda: all(a == (200, HELLO) for a in load(gw, 8)), 10, interval=0.2, what="the node serving")
    accepted = served_by_both_without_the_mesh(gw, 100)
    assert accepted[0] >= 5 and accepted[1] >= 5, accepted
    log = run_swift.log_of(node)
    assert re.search(r"lost the connection to \S+ \(worker 1\)", log), log
    assert not re.search(r"lost the connection to \S+ \(worker 0\)", log), log
