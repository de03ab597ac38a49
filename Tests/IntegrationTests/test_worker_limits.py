"""Per-vhost limits with ``workers = 2`` (README "Worker processes", "Limits per vhost"): `max-in-flight` and
`max-connections` count in memory the workers share, so they hold for the gateway as a whole; a worker killed
with SIGKILL leaves nothing counted behind (the parent zeroes its column before starting it again).

Which worker served a request: the node answers ``w`` + the first byte of the sid, the index of the worker that
made it (test_workers.py); a refusal's access log line ends in ``worker=K``. Clients come from distinct loopback
addresses, so no per-address limit is involved."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time

from helpers import HTTPHandler, RawConn, request_bytes, respond, wait_until
from test_workers import holder_pid, served_by, workers_ready

HOST = "a.test"
_sources = (f"127.0.{i}.{j}" for i, j in itertools.product(range(1, 250), range(2, 250)))


class HoldingNode:
    """``/hold`` requests are kept unanswered until ``release``; any other is answered ``w<worker>`` at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.held: list[tuple[bytes, object]] = []
        self.backend = None

    def app(self, req, send):
        if req.path.startswith("/hold"):
            with self.lock:
                self.held.append((req.sid, send))
            return
        respond(send, req.sid, b"w%d" % req.sid[0], headers=[("Content-Type", "text/plain")])

    def count(self) -> int:
        with self.lock:
            return len(self.held)

    def workers(self) -> set[int]:
        with self.lock:
            return {sid[0] for sid, _ in self.held}

    def release(self) -> None:
        with self.lock:
            held, self.held = self.held, []
        for sid, send in held:
            self.backend.call_later(0, lambda sid=sid, send=send: respond(send, sid, b"done"))


def start(make_gateway, make_backend, options):
    # The node holds requests for as long as a test needs: no 504 among the answers read.
    options = {"backend-timeout": "60", **options}
    gw = make_gateway(vhosts={HOST: {"nodes": ["NODE1"], "options": options}}, options={"workers": 2})
    node = HoldingNode()
    node.backend = make_backend(gw, "NODE1", HTTPHandler(node.app))
    return gw, node, workers_ready(gw)


def pinned(gw, wanted: dict[int, int]) -> dict[int, list[RawConn]]:
    """Keep-alive connections, each from its own address, that worker k serves, ``wanted[k]`` of them (each has
    had one request answered; the others are closed). A refusal (a close not yet counted) is tried again."""
    kept: dict[int, list[RawConn]] = {k: [] for k in wanted}
    for _ in range(2000):
        if all(len(kept[k]) == n for k, n in wanted.items()):
            return kept
        conn = RawConn(gw.port, timeout=5, source=next(_sources))
        conn.send(request_bytes("GET", "/", HOST))
        resp = conn.read_response(timeout=5)
        if resp.status == 503:
            conn.close()
            time.sleep(0.05)
            continue
        index = served_by(resp)
        if len(kept.get(index, [])) < wanted.get(index, 0):
            kept[index].append(conn)
        else:
            conn.close()
    raise AssertionError(f"could not pin {wanted} connections: {({k: len(v) for k, v in kept.items()})}")


def send_holds(conns: list[RawConn]) -> None:
    for conn in conns:
        conn.send(request_bytes("GET", "/hold", HOST))


def test_max_in_flight_10_with_two_workers_admits_10_not_20(make_gateway, make_backend):
    gw, node, _ = start(make_gateway, make_backend, {"max-in-flight": "10"})
    conns = pinned(gw, {0: 8, 1: 8})
    send_holds(conns[0] + conns[1])
    # Exactly 10 reach the node, from both workers (8 per worker: each worker's own count alone would admit all
    # 16); the other 6 are answered 503 at once.
    wait_until(lambda: node.count() >= 10, 5, what="10 held requests")
    refused = []
    for conn in conns[0] + conns[1]:
        try:
            resp = conn.read_response(timeout=0.2)
        except Exception:  # noqa: BLE001 - held at the node: no answer yet
            continue
        refused.append(resp)
    time.sleep(0.3)
    assert node.count() == 10, node.count()
    assert node.workers() == {0, 1}, node.workers()
    assert len(refused) == 6 and all(r.status == 503 for r in refused), [r.status for r in refused]
    assert all(b"backends are busy" in r.body for r in refused)
    # Once the node answers, the places are free again, on either worker.
    node.release()
    fresh = pinned(gw, {0: 5, 1: 5})
    send_holds(fresh[0] + fresh[1])
    wait_until(lambda: node.count() == 10, 5, what="10 new held requests")
    assert node.workers() == {0, 1}
    node.release()
    for conn in conns[0] + conns[1] + fresh[0] + fresh[1]:
        conn.close()


