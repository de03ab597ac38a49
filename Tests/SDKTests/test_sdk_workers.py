"""One connection per gateway worker (docs/PROTOCOL.md, "Worker processes").

Part (a), without the gateway: real pyzmq ROUTERs stand in for the gateway's workers, each advertising
``X-BlastBeat-Workers`` with ZMQ_METADATA set before bind, and read each connection's ``X-BlastBeat-Worker``
label with ``frame.get``. One libzmq ROUTER cannot hold two connections with the same routing identity (the
second is ignored, or with ROUTER_HANDOVER the first is cut), while the gateway holds one per worker; so the
node's one endpoint is a small TCP splice standing in for the kernel handing each accepted connection to one
worker: the k-th connection it accepts goes to ROUTER k. The ZMTP handshake still runs between the node's
DEALER and the ROUTER (the splice copies bytes), so the ROUTER sees the label the node set.

Part (b), end to end: the real gateway with ``workers = 2``, an in-process Node and ``python -m blastbeat.wsgi``.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple

import pytest
import zmq

from blastbeat import Node, uwsgi
from blastbeat import LinkState
from sdk_helpers import wait_until


class WorkerRouter:
    """A ROUTER standing in for one gateway worker: advertises ``workers`` (None: no property) in its handshake."""

    def __init__(self, ctx: "zmq.Context", workers: Optional[object],
                 curve: Optional[Tuple[bytes, bytes]] = None) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        try:
            self.sock.setsockopt(zmq.LINGER, 0)
            if curve is not None:  # (public, secret): the server side of CurveZMQ
                self.sock.curve_server = True
                self.sock.curve_publickey, self.sock.curve_secretkey = curve
            if workers is not None:
                # Before bind: the option applies to the handshakes of connections accepted afterwards.
                self.sock.setsockopt(zmq.METADATA, f"X-BlastBeat-Workers:{workers}".encode())
            self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        except BaseException:
            self.sock.close(linger=0)  # or the context's term() at teardown would wait for it
            raise
        #: Every message received: (routing id, sid, type, body, the connection's X-BlastBeat-Worker or None).
        self.log: List[Tuple[bytes, bytes, bytes, bytes, Optional[str]]] = []

    def recv(self, timeout: float = 5.0) -> Tuple[bytes, bytes, bytes, bytes, Optional[str]]:
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"nothing arrived at the ROUTER on port {self.port} within {timeout}s")
        frames = self.sock.recv_multipart(copy=False)
        assert len(frames) == 4, [f.bytes for f in frames]
        try:
            label: Optional[str] = frames[1].get("X-BlastBeat-Worker")
        except zmq.ZMQError:
            label = None
        message = (frames[0].bytes, frames[1].bytes, frames[2].bytes, frames[3].bytes, label)
        self.log.append(message)
        return message

    def expect(self, kind: bytes, sid: Optional[bytes] = None, timeout: float = 5.0):
        """The next message of ``kind`` (for ``sid`` if given); others (pongs...) are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if message[2] == kind and (sid is None or message[1] == sid):
                return message

    def answer_announcements(self, grant_credit: bool) -> None:
        """Answer the announcing pongs that have arrived (without waiting), as :func:`answer_announcement`."""
        while self.sock.poll(0):
            identity, sid, kind, body, _ = self.recv(0)
            if (sid, kind, body) == (b"", b"pong", b"credit"):
                self.send(identity, b"", b"credit" if grant_credit else b"ping")

    def quiet(self, kind: bytes, seconds: float) -> bool:
        """True when no message of ``kind`` arrives for ``seconds``."""
        try:
            self.expect(kind, timeout=seconds)
        except TimeoutError:
            return True
        return False

    def send(self, identity: bytes, sid: bytes, kind: bytes, body: bytes = b"") -> None:
        self.sock.send_multipart([identity, sid, kind, body])

    def request(self, identity: bytes, sid: bytes, path: str) -> None:
        env = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "UWSGI_SCHEME": "http", "HTTP_HOST": "localhost"}
        self.send(identity, sid, b"uwsgi", uwsgi.encode(env))

    def close(self) -> None:
        self.sock.close(linger=0)


