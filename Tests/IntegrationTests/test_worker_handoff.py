"""A connection per worker (README "Worker processes", docs/PROTOCOL.md "Worker processes"): with ``workers = 2``
the gateway's READY says ``X-BlastBeat-Workers: 2``; a backend that opens one connection per worker, each
labelled ``X-BlastBeat-Worker: K`` (libzmq's ``ZMQ_METADATA``) and all with the same identity, has every
connection at the worker it names (one that lands elsewhere is handed over with its socket and ZMTP state, CURVE
included) and gets each worker's requests on that worker's connection: no request or reply crosses the worker
mesh. A label that names no worker is logged and the connection stays; an unlabelled connection still serves
both workers through the mesh; a killed worker's connection comes back by itself once the parent restarts it.

Which worker made a request: the first byte of its sid (test_workers.py). The raw backends below are pyzmq
DEALERs, with the same socket options an SDK sets."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import zmq

from curve_helpers import KeyPair, RawZMTP, command, frame, greeting, metadata, site_config
from helpers import RawConn, free_port, request_bytes, socket_inodes, tcp_inodes, wait_until
from test_metrics import Scrape, admin_get
from test_workers import holder_pid, workers_ready


class LabelledBackend(threading.Thread):
    """One backend process's view: a DEALER per label (``labels``: ints, or raw bytes for a malformed label, or
    None for no label), all with ``identity``, polled together; every request is answered on the socket it came
    on with ``w<sid[0]> l<label>``. Records, per label, each request's sid[0] and the gateway's
    ``X-BlastBeat-Workers`` as read from a received frame (``zmq_msg_gets``)."""

    def __init__(self, endpoint: str, identity: bytes, labels, curve: KeyPair | None = None,
                 server_key: bytes | None = None, source: str = "127.0.0.9"):
        super().__init__(daemon=True)
        self.endpoint, self.identity, self.labels = endpoint, identity, list(labels)
        self.curve, self.server_key, self.source = curve, server_key, source
        self.lock = threading.Lock()
        self.requests: dict[object, list[int]] = {label: [] for label in self.labels}
        self.workers_property: dict[object, str] = {}
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self._started = threading.Event()

    def run(self) -> None:
        ctx = zmq.Context()
        sockets = {}
        try:
            poller = zmq.Poller()
            for label in self.labels:
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.IDENTITY, self.identity)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RECONNECT_IVL, 100)
                if label is not None:
                    value = label if isinstance(label, bytes) else str(label).encode()
                    sock.setsockopt(zmq.METADATA, b"X-BlastBeat-Worker:" + value)
                if self.curve is not None:
                    sock.curve_secretkey = self.curve.secret
                    sock.curve_publickey = self.curve.public
                    sock.curve_serverkey = self.server_key
                sock.connect(self.endpoint.replace("tcp://", f"tcp://{self.source}:0;", 1))
                sock.send_multipart([b"", b"pong", b""])  # the announcement, queued until connected
                sockets[sock] = label
                poller.register(sock, zmq.POLLIN)
            self._started.set()
            while not self._stop_event.is_set():
                for sock, _ in poller.poll(10):
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self.handle(sock, sockets[sock], frames)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            for sock in sockets:
                sock.close(linger=0)
            ctx.term()

    def handle(self, sock, label, frames) -> None:
        try:
            workers = frames[0].get("X-BlastBeat-Workers")
        except zmq.ZMQError:
            workers = None
        with self.lock:
            self.workers_property[label] = workers
        if len(frames) != 3:
            self.errors.append(f"{len(frames)} frames")
            return
        sid, kind = frames[0].bytes, frames[1].bytes
        if kind == b"ping":
            sock.send_multipart([b"", b"pong", b""])
        elif kind == b"uwsgi":
            with self.lock:
                self.requests[label].append(sid[0])
            body = b"w%d l%s" % (sid[0], str(label).encode())
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
            sock.send_multipart([sid, b"headers", head + body])

    def start(self) -> "LabelledBackend":
        super().start()
        self._started.wait(5)
        return self

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def seen(self, label) -> list[int]:
        with self.lock:
            return list(self.requests[label])


@pytest.fixture
def backends():
    started: list[LabelledBackend] = []
    yield started
    for b in started:
        b.stop()
    errors = [e for b in started for e in b.errors]
    assert not errors, errors


def gateway(make_gateway, tmp_path, curve: bool, **options):
    """``workers = 2`` with an admin listener; with ``curve`` the gateway has a key and NODE1's key is listed."""
    opts = {"workers": 2, "admin": f"127.0.0.1:{free_port()}", "ping-freq": 1, **options}
    keys = None
    if curve:
        keys = {"server": KeyPair.create(tmp_path / "keys", "gateway"), "node": KeyPair.create(tmp_path / "keys", "node1")}
        opts["curve-key"] = str(keys["server"].secret_file)
    gw = make_gateway(options=opts, start=False)
    if curve:
        site_config(gw, {"localhost": [f"node-key = NODE1 {keys['node'].z85}"]})
    gw.start()
    workers_ready(gw)
    return gw, keys


