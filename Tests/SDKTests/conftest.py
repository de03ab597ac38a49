"""Fixtures for the Python SDK tests: the real gateway binary, SDK nodes in-process and as processes.

* ``make_gateway(nodes=("app",), options=None)``: a gateway with a generated ini and free ports (vhost
  ``localhost``, default for any Host). Stopped with SIGTERM at teardown; it must exit 0 within 10 s.
* ``spawn(args, name)``: a subprocess (``python -m blastbeat.wsgi ...``, an upstream server...), its output
  in a log file printed at teardown. Stopped (SIGTERM, then SIGKILL) before the gateways.
* ``make_node(target, node, handler, **options)``: an in-process :class:`blastbeat.Node`, connected before
  the test goes on, stopped at teardown.

The tests import the SDK from ``python/src`` (ahead of any installed copy) so they always test the tree.
"""

from __future__ import annotations

import sys
import time

import pytest

from sdk_helpers import SDK_SRC, Gateway, Proc, subprocess_env

sys.path.insert(0, str(SDK_SRC))

import blastbeat  # noqa: E402


def finish_gateways(gateways: list) -> list:
    problems = []
    for gw in gateways:
        if gw.proc is None:
            continue
        rc = gw.stop()
        print(gw.logs())
        if gw.killed:
            problems.append(f"{gw.name}: still running 10 s after SIGTERM, killed")
        elif rc != 0:
            problems.append(f"{gw.name}: exited with status {rc} after SIGTERM (expected 0)")
    return problems


@pytest.fixture
def make_gateway(tmp_path):
    gateways: list = []

    def factory(nodes=("app",), options=None, vhost_options=None) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(gateways)}", nodes=nodes, options=options, name=f"gateway{len(gateways)}",
                     vhost_options=vhost_options)
        gateways.append(gw)
        gw.start()
        return gw

    yield factory
    problems = finish_gateways(gateways)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def spawn(make_gateway, tmp_path):
    procs: list = []

    def factory(args, name: str = "proc", cwd=None, env=None) -> Proc:
        proc = Proc(args, tmp_path / f"{name}-{len(procs)}.log", cwd=cwd, env=env or subprocess_env())
        procs.append(proc)
        return proc

    yield factory
    for proc in procs:
        proc.stop()
        print(f"--- {proc.log_path.name}: {' '.join(map(str, proc.args))} ---\n{proc.output()}")


@pytest.fixture
def make_node(make_gateway):
    nodes: list = []

    def factory(target, node: str = "app", handler=None, connected: bool = True, **options) -> blastbeat.Node:
        endpoints = [t.endpoint if isinstance(t, Gateway) else t
                     for t in (target if isinstance(target, (list, tuple)) else [target])]
        n = blastbeat.Node(endpoints, node, handler, **options)
        nodes.append(n)
        n.start()
        if connected:
            assert n.wait_connected(10), "node did not connect"
            time.sleep(0.25)  # let the gateway process the announcing pong
        return n

    yield factory
    for n in nodes:
        n.stop(timeout=2)