class AcceptSplice:
    """The node's one endpoint: a TCP listener that splices the k-th connection it accepts (since the last
    :meth:`route`) to ``ports[min(k, len(ports) - 1)]``, as the kernel hands each accepted connection of the
    gateway's shared listening socket to one worker. At most 16 connections at a time; every socket has a
    timeout; the thread stops at :meth:`close`."""

    MAX_PAIRS = 16

    def __init__(self, ports: List[int]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._ports = list(ports)
        self._since_route = 0
        #: Connections accepted in all, and those open now (pairs of client side, worker side).
        self.accepted = 0
        self._pairs: Dict[socket.socket, socket.socket] = {}
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="accept-splice", daemon=True)
        self._thread.start()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs) // 2

    def route(self, ports: List[int]) -> None:
        """Cut every connection (as a gateway restart does) and send the next ones to ``ports``."""
        with self._lock:
            for sock in list(self._pairs):
                self._drop(sock)
            self._ports = list(ports)
            self._since_route = 0

    def cut(self, port: int) -> None:
        """Cut the connection spliced to the worker on ``port``."""
        with self._lock:
            self._drop(next(s for s in self._pairs if s.getpeername()[1] == port))

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        if len(self._pairs) // 2 >= self.MAX_PAIRS:
            client.close()
            return
        port = self._ports[min(self._since_route, len(self._ports) - 1)]
        self._since_route += 1
        self.accepted += 1
        worker = socket.create_connection(("127.0.0.1", port), timeout=2)
        for s in (client, worker):
            s.settimeout(2)
            self._sel.register(s, selectors.EVENT_READ)
        self._pairs[client], self._pairs[worker] = worker, client

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.05):
                with self._lock:
                    sock = key.fileobj
                    if sock is self.listener:
                        self._accept()
                        continue
                    if sock not in self._pairs:
                        continue  # dropped by route() meanwhile
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                        if data:
                            self._pairs[sock].sendall(data)  # type: ignore[index]
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(sock)  # type: ignore[arg-type]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for sock in list(self._pairs):
                self._drop(sock)
        self._sel.close()
        self.listener.close()


class FakeWorkers:
    """ROUTERs for a gateway's workers behind one :class:`AcceptSplice` endpoint."""

    def __init__(self, ctx: "zmq.Context", count: int, advertise: Optional[object],
                 curve: Optional[Tuple[bytes, bytes]] = None) -> None:
        self.ctx = ctx
        self.routers = [WorkerRouter(ctx, advertise, curve) for _ in range(count)]
        self.splice = AcceptSplice([r.port for r in self.routers])
        self.endpoint = self.splice.endpoint
        self.retired: List[WorkerRouter] = []

    def restart(self, count: int, advertise: Optional[object]) -> None:
        """The gateway restarts with another worker count: new ROUTERs, every connection cut."""
        self.retired += self.routers
        self.routers = [WorkerRouter(self.ctx, advertise) for _ in range(count)]
        self.splice.route([r.port for r in self.routers])

    def close(self) -> None:
        self.splice.close()
        for r in self.routers + self.retired:
            r.close()


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def fake_workers(zctx):
    made: List[FakeWorkers] = []

    def factory(count: int, advertise: Optional[object], curve: Optional[Tuple[bytes, bytes]] = None) -> FakeWorkers:
        fw = FakeWorkers(zctx, count, advertise, curve)
        made.append(fw)
        return fw

    yield factory
    for fw in made:
        fw.close()


@pytest.fixture
def node_factory():
    nodes: List[Node] = []

    def factory(endpoints, **options) -> Node:
        n = Node(endpoints, "app", worker_echo, instance="w", **options).start()
        nodes.append(n)
        return n

    yield factory
    for n in nodes:
        n.stop(timeout=1)


def worker_echo(req) -> None:
    req.respond(200, [("Content-Type", "text/plain")], f"worker {req.worker} {req.path}")


def sid_of(worker: int) -> bytes:
    """A sid as a gateway worker makes it: its first byte is the worker's index."""
    return bytes([worker]) + os.urandom(15)


def states(node: Node) -> List[Tuple[int, LinkState, int]]:
    return [(c.worker, c.state, c.workers) for c in node.connections]


def answer_announcement(router: WorkerRouter, grant_credit: bool) -> Tuple[bytes, Optional[str]]:
    """Wait for a connection's announcing pong and answer as the gateway does: an empty-sid ``credit``
    (credit granted), or else a ``ping``. Returns the routing identity and the connection's label."""
    deadline = time.monotonic() + 5
    while True:  # answers to pings are pongs too, with an empty body
        identity, sid, _, body, label = router.expect(b"pong", timeout=max(0.01, deadline - time.monotonic()))
        if body:
            break
    assert (sid, body) == (b"", b"credit")
    router.send(identity, b"", b"credit" if grant_credit else b"ping")
    return identity, label