def backend_for(gw, keys, labels, identity: bytes = b"NODE1", source: str = "127.0.0.9") -> LabelledBackend:
    if keys is None:
        return LabelledBackend(gw.endpoint, identity, labels, source=source)
    return LabelledBackend(gw.endpoint, identity, labels, curve=keys["node"], server_key=keys["server"].public,
                           source=source)


def scrape(gw) -> Scrape:
    resp = admin_get(gw)
    assert resp.status == 200, resp.raw[:300]
    return Scrape(resp.body.decode())


def get_from(source: str, gw) -> tuple[int, int | None, str | None]:
    """One GET on a new connection from ``source``: (status, the worker that made the sid, the label of the
    connection that answered)."""
    with RawConn(gw.port, timeout=10, source=source) as conn:
        conn.send(request_bytes("GET", "/", "localhost"))
        resp = conn.read_response(timeout=10)
    match = re.fullmatch(rb"w(\d+) l(\S+)", resp.body)
    if resp.status != 200 or not match:
        return resp.status, None, None
    return resp.status, int(match.group(1)), match.group(2).decode()


def load(gw, count: int) -> list[tuple[int, int | None, str | None]]:
    """``count`` GETs from four client addresses at once (each a new connection, so both workers accept)."""
    sources = [f"127.0.0.{n}" for n in (2, 3, 4, 5)]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: get_from(sources[i % len(sources)], gw), range(count)))


def both_labels_connected(gw) -> bool:
    """Both workers use their own connection of NODE1: every answer comes on the connection labelled for the
    worker that made the request."""
    answers = load(gw, 16)
    return all(status == 200 and label == str(worker) for status, worker, label in answers) and \
        {worker for _, worker, _ in answers} == {0, 1}


@pytest.mark.parametrize("curve", [False, True], ids=["null", "curve"])
def test_a_connection_per_worker_serves_each_workers_requests_without_the_mesh(make_gateway, backends, tmp_path,
                                                                                curve):
    gw, keys = gateway(make_gateway, tmp_path, curve)
    backend = backend_for(gw, keys, [0, 1]).start()
    backends.append(backend)
    wait_until(lambda: both_labels_connected(gw), 10, interval=0.2, what="both labelled connections in use")
    before = scrape(gw).value("blastbeat_worker_mesh_forwarded_messages_total")
    # (Until the second connection was up, its worker's requests may have gone through the first.)
    warm = {label: len(backend.seen(label)) for label in (0, 1)}

    answers = load(gw, 200)
    assert all(status == 200 for status, _, _ in answers), answers
    served = {0: 0, 1: 0}
    for _, worker, label in answers:
        assert label == str(worker), (worker, label)
        served[worker] += 1
    assert served[0] >= 10 and served[1] >= 10, served
    # At the backend: each socket got only the requests of the worker its label names.
    assert set(backend.seen(0)[warm[0]:]) == {0} and set(backend.seen(1)[warm[1]:]) == {1}
    # The gateway's READY said how many workers serve; pyzmq reads it from any received frame.
    assert backend.workers_property == {0: "2", 1: "2"}

    after = scrape(gw)
    # None of the 200 crossed the mesh (one may have while the second connection was still on its way).
    assert after.value("blastbeat_worker_mesh_forwarded_messages_total") == before
    assert after.value("blastbeat_responses_total", vhost="localhost", code="2xx") >= 200
    assert after.value("blastbeat_backend_handover_failures_total") == 0
    gw.stop()
    assert not re.search(r"ZMTP|handover|could not hand", "\n".join(
        line for line in gw.stderr().splitlines() if "warning" in line.lower())), gw.stderr()[-3000:]