def test_vhost_max_connections_holds_across_workers(make_gateway, make_backend):
    gw, _, _ = start(make_gateway, make_backend, {"max-connections": "3"})
    # Worker 0 holds the vhost's 3 places: a connection the other worker accepts is refused too.
    kept = pinned(gw, {0: 3})[0]

    def attempt():
        with RawConn(gw.port, timeout=5, source=next(_sources)) as conn:
            conn.send(request_bytes("GET", "/", HOST))
            return conn.read_response(timeout=5)

    def refused_by(index):
        return re.search(rf'"GET / HTTP/1.1" 503 .* worker={index}$', gw.stdout(), re.M)

    for _ in range(200):
        resp = attempt()
        assert resp.status == 503 and b"too many open connections" in resp.body, (resp.status, resp.body)
        if refused_by(1):
            break
    assert wait_until(lambda: refused_by(1), 5, what="a refusal by worker 1"), gw.stdout()[-2000:]
    # One place frees: a new connection is admitted.
    kept.pop().close()
    wait_until(lambda: attempt().status == 200, 5, what="a place after a close")
    for conn in kept:
        conn.close()


def test_kill_9_of_a_worker_holding_requests_in_flight_frees_its_places(make_gateway, make_backend):
    gw, node, pids = start(make_gateway, make_backend, {"max-in-flight": "10"})
    holder = holder_pid(gw, pids)
    (victim,) = [p for p in pids if p != holder]
    victim_index, holder_index = gw.worker_index(victim), gw.worker_index(holder)
    conns = pinned(gw, {victim_index: 10, holder_index: 1})
    send_holds(conns[victim_index])
    wait_until(lambda: node.count() == 10, 5, what="10 requests held through the victim")
    assert node.workers() == {victim_index}
    # The holder has none of its own, and is refused: the victim holds every place.
    send_holds(conns[holder_index])
    assert conns[holder_index][0].read_response(timeout=5).status == 503
    os.kill(victim, signal.SIGKILL)
    gw.wait_for_replacement(victim, 2)
    # The parent's line may reach its log a moment after the new worker's pid shows.
    released = rf"worker {victim_index} held 10 requests in flight and \d+ connections at vhosts; released"
    wait_until(lambda: re.search(released, gw.stderr()), 5, what="the parent's line on the released places")
    workers_ready(gw)
    for conn in conns[victim_index]:
        conn.close()
    # The 10 places are back: new requests are admitted up to the limit, on both workers.
    before = node.count()
    fresh = pinned(gw, {0: 6, 1: 6})
    send_holds(fresh[0] + fresh[1])
    wait_until(lambda: node.count() - before == 10, 5, what="10 new requests held")
    time.sleep(0.3)
    assert node.count() - before == 10
    node.release()
    for conn in conns[holder_index] + fresh[0] + fresh[1]:
        conn.close()


def test_max_buffered_is_split_between_the_workers(make_gateway, make_backend):
    """Each worker gets max-buffered / 2: the scrape (the workers' sum) reports the configured budget."""
    from test_metrics import Scrape, admin_get
    from helpers import free_port
    gw = make_gateway(options={"workers": 2, "max-buffered": "32m", "admin": f"127.0.0.1:{free_port()}"})
    workers_ready(gw)
    wait_until(lambda: admin_get(gw).status == 200, 5, what="the admin listener")
    scrape = Scrape(admin_get(gw).body.decode())
    assert scrape.value("blastbeat_max_buffered_bytes") == 32 * 1024 * 1024