def test_the_routers_property_reaches_a_plain_dealer(zctx, fake_workers):
    """The stand-in is sound: what the ROUTER sets before bind is what a connecting peer reads, and a label set
    with ZMQ_METADATA is what the ROUTER reads."""
    fw = fake_workers(1, advertise=2)
    dealer = zctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.IDENTITY, b"probe")
    dealer.setsockopt(zmq.METADATA, b"X-BlastBeat-Worker:0")
    dealer.connect(fw.endpoint)
    try:
        dealer.send_multipart([b"", b"pong", b""])
        identity, _, _, _, label = fw.routers[0].expect(b"pong")
        assert (identity, label) == (b"probe", "0")
        fw.routers[0].send(b"probe", b"", b"ping")
        assert dealer.poll(5000)
        frames = dealer.recv_multipart(copy=False)
        assert frames[1].bytes == b"ping" and frames[0].get("X-BlastBeat-Workers") == "2"
    finally:
        dealer.close()


def test_two_workers_get_a_connection_each_and_each_answer_comes_back_on_it(fake_workers, node_factory):
    fw = fake_workers(2, advertise=2)
    node = node_factory(fw.endpoint)
    first, second = fw.routers
    # Worker 0 does not grant credit; worker 1 does: credit is per connection.
    identity, label = answer_announcement(first, grant_credit=False)
    assert (identity, label) == (node.identity, "0")
    # Told there are 2 workers, the node opens the connection for worker 1 by itself, same identity.
    identity, label = answer_announcement(second, grant_credit=True)
    assert (identity, label) == (node.identity, "1")
    assert node.wait_connected(5, all_workers=True)
    assert states(node) == [(0, LinkState.SERVING, 2), (1, LinkState.SERVING, 2)]
    assert fw.splice.open_connections == 2

    # Pings are answered on the connection they came in on.
    for router, label in ((first, "0"), (second, "1")):
        router.send(node.identity, b"", b"ping")
        assert router.expect(b"pong")[1:] == (b"", b"pong", b"", label)

    for round_ in range(3):
        sid0, sid1 = sid_of(0), sid_of(1)
        first.request(node.identity, sid0, f"/a{round_}")
        second.request(node.identity, sid1, f"/b{round_}")
        # Worker 0 sent it without credit: the answer comes at once, on connection 0.
        _, _, _, head, label = first.expect(b"headers", sid0)
        assert label == "0" and head.endswith(f"worker 0 /a{round_}".encode())
        # Worker 1 granted credit: nothing until it grants some for this sid, then on connection 1.
        assert second.quiet(b"headers", 0.3)
        second.send(node.identity, sid1, b"credit", (1 << 16).to_bytes(4, "big"))
        _, _, _, head, label = second.expect(b"headers", sid1)
        assert label == "1" and head.endswith(f"worker 1 /b{round_}".encode())
    # Nothing crossed: every message each ROUTER received came on its own worker's connection.
    assert {m[4] for m in first.log} == {"0"} and {m[4] for m in second.log} == {"1"}
    assert node.stats["requests"] == 6


def test_a_restart_with_fewer_workers_closes_the_extra_connection(fake_workers, node_factory):
    fw = fake_workers(2, advertise=2)
    node = node_factory(fw.endpoint)
    answer_announcement(fw.routers[0], grant_credit=True)
    answer_announcement(fw.routers[1], grant_credit=True)
    assert node.wait_connected(5, all_workers=True)
    assert len(node.connections) == 2

    # The gateway comes back with one worker: both connections are cut and reconnect by themselves (which one
    # the splice accepts first is up to libzmq's reconnect timers), each is told "1", and worker 1's closes.
    fw.restart(2, advertise=1)

    def settled() -> bool:
        for router in fw.routers:
            router.answer_announcements(grant_credit=True)
        return states(node) == [(0, LinkState.SERVING, 1)]

    wait_until(settled, 5, what="one connection, for worker 0")
    wait_until(lambda: fw.splice.open_connections == 1, 5, what="the splice to see the extra connection closed")
    assert fw.splice.accepted == 4  # no reconnect of the closed one

    # Requests go on over the remaining connection.
    holder = next(r for r in fw.routers if any(m[4] == "0" for m in r.log))
    sid = sid_of(0)
    holder.request(node.identity, sid, "/after")
    holder.send(node.identity, sid, b"credit", (1 << 16).to_bytes(4, "big"))
    _, _, _, head, label = holder.expect(b"headers", sid)
    assert label == "0" and head.endswith(b"worker 0 /after")

    # And back to two workers: the missing connection is opened again.
    fw.restart(2, advertise=2)
    for router in fw.routers:
        answer_announcement(router, grant_credit=True)
    assert node.wait_connected(5, all_workers=True)
    assert states(node) == [(0, LinkState.SERVING, 2), (1, LinkState.SERVING, 2)]