def established_per_worker(gw) -> dict[int, int]:
    """Worker index → backend connections (established on the ROUTER's port) whose socket it holds."""
    established = tcp_inodes(gw.zmq_port, "01")
    held = {}
    for pid in gw.worker_pids():
        try:
            index = gw.worker_index(pid)
        except LookupError:
            continue  # a worker just forked has not logged its start: it holds nothing yet, and waits poll again
        held[index] = len(socket_inodes(pid) & established)
    return held


@pytest.mark.parametrize("curve", [False, True], ids=["null", "curve"])
def test_connections_that_land_at_the_wrong_worker_are_handed_to_theirs(make_gateway, backends, tmp_path, curve):
    """Eight processes, each with one connection labelled 0 and one labelled 1: whichever worker accepts a
    connection, each worker ends up holding exactly the eight labelled for it, and the handovers are counted."""
    gw, keys = gateway(make_gateway, tmp_path, curve)
    for n in range(8):
        backends.append(backend_for(gw, keys, [0, 1], identity=b"NODE1#%d" % n, source=f"127.0.0.{20 + n}").start())
    wait_until(lambda: established_per_worker(gw) == {0: 8, 1: 8}, 10, interval=0.1,
               what="eight connections at each worker")
    metrics = wait_until(lambda: (s := scrape(gw)).value("blastbeat_node_instances_connected", node="NODE1") == 8 and s,
                         5, what="eight instances connected")
    handed = metrics.value("blastbeat_backend_handovers_total")
    assert 1 <= handed <= 16, handed
    assert metrics.value("blastbeat_backend_handover_failures_total") == 0
    answers = load(gw, 64)
    assert all(status == 200 and label == str(worker) for status, worker, label in answers), answers
    assert scrape(gw).value("blastbeat_worker_mesh_forwarded_messages_total") == 0


def properties(data: bytes) -> dict[bytes, bytes]:
    """ZMTP metadata: name-length, name, 4-byte value length, value."""
    out, i = {}, 0
    while i < len(data):
        n = data[i]
        name, size = data[i + 1:i + 1 + n], int.from_bytes(data[i + 1 + n:i + 5 + n], "big")
        out[name] = data[i + 5 + n:i + 5 + n + size]
        i += 5 + n + size
    return out


