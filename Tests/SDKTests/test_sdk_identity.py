"""One owner per identity: a node picks a unique ``NODE#<pid>-<random>`` identity unless told otherwise.

Without an instance, two processes started the same way used to share the identity ``NODE`` and take the
connection from each other; now each gets its own suffix and adds capacity. ``plain_identity`` keeps the
exact ``NODE``; an explicit ``instance`` keeps ``NODE#INSTANCE``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from blastbeat import Node, _cli
from blastbeat.node import unique_instance
from blastbeat.wsgi import WSGIServer
from sdk_helpers import HERE, Proc, RouterPeer, sdk_command, wait_served, wait_until

ENDPOINT = "tcp://127.0.0.1:1"  # never started: these nodes are only constructed


def default_identity_pattern(node: str, pid: int = None) -> re.Pattern:
    return re.compile(rb"%s#%d-[0-9a-f]{8}" % (node.encode(), os.getpid() if pid is None else pid))


# -- choosing the identity ----------------------------------------------------------------------------------


def test_default_identity_is_a_unique_instance():
    a, b = Node(ENDPOINT, "app"), Node(ENDPOINT, "app")
    for n in (a, b):
        assert default_identity_pattern("app").fullmatch(n.identity), n.identity
        assert n.identity == b"app#" + n.instance.encode() and not n.plain_identity
    assert a.identity != b.identity, "two nodes started the same way must not share an identity"
    assert len({unique_instance() for _ in range(100)}) == 100


def test_plain_identity_and_explicit_instance():
    plain = Node(ENDPOINT, "app", plain_identity=True)
    assert plain.identity == b"app" and plain.instance is None and plain.plain_identity
    assert Node(ENDPOINT, "app", instance="w2").identity == b"app#w2"
    # The plain identity keeps an old-style name with '#' as it is.
    assert Node(ENDPOINT, "a#b", plain_identity=True).identity == b"a#b"


def test_invalid_identity_combinations_raise():
    with pytest.raises(ValueError, match="exclude each other"):
        Node(ENDPOINT, "app", instance="x", plain_identity=True)
    with pytest.raises(ValueError, match="contains '#'"):
        Node(ENDPOINT, "a#b")  # the gateway would read node "a", instance "b#..."
    with pytest.raises(ValueError, match="no room for the instance suffix"):
        Node(ENDPOINT, "n" * 250)  # 250 bytes are fine alone, not with "#<pid>-<8 hex>"
    assert Node(ENDPOINT, "n" * 250, plain_identity=True).identity == b"n" * 250
    assert len(Node(ENDPOINT, "n" * 230).identity) <= 255


def test_the_identity_is_logged_once_at_start(caplog):
    caplog.set_level(logging.INFO, logger="blastbeat")
    router = RouterPeer()
    try:
        node = Node(router.endpoint, "app", lambda req: None).start()
        try:
            assert router.wait_announce() == node.identity
        finally:
            node.stop(timeout=1)
    finally:
        router.close()
    ident = node.identity.decode()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("node app: identity")]
    assert lines == [f"node app: identity {ident} (unique instance chosen at start)"]
    assert all(r.levelno == logging.INFO for r in caplog.records if "identity" in r.getMessage())


def test_two_default_nodes_are_both_reachable(tmp_path):
    """Against one ROUTER, two default nodes both announce and both answer: neither took the other's place."""
    router = RouterPeer()
    nodes = []
    try:
        for tag in "ab":
            nodes.append(Node(router.endpoint, "app", lambda req, tag=tag: req.respond(200, None, tag)).start())
        assert {router.wait_announce(), router.wait_announce()} == {n.identity for n in nodes}
        for n, tag in zip(nodes, "ab"):
            assert router.get(n.identity, "/")[3].endswith(tag.encode())
    finally:
        for n in nodes:
            n.stop(timeout=1)
        router.close()