def test_no_property_means_one_connection(fake_workers, node_factory):
    fw = fake_workers(2, advertise=None)
    node = node_factory(fw.endpoint)
    router = fw.routers[0]
    identity, label = answer_announcement(router, grant_credit=True)
    assert (identity, label) == (node.identity, "0")
    assert node.wait_connected(5, all_workers=True)
    assert states(node) == [(0, LinkState.SERVING, 1)]
    time.sleep(0.5)  # time enough for a second connection, were one coming
    assert fw.splice.accepted == 1 and fw.routers[1].quiet(b"pong", 0.1)
    sid = os.urandom(16)
    router.request(node.identity, sid, "/one")
    router.send(node.identity, sid, b"credit", (1 << 16).to_bytes(4, "big"))
    assert router.expect(b"headers", sid)[3].endswith(b"worker 0 /one")


@pytest.mark.parametrize("advertise", ["0", "x2", "65", "1000", "-1", " 2"])
def test_a_count_that_is_not_one_to_64_keeps_one_connection(fake_workers, node_factory, caplog, advertise):
    caplog.set_level("INFO", logger="blastbeat")
    fw = fake_workers(2, advertise=advertise)
    node = node_factory(fw.endpoint)
    answer_announcement(fw.routers[0], grant_credit=False)
    assert node.wait_connected(5, all_workers=True)
    assert states(node) == [(0, LinkState.SERVING, 1)]
    wait_until(lambda: f"advertises X-BlastBeat-Workers = {advertise!r}, not a count 1-64" in caplog.text, 5,
               what="the malformed count logged")
    time.sleep(0.3)
    assert fw.splice.accepted == 1


def test_a_lost_connection_reconnects_without_disturbing_the_other(fake_workers, node_factory):
    fw = fake_workers(2, advertise=2)
    node = node_factory(fw.endpoint)
    answer_announcement(fw.routers[0], grant_credit=False)
    answer_announcement(fw.routers[1], grant_credit=False)
    assert node.wait_connected(5, all_workers=True)
    first, second = fw.routers
    fw.splice.cut(second.port)  # worker 1's connection only
    # It comes back (through the splice's last route: worker 1's ROUTER) and announces itself again...
    identity, label = answer_announcement(second, grant_credit=False)
    assert label == "1"
    # ...while connection 0 kept serving throughout.
    sid = sid_of(0)
    first.request(node.identity, sid, "/steady")
    assert first.expect(b"headers", sid)[3].endswith(b"worker 0 /steady")
    assert node.wait_connected(5, all_workers=True)
    assert fw.splice.accepted == 3


def test_every_connection_of_every_gateway_uses_the_curve_keys(tmp_path, zctx, fake_workers, node_factory):
    """CURVE on both workers' connections of two gateways: the server ROUTERs admit only the listed keys, so a
    connection without the node's keys would never complete its handshake."""
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    zmq.auth.create_certificates(str(tmp_path), "gateway")
    zmq.auth.create_certificates(str(tmp_path), "node")
    gateway_keys = zmq.auth.load_certificate(str(tmp_path / "gateway.key_secret"))
    auth = ThreadAuthenticator(zctx)
    auth.start()
    try:
        auth.configure_curve(domain="*", location=str(tmp_path))  # admits the public keys there: node.key
        gateways = [fake_workers(2, advertise=2, curve=gateway_keys) for _ in range(2)]
        node = node_factory([fw.endpoint for fw in gateways], curve_key=tmp_path / "node.key_secret",
                            server_key=tmp_path / "gateway.key")
        for fw in gateways:
            assert answer_announcement(fw.routers[0], grant_credit=False)[1] == "0"
            assert answer_announcement(fw.routers[1], grant_credit=False)[1] == "1"
        assert node.wait_connected(5, all_workers=True)
        assert [(c.gateway, c.worker) for c in node.connections] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        for g, fw in enumerate(gateways):
            for w, router in enumerate(fw.routers):
                sid = sid_of(w)
                router.request(node.identity, sid, f"/g{g}")
                assert router.expect(b"headers", sid)[3].endswith(f"worker {w} /g{g}".encode())
    finally:
        auth.stop()


# ---------------------------------------------------------------------------------------------------------
# (b) End to end: the real gateway with workers = 2 (the handover is the gateway's: docs/PROTOCOL.md,
# "Worker processes"). Each answer names the worker whose connection carried the request and the worker that
# made the sid (its first byte); they must agree, both workers must serve, and the gateway must count no
# session message crossing its worker mesh.

