"""CURVE for Python nodes: ``Node(curve_key=..., server_key=...)`` and ``--curve-key``/``--server-key``.

The peer is a real pyzmq ROUTER with ``curve_server=True`` (and, where the test says so, a ZAP authenticator
that admits only listed node keys, as the gateway's ``node-key`` does). Keys are generated per test with
``zmq.auth.create_certificates``. No gateway binary is needed.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zmq
import zmq.auth

from blastbeat import Node
from sdk_helpers import Proc, RouterPeer, sdk_command, subprocess_env


class Keys:
    """Certificates in ``tmp``: the gateway's (``gateway.key``/``gateway.key_secret``), the node's
    (``node.key``/``node.key_secret``), a stranger's; ``allowed/`` holds the node's public certificate only."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "certs"
        self.dir.mkdir()
        self.gateway_public_file, self.gateway_secret_file = map(
            Path, zmq.auth.create_certificates(self.dir, "gateway"))
        self.node_public_file, self.node_secret_file = map(Path, zmq.auth.create_certificates(self.dir, "node"))
        self.stranger_public_file, self.stranger_secret_file = map(
            Path, zmq.auth.create_certificates(self.dir, "stranger"))
        self.gateway = zmq.auth.load_certificate(self.gateway_secret_file)  # (public, secret)
        self.node_public = zmq.auth.load_certificate(self.node_public_file)[0]
        self.allowed = tmp / "allowed"
        self.allowed.mkdir()
        shutil.copy(self.node_public_file, self.allowed / "node.key")


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


@pytest.fixture
def router_factory():
    routers = []

    def factory(curve=None, allowed=None) -> RouterPeer:
        r = RouterPeer(curve=curve, allowed=allowed)
        routers.append(r)
        return r

    yield factory
    for r in routers:
        r.close()


@pytest.fixture
def node_factory():
    nodes = []

    def factory(endpoints, node="app", handler=None, **options) -> Node:
        n = Node(endpoints, node, handler or hello, **options)
        nodes.append(n)
        return n.start()

    yield factory
    for n in nodes:
        n.stop(timeout=1)


def hello(req):
    req.respond(200, [("Content-Type", "text/plain")], b"secret hello " + req.path.encode())


# -- a Node with CURVE --------------------------------------------------------------------------------------


def test_curve_node_connects_and_its_messages_arrive(keys, router_factory, node_factory):
    """Server key as Z85 text; the authenticator admits the node's key, which the ROUTER sees as User-Id."""
    router = router_factory(curve=keys.gateway, allowed=keys.allowed)
    node = node_factory(router.endpoint, curve_key=str(keys.node_secret_file), server_key=keys.gateway[0].decode())
    assert node.wait_connected(10), "the CURVE handshake did not complete"
    assert router.wait_announce() == node.identity
    identity, _, kind, body = router.get(node.identity, "/x")
    assert identity == node.identity and kind == b"headers"
    assert body.startswith(b"HTTP/1.1 200") and body.endswith(b"secret hello /x")
    # The ZAP handler authenticated the connection with the public key of the node's certificate.
    assert set(router.user_ids) == {keys.node_public.decode()}


def test_server_key_as_public_certificate_path(keys, router_factory, node_factory):
    router = router_factory(curve=keys.gateway, allowed=keys.allowed)
    node = node_factory(router.endpoint, curve_key=keys.node_secret_file, server_key=keys.gateway_public_file)
    assert node.wait_connected(10)
    assert router.wait_announce() == node.identity
    assert router.get(node.identity, "/p")[3].endswith(b"secret hello /p")


def test_every_socket_of_the_node_uses_curve(keys, router_factory, node_factory):
    """Two gateways sharing one key pair: both DEALERs complete the handshake and reach their ROUTER."""
    routers = [router_factory(curve=keys.gateway, allowed=keys.allowed) for _ in range(2)]
    node = node_factory([r.endpoint for r in routers], curve_key=keys.node_secret_file,
                        server_key=keys.gateway_public_file)
    assert node.wait_connected(10)
    for i, router in enumerate(routers):
        assert router.wait_announce() == node.identity
        assert router.get(node.identity, f"/gw{i}")[3].endswith(f"secret hello /gw{i}".encode())