def test_wsgi_multiprocess_follows_the_identity():
    """wsgi.multiprocess: true when other processes may serve the node too, i.e. for instance identities."""
    app = lambda environ, start_response: []  # noqa: E731
    assert WSGIServer(app, ENDPOINT, "app").handler.multiprocess is True
    assert WSGIServer(app, ENDPOINT, "app", instance="1").handler.multiprocess is True
    assert WSGIServer(app, ENDPOINT, "app", plain_identity=True).handler.multiprocess is False
    assert WSGIServer(app, ENDPOINT, "app", plain_identity=True, multiprocess=True).handler.multiprocess is True


# -- the command line ---------------------------------------------------------------------------------------


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    _cli.add_node_arguments(parser)
    return _cli.node_kwargs(parser.parse_args(["--connect", ENDPOINT, "--node", "app", *argv]))


def test_cli_identity_and_curve_options_reach_the_node_kwargs(tmp_path):
    kwargs = parse()
    assert kwargs["instance"] is None and kwargs["plain_identity"] is False
    assert kwargs["curve_key"] is None and kwargs["server_key"] is None
    assert parse("--plain-identity")["plain_identity"] is True
    assert parse("--instance", "7")["instance"] == "7"
    curve = parse("--curve-key", "node.key_secret", "--server-key", "gw.key")
    assert (curve["curve_key"], curve["server_key"]) == ("node.key_secret", "gw.key")
    with pytest.raises(SystemExit):  # argparse: not allowed with argument --instance
        parse("--instance", "7", "--plain-identity")
    with pytest.raises(SystemExit, match="go together"):
        parse("--server-key", "gw.key")
    # What main() does with the kwargs: a Node with the chosen identity.
    node = Node(**{**parse("--plain-identity"), "connect": ENDPOINT})
    assert node.identity == b"app"


def test_cli_plain_identity_and_default(tmp_path):
    """``python -m blastbeat.wsgi`` connects as NAME with --plain-identity, as NAME#<its pid>-<hex> without."""
    router = RouterPeer()
    procs = []
    try:
        for extra in (["--plain-identity"], []):
            procs.append(Proc(sdk_command("wsgi", "wsgiref.simple_server:demo_app", "--connect", router.endpoint,
                                          "--node", "web", *extra), tmp_path / f"wsgi{len(procs)}.log"))
            identity = router.wait_announce(15)
            if extra:
                assert identity == b"web"
            else:
                assert default_identity_pattern("web", procs[-1].pid).fullmatch(identity), identity
            assert router.get(identity, "/")[3].startswith(b"HTTP/1.1 200")
    finally:
        for p in procs:
            p.stop()
        router.close()


# -- behind the real gateway --------------------------------------------------------------------------------


def test_the_same_command_twice_adds_capacity(make_gateway, spawn):
    """Two processes started with the very same command (no instance) both serve node ``app``."""
    gw = make_gateway(nodes=["app"])
    command = [sys.executable, str(HERE / "node_proc.py"), "--connect", gw.endpoint, "--node", "app",
               "--delay", "0.3"]
    procs = [spawn(command, f"node{i}") for i in range(2)]
    for proc in procs:
        proc.wait_output("connected to")
    assert wait_served(gw.url, timeout=10) == 200

    identities = set()

    def both_seen():
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: httpx.get(f"{gw.url}/r{i}", timeout=10), range(8)))
        assert [r.status_code for r in responses] == [200] * 8
        identities.update(r.headers["x-identity"] for r in responses)
        return len(identities) == 2

    wait_until(both_seen, 15, 0.1, "responses from both processes")
    for ident, proc in zip(sorted(identities, key=lambda s: int(s.split("#")[1].split("-")[0])),
                           sorted(procs, key=lambda p: p.pid)):
        assert default_identity_pattern("app", proc.pid).fullmatch(ident.encode()), ident


def test_plain_identity_behind_the_gateway(make_gateway, make_node):
    gw = make_gateway(nodes=["app"])
    make_node(gw, "app", lambda req: req.respond(200, None, b"plain"), plain_identity=True)
    assert wait_served(gw.url, timeout=10) == 200
    assert httpx.get(gw.url + "/", timeout=10).content == b"plain"