def test_what_a_handed_over_connection_sent_with_its_handshake_is_read_by_the_worker_adopting_it(make_gateway,
                                                                                                   tmp_path):
    """Raw NULL peers (by hand, no libzmq) send greeting, READY with a label and a credit announcement in one
    write: the worker that accepts reads all of it at once, so the announcement is among the bytes a handover
    carries. Every connection, handed over or not, gets its `credit` acknowledgement and its ping, and the
    gateway's READY carries X-BlastBeat-Workers."""
    gw, _ = gateway(make_gateway, tmp_path, curve=False)
    peers = []
    for n in range(8):
        label = str(n % 2).encode()
        ready = command(b"READY", metadata(Socket_Type=b"DEALER", Identity=b"NODE1#raw%d" % n, X_BlastBeat_Worker=label))
        announce = frame(b"", more=True) + frame(b"pong", more=True) + frame(b"credit")
        peer = RawZMTP(gw.zmq_port, source=f"127.0.0.{40 + n}")
        peer.send(greeting(b"NULL", minor=1) + ready + announce)
        peers.append(peer)
    try:
        for peer in peers:
            peer.read_greeting()
            name, data = peer.read_command()
            assert name == b"READY" and properties(data) == {b"Socket-Type": b"ROUTER", b"X-BlastBeat-Workers": b"2"}
            seen = set()
            while seen != {b"credit", b"ping"}:
                parts = [peer.read_frame()]
                while parts[-1][0] & 1:
                    parts.append(peer.read_frame())
                assert [body for _, body in parts][0::2] == [b"", b""], parts
                seen.add(parts[1][1])
        metrics = scrape(gw)
        assert metrics.value("blastbeat_backend_handovers_total") >= 1
        assert metrics.value("blastbeat_backend_handover_failures_total") == 0
        assert metrics.value("blastbeat_node_instances_connected", node="NODE1") == 8
        assert established_per_worker(gw) == {0: 4, 1: 4}
    finally:
        for peer in peers:
            peer.close()


def test_a_label_naming_no_worker_stays_and_is_logged(make_gateway, backends, tmp_path):
    gw, _ = gateway(make_gateway, tmp_path, curve=False)
    backends.append(backend_for(gw, None, [7]).start())
    backends.append(LabelledBackend(gw.endpoint, b"NODE1#x", [b"one"], source="127.0.0.10").start())
    wait_until(lambda: len(re.findall(r"asks for worker (7|\"one\") \(X-BlastBeat-Worker\), but 2 workers serve "
                                      r"\(0 to 1\): it stays at worker [01]", gw.stderr())) == 2, 5,
               what="both mislabelled connections logged")
    assert scrape(gw).value("blastbeat_backend_mislabelled_connections_total") == 2
    # Each connection stays where it landed and serves both workers, the other one's requests through the mesh.
    answers = load(gw, 60)
    assert all(status == 200 for status, _, _ in answers), answers
    assert {worker for _, worker, _ in answers} == {0, 1}
    assert scrape(gw).value("blastbeat_worker_mesh_forwarded_messages_total") > 0


def test_an_unlabelled_connection_serves_both_workers_through_the_mesh(make_gateway, backends, tmp_path):
    gw, _ = gateway(make_gateway, tmp_path, curve=False)
    backend = backends.append(backend_for(gw, None, [None]).start()) or backends[-1]
    wait_until(lambda: scrape(gw).value("blastbeat_node_instances_connected", node="NODE1") == 1, 5,
               what="NODE1 connected")
    answers = load(gw, 60)
    assert all(status == 200 for status, _, _ in answers), answers
    assert {worker for _, worker, _ in answers} == {0, 1}
    assert set(backend.seen(None)) == {0, 1}
    # The gateway still says how many workers serve; a backend that does not look keeps one connection.
    assert backend.workers_property == {None: "2"}
    metrics = scrape(gw)
    assert metrics.value("blastbeat_worker_mesh_forwarded_messages_total") > 0
    # An unlabelled connection is placed at its identity's home worker (WorkerLabel.home: FNV-1a of "NODE1"
    # modulo 2 is 0), so that every unlabelled connection claiming NODE1 meets there: handed over once if it
    # landed at worker 1.
    assert metrics.value("blastbeat_backend_handovers_total") in (0, 1)
    assert metrics.value("blastbeat_backend_handover_failures_total") == 0
    assert gw.worker_index(holder_pid(gw, gw.worker_pids())) == 0