def test_wrong_server_key_never_gets_through(keys, router_factory, node_factory, caplog):
    caplog.set_level(logging.INFO, logger="blastbeat")
    router = router_factory(curve=keys.gateway)  # no ZAP: only the server key decides
    wrong = zmq.auth.load_certificate(keys.stranger_public_file)[0]
    node = node_factory(router.endpoint, curve_key=keys.node_secret_file, server_key=wrong)
    assert not node.wait_connected(2.0)
    assert router.silent_for(0.5), "a node with the wrong server key must not get a message through"
    # libzmq retries every 100 ms: the failure is reported once, not on every attempt.
    failures = [r for r in caplog.records if "handshake with" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "server_key" in failures[0].getMessage()
    assert not [r for r in caplog.records if "lost its connection" in r.getMessage()]


def test_node_without_curve_never_gets_through(keys, router_factory, node_factory):
    router = router_factory(curve=keys.gateway)
    node = node_factory(router.endpoint)
    assert not node.wait_connected(1.5)
    assert router.silent_for(0.5)


def test_node_key_unknown_to_the_gateway_never_gets_through(keys, router_factory, node_factory):
    """The right server key, but a node certificate the authenticator does not list."""
    router = router_factory(curve=keys.gateway, allowed=keys.allowed)
    node = node_factory(router.endpoint, curve_key=keys.stranger_secret_file, server_key=keys.gateway_public_file)
    assert not node.wait_connected(2.0)
    assert router.silent_for(0.5)


# -- key options --------------------------------------------------------------------------------------------


def test_curve_options_are_checked_when_the_node_is_created(keys, tmp_path):
    def make(**options):
        return Node("tcp://127.0.0.1:1", "app", **options)

    with pytest.raises(ValueError, match="go together"):
        make(curve_key=keys.node_secret_file)
    with pytest.raises(ValueError, match="go together"):
        make(server_key=keys.gateway_public_file)
    with pytest.raises(ValueError, match="no secret-key"):
        make(curve_key=keys.node_public_file, server_key=keys.gateway_public_file)
    with pytest.raises(ValueError, match="cannot read"):
        make(curve_key=tmp_path / "missing.key_secret", server_key=keys.gateway_public_file)
    with pytest.raises(ValueError, match="neither a 40-character Z85"):
        make(curve_key=keys.node_secret_file, server_key="not-a-key")
    with pytest.raises(ValueError, match="neither a 40-character Z85"):
        make(curve_key=keys.node_secret_file, server_key="%" * 40)  # Z85 characters, but past 2**32
    not_a_cert = tmp_path / "empty.key"
    not_a_cert.write_text("curve\n")
    with pytest.raises(ValueError, match="not a ZeroMQ certificate"):
        make(curve_key=keys.node_secret_file, server_key=not_a_cert)
    # A secret key that is not the public key's other half (two certificates mixed up).
    mixed = tmp_path / "mixed.key_secret"
    stranger_secret = zmq.auth.load_certificate(keys.stranger_secret_file)[1]
    mixed.write_text(f'curve\n    public-key = "{keys.node_public.decode()}"\n'
                     f'    secret-key = "{stranger_secret.decode()}"\n')
    with pytest.raises(ValueError, match="does not belong"):
        make(curve_key=mixed, server_key=keys.gateway_public_file)

    node = make(curve_key=keys.node_secret_file, server_key=keys.gateway[0])  # bytes work too
    assert node.curve is not None and node.curve.public == keys.node_public
    assert node.curve.server == keys.gateway[0]
    assert node.curve.secret.decode() not in repr(node.curve)
    assert make().curve is None


# -- the command-line tools ---------------------------------------------------------------------------------


def test_wsgi_cli_with_curve_flags(keys, router_factory, tmp_path):
    """``python -m blastbeat.wsgi --curve-key --server-key`` against a CURVE ROUTER: a request round trip."""
    router = router_factory(curve=keys.gateway, allowed=keys.allowed)
    proc = Proc(sdk_command("wsgi", "wsgiref.simple_server:demo_app", "--connect", router.endpoint,
                            "--node", "web", "--curve-key", str(keys.node_secret_file),
                            "--server-key", str(keys.gateway_public_file)), tmp_path / "wsgi.log")
    try:
        identity = router.wait_announce(15)
        assert re.fullmatch(rb"web#%d-[0-9a-f]{8}" % proc.pid, identity), identity
        _, _, kind, body = router.get(identity, "/")
        assert kind == b"headers" and body.startswith(b"HTTP/1.1 200") and b"Hello world!" in body
        assert set(router.user_ids) == {keys.node_public.decode()}
        proc.wait_output("CURVE")  # the start-up line names the identity and CURVE
    finally:
        proc.stop()
    assert f"identity {identity.decode()} (unique instance chosen at start), CURVE" in proc.output()


def test_bridge_cli_with_curve_flags(keys, router_factory, tmp_path):
    """``python -m blastbeat.bridge`` with a Z85 ``--server-key`` and ``--instance``; the upstream is down, so
    the round trip ends in the bridge's 502."""
    router = router_factory(curve=keys.gateway, allowed=keys.allowed)
    proc = Proc(sdk_command("bridge", "--upstream", "http://127.0.0.1:9", "--connect", router.endpoint,
                            "--node", "br", "--instance", "x", "--curve-key", str(keys.node_secret_file),
                            "--server-key", keys.gateway[0].decode()), tmp_path / "bridge.log")
    try:
        assert router.wait_announce(15) == b"br#x"
        _, _, kind, body = router.get(b"br#x", "/")
        assert kind == b"headers" and body.startswith(b"HTTP/1.1 502")
    finally:
        proc.stop()


@pytest.mark.parametrize("module", ["wsgi", "bridge"])
def test_cli_rejects_bad_curve_options(keys, module):
    base = ["--connect", "tcp://127.0.0.1:1", "--node", "app"]
    base = (["wsgiref.simple_server:demo_app"] if module == "wsgi" else ["--upstream", "http://127.0.0.1:9"]) + base

    def run(*extra):
        return subprocess.run(sdk_command(module, *base, *extra), env=subprocess_env(), capture_output=True,
                              text=True, timeout=30)

    alone = run("--curve-key", str(keys.node_secret_file))
    assert alone.returncode != 0 and "--curve-key and --server-key go together" in alone.stderr
    public_only = run("--curve-key", str(keys.node_public_file), "--server-key", str(keys.gateway_public_file))
    assert public_only.returncode == 2 and "no secret-key" in public_only.stderr
    assert "Traceback" not in public_only.stderr
