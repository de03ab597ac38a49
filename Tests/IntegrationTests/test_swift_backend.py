"""The Swift backend SDK (BlastBeatBackend) through its examples, against the real gateway.

``swift-hello`` and ``swift-echo`` are built by ``swift build`` with the gateway (``.build/debug``; set
``SWIFT_EXAMPLES_DIR`` to use other binaries). Each test starts the example processes as documented
(``--connect ENDPOINT``, ``--node NAME``, ``--instance ID``, ``--plain-identity``, ``--curve-key FILE
--server-key KEY``), talks to them through the gateway with curl, raw sockets and the ``websockets`` client
(or, for CURVE, through a pyzmq ROUTER that is a CURVE server), and at teardown stops them with SIGTERM,
which the examples handle (``BackendNode.stopOnSignals``): they must exit 0.

A process started without ``--instance`` or ``--plain-identity`` connects as ``NODE#<pid>-<8 hex digits>``,
an instance of node ``NODE`` that the gateway serves wherever ``NODE`` is configured.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth
from blastbeat import uwsgi

from helpers import REPO, RawConn, curl_fetch, http_request, request_bytes, wait_until

websockets_sync = pytest.importorskip("websockets.sync.client")


def examples_dir() -> Path:
    return Path(os.environ.get("SWIFT_EXAMPLES_DIR", REPO / ".build" / "debug"))


@pytest.fixture
def run_swift(tmp_path):
    procs: list[tuple[subprocess.Popen, object, Path]] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        binary = examples_dir() / name
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            pytest.fail(f"{binary} not found: run `swift build` (or set SWIFT_EXAMPLES_DIR)", pytrace=False)
        log_path = tmp_path / f"{name}-{len(procs)}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen([str(binary), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append((proc, log, log_path))
        return proc

    start.log_of = lambda proc: next(p for q, _, p in procs if q is proc).read_text(errors="replace")
    yield start
    problems = []
    for proc, log, log_path in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                problems.append(f"{log_path.name}: still running 5 s after SIGTERM")
        log.close()
        print(f"--- {log_path.name} (exit {proc.returncode}) ---\n{log_path.read_text(errors='replace')}")
        if proc.returncode != 0:
            problems.append(f"{log_path.name}: exited with {proc.returncode} after SIGTERM (expected 0)")
    assert not problems, "; ".join(problems)


def wait_served(port: int, timeout: float = 10.0, **kwargs):
    """Poll until the vhost's node is alive (503 while the example is starting)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = http_request(port, **kwargs)
        if resp.status != 503 or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


HELLO = b"Hello, World!"


def test_hello_get_and_head(make_gateway, run_swift):
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]})
    run_swift("swift-hello", "--connect", gw.endpoint)
    assert wait_served(gw.port).status == 200
    res = curl_fetch(gw.port, "/world?x=1")
    assert res.returncode == 0, res.stderr
    assert res.status == 200
    assert res.body == HELLO
    assert res.header("Content-Length") == "13"
    assert res.header("Content-Type") == "text/plain; charset=utf-8"
    head = http_request(gw.port, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == "13"


def test_hello_keep_alive(make_gateway, run_swift):
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]})
    run_swift("swift-hello", "--connect", gw.endpoint)
    assert wait_served(gw.port).status == 200
    with RawConn(gw.port) as c:
        for i in range(5):
            c.send(request_bytes("GET", f"/{i}", "localhost"))
            resp = c.read_response()
            assert resp.status == 200 and resp.body == HELLO
            assert resp.header("Connection") is None
        # Pipelined: answered in order on the same connection.
        c.send(request_bytes("GET", "/a", "localhost") + request_bytes("HEAD", "/b", "localhost"))
        assert c.read_response().body == HELLO
        assert c.read_response("HEAD").body == b""
        assert not c.is_closed_or_data(0.2)


def test_hello_node_option(make_gateway, run_swift):
    gw = make_gateway(vhosts={"localhost": ["custom-swift"]})
    run_swift("swift-hello", "--connect", gw.endpoint, "--node", "custom-swift")
    resp = wait_served(gw.port)
    assert resp.status == 200 and resp.body == HELLO


def test_hello_several_gateways(make_gateway, run_swift):
    """One process, one DEALER per --connect: each gateway's requests are answered on its own connection."""
    gw1 = make_gateway(vhosts={"localhost": ["hello-swift"]})
    gw2 = make_gateway(vhosts={"localhost": ["hello-swift"]})
    run_swift("swift-hello", "--connect", gw1.endpoint, "--connect", gw2.endpoint)
    for gw in (gw1, gw2):
        resp = wait_served(gw.port)
        assert resp.status == 200 and resp.body == HELLO