WORKERS_APP = '''
def app(environ, start_response):
    request = environ["blastbeat.request"]
    body = b"conn %d sid %d" % (request.worker, request.sid[0])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def sid_echo(req) -> None:
    req.respond(200, [("Content-Type", "text/plain")], b"conn %d sid %d" % (req.worker, req.sid[0]))


def workers_gateway(make_gateway):
    from sdk_helpers import free_port

    admin = free_port()
    gw = make_gateway(options={"workers": "2", "admin": f"127.0.0.1:{admin}", "ping-freq": "1"})
    gw.admin_port = admin
    wait_until(lambda: all(f"worker {k} of 2 serving" in gw.stderr() for k in (0, 1)), 10, 0.05,
               what="both workers started")
    return gw


def metric(gw, name: str) -> float:
    """One unlabelled sample of the gateway's /metrics (the sum over its workers)."""
    import re

    with socket.create_connection(("127.0.0.1", gw.admin_port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        data = b""
        sock.settimeout(5)
        while chunk := sock.recv(65536):
            data += chunk
    match = re.search(rb"^" + name.encode() + rb" (\S+)$", data, re.M)
    assert match, f"no {name} in /metrics:\n{data[-2000:].decode(errors='replace')}"
    return float(match.group(1))


def get_once(port: int, source: str) -> Tuple[int, Optional[int], Optional[int]]:
    """One GET on a new connection from ``source``: (status, the connection's worker, the sid's worker)."""
    import re

    from sdk_helpers import RawConn, request_bytes

    conn = RawConn.__new__(RawConn)
    conn.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    conn.timeout, conn.buf = 10.0, bytearray()
    with conn:
        conn.send(request_bytes("GET", "/", host="localhost"))
        resp = conn.read_response()
    match = re.fullmatch(rb"conn (\d+) sid (\d+)", resp.body)
    if resp.status != 200 or not match:
        return resp.status, None, None
    return resp.status, int(match.group(1)), int(match.group(2))


def load(gw, count: int) -> List[Tuple[int, Optional[int], Optional[int]]]:
    """``count`` GETs, 8 at a time, each on a new connection (so both workers accept some)."""
    from concurrent.futures import ThreadPoolExecutor

    sources = [f"127.0.0.{n}" for n in (2, 3, 4, 5)]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: get_once(gw.port, sources[i % len(sources)]), range(count)))


def each_worker_on_its_own_connection(gw) -> bool:
    answers = load(gw, 16)
    return all(status == 200 and conn == sid for status, conn, sid in answers) and \
        {sid for _, _, sid in answers} == {0, 1}


def check_no_mesh_crossing(gw, requests: int) -> Dict[int, int]:
    """After the warm-up: ``requests`` GETs, every one answered on the connection of the worker that made it,
    both workers serving, no session message through the mesh. Returns requests per worker."""
    wait_until(lambda: each_worker_on_its_own_connection(gw), 10, 0.2, what="both workers on their own connection")
    before = metric(gw, "blastbeat_worker_mesh_forwarded_messages_total")
    answers = load(gw, requests)
    served = {0: 0, 1: 0}
    for status, conn, sid in answers:
        assert status == 200 and conn == sid, (status, conn, sid)
        served[sid] += 1
    assert served[0] >= 10 and served[1] >= 10, served
    assert metric(gw, "blastbeat_worker_mesh_forwarded_messages_total") == before
    assert metric(gw, "blastbeat_backend_handover_failures_total") == 0
    return served


def test_end_to_end_an_in_process_node_holds_a_connection_per_worker(make_gateway, make_node):
    gw = workers_gateway(make_gateway)
    node = make_node(gw, "app", sid_echo, instance="e2e")
    assert node.wait_connected(10, all_workers=True)
    assert states(node) == [(0, LinkState.SERVING, 2), (1, LinkState.SERVING, 2)]
    check_no_mesh_crossing(gw, 200)
    # One identity, two connections: the gateway counts one instance of the node.
    assert "app#e2e" in gw.stderr()


def test_end_to_end_the_wsgi_command_holds_a_connection_per_worker(make_gateway, spawn, tmp_path):
    from sdk_helpers import sdk_command

    gw = workers_gateway(make_gateway)
    (tmp_path / "workers_app.py").write_text(WORKERS_APP)
    proc = spawn(sdk_command("wsgi", "workers_app:app", "--connect", gw.endpoint, "--node", "app",
                             "--instance", "cmd", "--chdir", str(tmp_path)), name="wsgi")
    proc.wait_output(f"connected to {gw.endpoint} (worker 1)", 10)
    check_no_mesh_crossing(gw, 200)
    assert f"gateway {gw.endpoint} has 2 worker(s)" in proc.output()
