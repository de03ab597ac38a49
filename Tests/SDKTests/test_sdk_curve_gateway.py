"""CURVE end to end: the real gateway with ``curve-key`` and ``node-key``, Python nodes with CURVE options.

Needs the gateway's CURVE support (``[blastbeat] curve-key = FILE``, the gateway's secret certificate; per
vhost ``node-key = NODE KEY``, KEY a Z85 public key or a public certificate path). The tests skip only when
``blastbeat --check`` rejects ``curve-key`` as an unknown key; any other failure is a failure.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import zmq.auth

from sdk_helpers import blastbeat_bin, free_port, sdk_command, wait_served


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """``gateway``, ``node`` and ``stranger`` certificates (NAME.key public, NAME.key_secret secret)."""
    d = tmp_path_factory.mktemp("certs")
    for name in ("gateway", "node", "stranger"):
        zmq.auth.create_certificates(d, name)
    return d


def public_key(path: Path) -> str:
    return zmq.auth.load_certificate(path)[0].decode()


@pytest.fixture(scope="module", autouse=True)
def gateway_knows_curve(certs, tmp_path_factory):
    """Skip the module when this gateway binary does not know ``curve-key`` yet."""
    config = tmp_path_factory.mktemp("check") / "check.ini"
    config.write_text("[blastbeat]\n"
                      f"bind = 127.0.0.1:{free_port()}\n"
                      f"zmq = tcp://127.0.0.1:{free_port()}\n"
                      f"curve-key = {certs / 'gateway.key_secret'}\n"
                      "\n[blastbeat:localhost]\nnode = app\n"
                      f"node-key = app {public_key(certs / 'node.key')}\n")
    binary = blastbeat_bin()
    deadline = time.monotonic() + 60
    while not os.access(binary, os.X_OK):  # being rebuilt by someone else for a moment
        if time.monotonic() > deadline:
            pytest.fail(f"gateway binary not found: {binary}")
        time.sleep(1)
    result = subprocess.run([binary, "--check", str(config)], capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    if "curve-key: unknown key" in output:  # the parser's "FILE:LINE: KEY: unknown key in [blastbeat]..."
        pytest.skip(f"needs the gateway's CURVE support: {output.strip()[:200]}")


def curve_gateway(make_gateway, certs, node_key: str):
    return make_gateway(nodes=["app"], options={"curve-key": str(certs / "gateway.key_secret")},
                        vhost_options={"node-key": [f"app {node_key}"]})


def test_wsgi_node_with_curve_round_trip(make_gateway, spawn, certs):
    """node-key as Z85 text; the WSGI CLI with --curve-key and --server-key as a public certificate path."""
    gw = curve_gateway(make_gateway, certs, public_key(certs / "node.key"))
    node = spawn(sdk_command("wsgi", "wsgiref.simple_server:demo_app", "--connect", gw.endpoint, "--node", "app",
                             "--curve-key", str(certs / "node.key_secret"),
                             "--server-key", str(certs / "gateway.key")), "wsgi-curve")
    node.wait_output("connected to", timeout=15)
    assert wait_served(gw.url, timeout=10) == 200, gw.logs()
    resp = httpx.get(gw.url + "/hello", timeout=10)
    assert resp.status_code == 200 and "Hello world!" in resp.text
    assert "PATH_INFO = '/hello'" in resp.text


def test_node_key_as_certificate_path_and_server_key_as_text(make_gateway, make_node, certs):
    gw = curve_gateway(make_gateway, certs, str(certs / "node.key"))
    make_node(gw, "app", lambda req: req.respond(200, None, b"over curve"),
              curve_key=certs / "node.key_secret", server_key=public_key(certs / "gateway.key"))
    assert wait_served(gw.url, timeout=10) == 200, gw.logs()
    assert httpx.get(gw.url + "/", timeout=10).content == b"over curve"


def test_unlisted_key_wrong_server_key_and_plain_node_are_not_served(make_gateway, make_node, certs):
    """A node whose key is not the vhost's node-key, one with the wrong server key, one without CURVE:
    none completes its handshake, none serves a request."""
    gw = curve_gateway(make_gateway, certs, public_key(certs / "node.key"))

    def handler(req):
        req.respond(200, None, b"must not be served")

    nodes = [make_node(gw, "app", handler, connected=False, curve_key=certs / "stranger.key_secret",
                       server_key=certs / "gateway.key"),
             make_node(gw, "app", handler, connected=False, curve_key=certs / "node.key_secret",
                       server_key=certs / "stranger.key"),
             make_node(gw, "app", handler, connected=False)]
    assert wait_served(gw.url, timeout=3) in (502, 503)
    assert httpx.get(gw.url + "/", timeout=10).status_code in (502, 503)
    assert [n.wait_connected(0.1) for n in nodes] == [False, False, False]
    assert [n.stats["requests"] for n in nodes] == [0, 0, 0]