def test_instance_identity_shares_the_vhost(make_gateway, run_swift):
    """`--node hello-swift#2` is one more process of node hello-swift: both serve the vhost."""
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]})
    run_swift("swift-hello", "--connect", gw.endpoint, "--plain-identity")
    run_swift("swift-hello", "--connect", gw.endpoint, "--node", "hello-swift#2")
    assert wait_served(gw.port).status == 200
    # The instance announced itself with an unsolicited pong when it connected (it is never pinged first).
    wait_until(lambda: "hello-swift#2" in gw.stderr(), 5, what="the instance joining")
    for _ in range(12):
        resp = http_request(gw.port, target="/spread")  # a fresh connection each time: balanced per session
        assert resp.status == 200 and resp.body == HELLO

    def served_by_both():
        log = gw.stdout()
        return "node=hello-swift#2 " in log and "node=hello-swift " in log

    wait_until(served_by_both, 5, what="requests served by both processes (access log)")


def test_instance_survives_the_plain_process(make_gateway, run_swift):
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]})
    plain = run_swift("swift-hello", "--connect", gw.endpoint, "--plain-identity")
    run_swift("swift-hello", "--connect", gw.endpoint, "--instance", "2")
    assert wait_served(gw.port).status == 200
    wait_until(lambda: "hello-swift#2" in gw.stderr(), 5, what="the instance joining")
    # Its first line is logged after its signal handlers are set: a SIGTERM before that (a slow start on a
    # loaded box, while the instance already serves) would kill it instead of stopping it.
    wait_until(lambda: "identity hello-swift," in run_swift.log_of(plain), 10, what="the plain process running")
    plain.terminate()
    assert plain.wait(5) == 0
    for _ in range(4):
        resp = wait_served(gw.port)
        assert resp.status == 200 and resp.body == HELLO


def served_identities(gw) -> set[str]:
    """The node identities that answered 200 in the gateway's access log (``node=IDENTITY``; a 503 names the
    vhost's node). The log is written a little after the response: read it under ``wait_until``."""
    return set(re.findall(r'" 200 \d+ .* node=(\S+)', gw.stdout()))


def spread_requests(gw, count: int = 12) -> None:
    for _ in range(count):
        resp = http_request(gw.port, target="/spread")  # a fresh connection each time: balanced per session
        assert resp.status == 200 and resp.body == HELLO


def test_same_command_twice_adds_a_process(make_gateway, run_swift):
    """Without --instance each process connects as hello-swift#<pid>-<random>: starting the same command
    twice gives the node two processes that both serve, instead of two taking one identity from each other."""
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]})
    procs = [run_swift("swift-hello", "--connect", gw.endpoint) for _ in range(2)]
    assert wait_served(gw.port).status == 200

    pattern = re.compile(r"identity (hello-swift#(\d+)-[0-9a-f]{8}), without CURVE")
    identities = []
    for proc in procs:
        wait_until(lambda: pattern.search(run_swift.log_of(proc)), 5, what="the identity in the example's log")
        match = pattern.search(run_swift.log_of(proc))
        assert int(match.group(2)) == proc.pid
        identities.append(match.group(1))
    assert identities[0] != identities[1]

    def served_by_both():
        spread_requests(gw, 4)
        return set(identities) <= served_identities(gw)

    wait_until(served_by_both, 10, interval=0.1, what="requests served by both processes (access log)")
    assert served_identities(gw) == set(identities)  # and by nothing else


def test_plain_identity_and_instance_options(make_gateway, run_swift):
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]})
    plain = run_swift("swift-hello", "--connect", gw.endpoint, "--plain-identity")
    assert wait_served(gw.port).status == 200
    spread_requests(gw, 2)
    wait_until(lambda: served_identities(gw), 5, what="the access log")
    assert served_identities(gw) == {"hello-swift"}
    assert "identity hello-swift, without CURVE" in run_swift.log_of(plain)
    plain.terminate()
    assert plain.wait(5) == 0

    named = run_swift("swift-hello", "--connect", gw.endpoint, "--instance", "seven")
    assert wait_served(gw.port).status == 200
    spread_requests(gw, 2)
    wait_until(lambda: "hello-swift#seven" in served_identities(gw), 5, what="the access log")
    assert "identity hello-swift#seven, without CURVE" in run_swift.log_of(named)


