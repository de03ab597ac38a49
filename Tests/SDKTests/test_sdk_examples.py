"""The SDK examples in examples/ (flask_app.py, bridge.sh), started as examples/README.md documents them."""

from __future__ import annotations

import signal
import sys

import httpx

from sdk_helpers import REPO, free_port, port_accepts, sdk_command, subprocess_env, wait_served, wait_until

EXAMPLES = REPO / "examples"


def check_flask_example(url: str) -> None:
    with httpx.Client(base_url=url, timeout=15) as c:
        assert "Hello from Flask behind BlastBeat" in c.get("/").text
        assert c.get("/hello/world").text == "Hello, world!\n"
        assert c.post("/form", data={"name": "Ada"}).json() == {"name": ["Ada"]}
        upload = c.post("/upload", files={"file": ("a.txt", b"abc")}, data={"k": "v"}).json()
        assert upload["files"]["file"]["size"] == 3 and upload["fields"] == {"k": "v"}
        assert c.post("/json", json={"a": 1}).json() == {"received": {"a": 1}, "client": "127.0.0.1"}
        stream = c.get("/stream", params={"n": 3})
        assert stream.text == "line 0\nline 1\nline 2\n" and stream.headers["transfer-encoding"] == "chunked"


def test_flask_example_with_the_wsgi_server(make_gateway, spawn):
    gw = make_gateway(nodes=["hello"])
    proc = spawn(sdk_command("wsgi", "flask_app:app", "--chdir", str(EXAMPLES), "--connect", gw.endpoint,
                             "--node", "hello"), "flask-example")
    proc.wait_output("connected to")
    assert wait_served(gw.url) == 200
    check_flask_example(gw.url)
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_flask_example_run_directly(make_gateway, spawn):
    gw = make_gateway(nodes=["hello"])
    proc = spawn([sys.executable, str(EXAMPLES / "flask_app.py"), "--connect", gw.endpoint], "flask-direct")
    proc.wait_output("connected to")
    assert wait_served(gw.url) == 200
    check_flask_example(gw.url)


def test_bridge_example(make_gateway, spawn, tmp_path):
    gw = make_gateway(nodes=["hello"])
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<h1>served by http.server</h1>")
    upstream_port = free_port()
    env = subprocess_env(PYTHON=sys.executable, BLASTBEAT_ZMQ=gw.endpoint, UPSTREAM_PORT=str(upstream_port))
    proc = spawn(["sh", str(EXAMPLES / "bridge.sh"), str(tmp_path / "www")], "bridge-example", env=env)
    proc.wait_output("connected to")
    wait_until(lambda: port_accepts(upstream_port), 10, 0.05, "the example's http.server")
    assert wait_served(gw.url) == 200
    resp = httpx.get(gw.url + "/", timeout=15)
    assert resp.text == "<h1>served by http.server</h1>"
    assert httpx.get(gw.url + "/missing", timeout=15).status_code == 404
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    wait_until(lambda: not port_accepts(upstream_port), 5, 0.1, "the example's http.server to stop")