def test_kill_9_of_worker_1_its_connection_comes_back_after_the_restart(make_gateway, backends, tmp_path):
    gw, keys = gateway(make_gateway, tmp_path, curve=False)
    backend = backend_for(gw, keys, [0, 1]).start()
    backends.append(backend)
    wait_until(lambda: both_labels_connected(gw), 10, interval=0.2, what="both labelled connections in use")
    warm = len(backend.seen(1))
    victim = worker_pid(gw, 1)
    os.kill(victim, signal.SIGKILL)
    gw.wait_for_replacement(victim, 2)
    assert re.search(rf"worker 1 \(pid {victim}\) was killed by signal 9; starting it again", gw.stderr())
    # libzmq reconnects the labelled-1 socket by itself; wherever it lands it ends at the new worker 1.
    wait_until(lambda: both_labels_connected(gw), 15, interval=0.2, what="worker 1 served on its own connection again")
    # The connection labelled 1 never stayed at worker 0 (while worker 1 was down it was closed there; the new
    # worker 1 may have used the one labelled 0 through the mesh until its own was back).
    assert len(backend.seen(1)) > warm and set(backend.seen(1)[warm:]) == {1}


def worker_pid(gw, index: int, timeout: float = 2.0) -> int:
    """The pid of worker ``index``, once it has logged its start."""
    def find():
        for pid in gw.worker_pids():
            try:
                if gw.worker_index(pid) == index:
                    return pid
            except LookupError:
                pass
        return None
    return wait_until(find, timeout, interval=0.01, what=f"worker {index} started")


def test_a_connection_for_a_worker_that_is_down_is_closed_and_the_failure_logged(make_gateway, tmp_path):
    """Worker 1 killed twice within a second of its start waits a second before its next start (README "Worker
    processes"); a connection labelled 1 that lands at worker 0 meanwhile cannot be handed over: worker 0 closes
    it (libzmq would connect again), logs why and counts it."""
    gw, _ = gateway(make_gateway, tmp_path, curve=False)
    for _ in range(2):
        victim = worker_pid(gw, 1)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in gw.worker_pids(), 2, interval=0.01, what="worker 1 gone")
    wait_until(lambda: re.search(r"worker 1 \(pid \d+\) was killed by signal 9 again within 1 s of its start; "
                                 r"starting it again in 1 s", gw.stderr()), 2, interval=0.01, what="the delayed restart")
    time.sleep(0.05)  # worker 0 has seen its link to worker 1 close
    ready = command(b"READY", metadata(Socket_Type=b"DEALER", Identity=b"NODE1#late", X_BlastBeat_Worker=b"1"))
    with RawZMTP(gw.zmq_port, source="127.0.0.60") as peer:
        peer.send(greeting(b"NULL", minor=1) + ready)
        assert peer.closed_within(2)
    wait_until(lambda: re.search(r'could not hand the connection of "NODE1#late" from 127\.0\.0\.60:\d+ to worker 1: '
                                 r"worker 1 is not running; closed it \(its libzmq connects again\)", gw.stderr()), 2,
               what="the failed handover logged")
    assert scrape(gw).value("blastbeat_backend_handover_failures_total") == 1
    # Once worker 1 is back, the same label is handed over again.
    wait_until(lambda: len(gw.worker_pids()) == 2, 3, interval=0.05, what="worker 1 started again")
    workers_ready(gw)
    wait_until(lambda: established_per_worker(gw).get(1, 0) == 0, 2, what="nothing held by the new worker 1")
    peers = []
    try:
        for n in range(4):
            peer = RawZMTP(gw.zmq_port, source=f"127.0.0.{61 + n}")
            ident = b"NODE1#back%d" % n
            peer.send(greeting(b"NULL", minor=1) + command(b"READY", metadata(
                Socket_Type=b"DEALER", Identity=ident, X_BlastBeat_Worker=b"1")))
            peers.append(peer)
        wait_until(lambda: established_per_worker(gw) == {0: 0, 1: 4}, 5, interval=0.05,
                   what="the four connections at worker 1")
    finally:
        for peer in peers:
            peer.close()