@pytest.mark.parametrize("args, message", [
    (["--instance", "1", "--plain-identity"], "--instance and --plain-identity both choose the instance"),
    (["--node", "hello-swift#1", "--instance", "2"], "--node NAME#ID and --instance both choose the instance"),
    (["--curve-key", "node.key_secret"], "--curve-key needs --server-key"),
    (["--server-key", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"], "--server-key needs --curve-key"),
    (["--curve-key", "/nonexistent/node.key_secret", "--server-key", "x"], "cannot read curve key file"),
    (["--bogus"], "unknown argument --bogus"),
])
def test_bad_options_exit_2(args, message):
    binary = examples_dir() / "swift-hello"
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2, proc
    assert message in proc.stderr, proc.stderr


# --- CURVE ---------------------------------------------------------------------------------------------------

@pytest.fixture
def curve_keys(tmp_path):
    """Certificates as operators make them: pyzmq's zmq.auth.create_certificates, one pair per party."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("gateway", "hello-swift", "stranger"):
        zmq.auth.create_certificates(str(keys), name)
    return keys


def public_key(path: Path) -> str:
    return zmq.auth.load_certificate(str(path))[0].decode()


def uwsgi_packet(method: str, path: str) -> bytes:
    return uwsgi.encode({"REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
                         "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "localhost"})


class CurveRouter:
    """A pyzmq ROUTER that is a CURVE server, with pyzmq's own ZAP authenticator allowing the public
    certificates in ``allowed`` (a directory): the gateway's side of CURVE, without the gateway."""

    def __init__(self, server_secret: Path, allowed: Path):
        from zmq.auth.thread import ThreadAuthenticator
        self.ctx = zmq.Context()
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(allowed))
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        public, secret = zmq.auth.load_certificate(str(server_secret))
        self.sock.curve_secretkey = secret
        self.sock.curve_publickey = public
        self.sock.curve_server = True
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def receive(self, timeout: float) -> list[bytes] | None:
        if self.sock.poll(int(timeout * 1000)):
            return self.sock.recv_multipart()
        return None

    def close(self) -> None:
        self.sock.close()
        self.auth.stop()
        self.ctx.term()


@pytest.fixture
def curve_router(curve_keys, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "hello-swift.key").write_bytes((curve_keys / "hello-swift.key").read_bytes())
    router = CurveRouter(curve_keys / "gateway.key_secret", allowed)
    yield router
    router.close()


@pytest.mark.parametrize("server_key", ["file", "z85"])
def test_curve_round_trip_with_pyzmq_certificates(curve_router, curve_keys, run_swift, server_key):
    """--curve-key and --server-key (a certificate file or the Z85 key) reach the SDK: the node gets through
    a CURVE server that allows only its key, and answers a request over the encrypted connection."""
    key = str(curve_keys / "gateway.key") if server_key == "file" else public_key(curve_keys / "gateway.key")
    proc = run_swift("swift-hello", "--connect", curve_router.endpoint, "--instance", "c",
                     "--curve-key", str(curve_keys / "hello-swift.key_secret"), "--server-key", key)
    announcement = curve_router.receive(timeout=5)
    assert announcement == [b"hello-swift#c", b"", b"pong", b"credit"], run_swift.log_of(proc)
    sid = bytes(range(16))
    curve_router.sock.send_multipart([b"hello-swift#c", sid, b"uwsgi", uwsgi_packet("GET", "/secret")])
    reply = curve_router.receive(timeout=5)
    assert reply is not None and reply[:3] == [b"hello-swift#c", sid, b"headers"], reply
    assert reply[3].startswith(b"HTTP/1.1 200 OK\r\n") and reply[3].endswith(b"\r\n\r\n" + HELLO)
    node_key = public_key(curve_keys / "hello-swift.key")
    assert f"identity hello-swift#c, with CURVE, node key {node_key}" in run_swift.log_of(proc)


def test_curve_wrong_server_key_never_gets_through(curve_router, curve_keys, run_swift):
    proc = run_swift("swift-hello", "--connect", curve_router.endpoint,
                     "--curve-key", str(curve_keys / "hello-swift.key_secret"),
                     "--server-key", str(curve_keys / "stranger.key"))
    assert curve_router.receive(timeout=2) is None
    wait_until(lambda: "handshake with" in run_swift.log_of(proc), 5, what="the failed handshake logged")
    log = run_swift.log_of(proc)
    assert "the gateway closed the connection during the handshake" in log, log
    assert public_key(curve_keys / "stranger.key") in log  # names the server key to check
    # Logged once, not at every retry.
    assert log.count("handshake with") == 1, log


def test_curve_unlisted_node_key_is_refused(curve_router, curve_keys, run_swift):
    proc = run_swift("swift-hello", "--connect", curve_router.endpoint,
                     "--curve-key", str(curve_keys / "stranger.key_secret"),
                     "--server-key", str(curve_keys / "gateway.key"))
    assert curve_router.receive(timeout=2) is None
    wait_until(lambda: "refused this node's key" in run_swift.log_of(proc), 5, what="the refusal logged")


def test_gateway_curve_end_to_end(make_gateway, run_swift, curve_keys, blastbeat_bin):
    """The real gateway with `curve-key` and a vhost `node-key`: the listed key serves, a node with another
    key or without CURVE never does. Skipped only while the gateway does not know the keys yet."""
    node_key = public_key(curve_keys / "hello-swift.key")
    gw = make_gateway(vhosts={"localhost": ["hello-swift"]},
                      options={"curve-key": curve_keys / "gateway.key_secret"}, start=False)
    base_config = gw.config_text
    gw.config_text = lambda: base_config() + f"node-key = hello-swift {node_key}\n"  # in the (last) vhost
    gw.config_path.write_text(gw.config_text())
    check = subprocess.run([blastbeat_bin, "--check", str(gw.config_path)], capture_output=True, text=True,
                           timeout=20)
    if check.returncode != 0 and "unknown key" in check.stderr:
        pytest.skip(f"this gateway has no CURVE yet: {check.stderr.strip()}")
    assert check.returncode == 0, check.stderr
    gw.start()

    server = ["--server-key", str(curve_keys / "gateway.key")]
    # Neither a node without CURVE nor one with an unlisted key can take node hello-swift, and each says why.
    plain = run_swift("swift-hello", "--connect", gw.endpoint, "--plain-identity")
    stranger = run_swift("swift-hello", "--connect", gw.endpoint, "--plain-identity",
                         "--curve-key", str(curve_keys / "stranger.key_secret"), *server)
    wait_until(lambda: "different security mechanism" in run_swift.log_of(plain), 5, what="the plain node's log")
    wait_until(lambda: "handshake with" in run_swift.log_of(stranger), 5, what="the stranger's log")
    assert public_key(curve_keys / "stranger.key") in run_swift.log_of(stranger)  # the key to list, or not
    time.sleep(1.5)  # the stranger has retried by now (after 1 s)
    assert http_request(gw.port).status == 503

    run_swift("swift-hello", "--connect", gw.endpoint, "--instance", "trusted",
              "--curve-key", str(curve_keys / "hello-swift.key_secret"), *server)
    assert wait_served(gw.port).status == 200
    spread_requests(gw, 6)
    wait_until(lambda: served_identities(gw), 5, what="the access log")
    assert served_identities(gw) == {"hello-swift#trusted"}


@pytest.fixture
def echo_gateway(make_gateway, run_swift):
    gw = make_gateway(vhosts={"localhost": {"nodes": ["echo-swift"], "default": True}})
    run_swift("swift-echo", "--connect", gw.endpoint)
    assert wait_served(gw.port).status == 200
    return gw


def test_echo_post_1mib_byte_exact(echo_gateway, tmp_path):
    payload = random.Random(5).randbytes(1 << 20)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    res = curl_fetch(echo_gateway.port, "/upload", "--data-binary", f"@{path}",
                     "-H", "Content-Type: application/x-test")
    assert res.returncode == 0, res.stderr
    assert res.status == 200
    assert res.header("Content-Length") == str(len(payload))
    assert res.header("Content-Type") == "application/x-test"
    assert res.body == payload


def test_echo_keep_alive_bodies_and_chunked_upload(echo_gateway):
    """Several bodies on one connection: each ends at its own end-of-body marker."""
    with RawConn(echo_gateway.port) as c:
        for body in (b"first", b"x" * 70000, b"\x00\xff" * 10):
            c.send(request_bytes("POST", "/", "localhost", [("Content-Length", str(len(body)))], body))
            resp = c.read_response()
            assert resp.status == 200 and resp.body == body
        # A request without a body in between: answered at once (no end-of-body marker comes).
        c.send(request_bytes("GET", "/page", "localhost"))
        resp = c.read_response()
        assert resp.status == 200 and b"GET /page" in resp.body
        # A chunked upload arrives de-chunked.
        c.send(request_bytes("POST", "/", "localhost", [("Transfer-Encoding", "chunked")],
                             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"hello world"


def test_echo_websocket_text_and_binary(echo_gateway):
    uri = f"ws://127.0.0.1:{echo_gateway.port}/ws"
    with websockets_sync.connect(uri, open_timeout=5, close_timeout=5, max_size=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send("héllo wörld ✓")
        assert ws.recv(timeout=5) == "héllo wörld ✓"
        blob = bytes(range(256)) * 400
        ws.send(blob)
        reply = ws.recv(timeout=5)
        assert isinstance(reply, bytes) and reply == blob
        ws.send(b"")
        assert ws.recv(timeout=5) == b""
        ws.send("last")
        assert ws.recv(timeout=5) == "last"
    # The session ended cleanly; the node still serves.
    assert http_request(echo_gateway.port).status == 200
