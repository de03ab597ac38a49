"""``python -m blastbeat.bridge`` between the real gateway and real HTTP servers.

Upstreams: ``python -m http.server`` over a directory of files, and ``echo_upstream.py`` (echoes requests,
streams, sends hop-by-hop headers).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import httpx
import pytest

from sdk_helpers import (HERE, Gateway, Proc, RawConn, free_port, port_accepts, request_bytes, sdk_command,
                         wait_served, wait_until)


def start_upstream_files(workdir):
    root = workdir / "www"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_text("hello from http.server\n")
    (root / "sub" / "page.html").write_text("<p>sub page</p>")
    (root / "big.bin").write_bytes(os.urandom(2_500_000))
    port = free_port()
    proc = Proc([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
                workdir / "http-server.log")
    wait_until(lambda: port_accepts(port), 10, 0.05, "http.server to listen")
    return root, port, proc


def start_echo(workdir, port=None):
    port = port or free_port()
    proc = Proc([sys.executable, str(HERE / "echo_upstream.py"), str(port)], workdir / f"echo-{port}.log")
    proc.wait_output("READY")
    wait_until(lambda: port_accepts(port), 10, 0.05, "echo upstream to listen")
    return port, proc


def start_bridge(workdir, gw: Gateway, node: str, upstream: str, *extra: str, served: bool = True) -> Proc:
    proc = Proc(sdk_command("bridge", "--connect", gw.endpoint, "--node", node, "--upstream", upstream,
                            "--threads", "4", *extra), workdir / f"bridge-{node}-{free_port()}.log")
    proc.wait_output("connected to")
    if served:
        assert wait_served(gw.url) != 503, proc.output()
    else:
        time.sleep(0.3)
    return proc


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("files")
    root, _, upstream = start_upstream_files(workdir)
    gw = Gateway(workdir, nodes=["files"], name="files-gateway").start()
    bridge = start_bridge(workdir, gw, "files", f"http://127.0.0.1:{_}")
    yield gw, root
    for proc in (bridge, upstream):
        proc.stop()
        print(f"--- {proc.log_path.name} ---\n{proc.output()}")
    assert gw.stop() == 0, gw.logs()


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("echo")
    port, upstream = start_echo(workdir)
    gw = Gateway(workdir, nodes=["echo"], name="echo-gateway").start()
    bridge = start_bridge(workdir, gw, "echo", f"http://127.0.0.1:{port}")
    yield gw
    for proc in (bridge, upstream):
        proc.stop()
        print(f"--- {proc.log_path.name} ---\n{proc.output()}")
    assert gw.stop() == 0, gw.logs()


@pytest.fixture
def echo_client(echo):
    with httpx.Client(base_url=echo.url, timeout=15) as c:
        yield c


def upstream_headers(resp) -> dict:
    return {k.lower(): v for k, v in resp.json()["headers"]}


# -- http.server ---------------------------------------------------------------------------------------------


def test_get_files(files):
    gw, root = files
    with httpx.Client(base_url=gw.url, timeout=15) as c:
        resp = c.get("/hello.txt")
        assert resp.status_code == 200 and resp.text == "hello from http.server\n"
        assert resp.headers["content-length"] == str(len(resp.content))
        assert c.get("/sub/page.html").text == "<p>sub page</p>"
        assert "page.html" in c.get("/sub/").text
        big = c.get("/big.bin")
        assert hashlib.sha256(big.content).digest() == hashlib.sha256((root / "big.bin").read_bytes()).digest()


def test_missing_file_is_404(files):
    gw, _ = files
    resp = httpx.get(gw.url + "/no-such-file.txt", timeout=15)
    assert resp.status_code == 404 and "File not found" in resp.text


def test_head_file(files):
    gw, _ = files
    resp = httpx.head(gw.url + "/hello.txt", timeout=15)
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-length"] == str(len("hello from http.server\n"))


# -- echo upstream -------------------------------------------------------------------------------------------


def test_post_with_length(echo_client):
    resp = echo_client.post("/echo?x=1", content=b"hello upstream", headers={"Content-Type": "text/plain"})
    data = resp.json()
    assert resp.status_code == 200 and data["method"] == "POST" and data["target"] == "/echo?x=1"
    assert data["body"] == "hello upstream"
    headers = upstream_headers(resp)
    assert headers["content-length"] == "14" and headers["content-type"] == "text/plain"
    assert "transfer-encoding" not in headers


def test_chunked_post_is_streamed_chunked(echo_client):
    piece = os.urandom(50_000)

    def body():
        for _ in range(60):
            yield piece

    resp = echo_client.put("/echo", content=body())
    data = resp.json()
    assert data["method"] == "PUT" and data["size"] == 3_000_000
    assert data["sha256"] == hashlib.sha256(piece * 60).hexdigest()
    headers = upstream_headers(resp)
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers


def test_forwarded_headers_and_hop_by_hop_removed(echo, echo_client):
    resp = echo_client.get("/echo", headers={
        "Connection": "keep-alive, X-Private",
        "X-Private": "hop secret",
        "Keep-Alive": "300",
        "Proxy-Authorization": "Basic xxx",
        "X-Forwarded-For": "10.0.0.1",
        "X-Other": "end to end",
    })
    headers = upstream_headers(resp)
    for name in ("connection", "x-private", "keep-alive", "proxy-authorization", "te", "upgrade"):
        assert name not in headers, name
    assert headers["x-other"] == "end to end"
    assert headers["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"127.0.0.1:{echo.port}" == headers["x-forwarded-host"]
    plain = upstream_headers(echo_client.get("/echo"))
    assert plain["x-forwarded-for"] == "127.0.0.1"


def test_response_hop_by_hop_removed(echo_client):
    resp = echo_client.get("/hop")
    assert resp.status_code == 200 and resp.headers["x-public"] == "visible"
    assert "x-private" not in resp.headers and "keep-alive" not in resp.headers


def test_repeated_response_headers_kept(echo_client):
    assert echo_client.get("/cookies").headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_status_passthrough(echo_client):
    assert echo_client.post("/echo?status=201", content=b"x").status_code == 201
    assert echo_client.get("/nowhere").status_code == 404


def test_streamed_response(echo_client):
    started = time.monotonic()
    arrivals = []
    body = b""
    with echo_client.stream("GET", "/stream", params={"n": 4, "delay": 0.3}) as resp:
        assert resp.headers["transfer-encoding"] == "chunked"
        for data in resp.iter_raw():
            arrivals.append(time.monotonic() - started)
            body += data
    assert body == b"".join(b"piece %d\n" % i for i in range(4))
    assert arrivals[0] < 0.9 <= arrivals[-1], arrivals


def test_upstream_keepalive_pool(echo_client):
    ports = [echo_client.get("/echo").json()["client_port"] for _ in range(4)]
    assert len(set(ports)) == 1, f"sequential requests should reuse one upstream connection: {ports}"
    closing = echo_client.get("/close").json()["client_port"]
    after = echo_client.get("/echo").json()["client_port"]
    assert after != closing, "a connection the upstream closed must not be reused"


def test_body_until_upstream_closes(echo_client):
    resp = echo_client.get("/no-length")
    assert resp.status_code == 200 and resp.text == "until the upstream closes"


def test_upstream_failing_mid_response_closes_the_client_connection(echo):
    with RawConn(echo.port) as c:
        c.send(request_bytes("GET", "/truncated"))
        head = c._until(b"\r\n\r\n", time.monotonic() + 10)
        assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 100" in head.lower()
        assert c.read_until_close(10) == b"only ten b", "a cut-off upstream body ends in a close"
    assert httpx.get(echo.url + "/echo", timeout=15).status_code == 200
    with RawConn(echo.port) as c:
        c.send(request_bytes("GET", "/stream-cut"))
        assert c._until(b"\r\n\r\n", time.monotonic() + 10).startswith(b"HTTP/1.1 200 OK")
        rest = c.read_until_close(10)
        assert rest == b"5\r\nfirst\r\n", "a cut-off chunked body must not get a last chunk"


# -- failures ------------------------------------------------------------------------------------------------


def test_upstream_down_gives_502(make_gateway, tmp_path):
    gw = make_gateway(nodes=["down"])
    bridge = start_bridge(tmp_path, gw, "down", f"http://127.0.0.1:{free_port()}", served=False)
    try:
        resp = httpx.get(gw.url + "/anything", timeout=15)
        assert resp.status_code == 502 and "Bad Gateway" in resp.text
        resp = httpx.post(gw.url + "/with-body", content=b"data", timeout=15)
        assert resp.status_code == 502
    finally:
        bridge.stop()
        print(bridge.output())


def test_upstream_restart(make_gateway, tmp_path):
    """Pooled connections to an upstream that restarted are dead; the bridge must not fail on them."""
    gw = make_gateway(nodes=["echo"])
    port, upstream = start_echo(tmp_path)
    bridge = start_bridge(tmp_path, gw, "echo", f"http://127.0.0.1:{port}")
    try:
        with httpx.Client(base_url=gw.url, timeout=15) as c:
            assert c.get("/echo").status_code == 200
            upstream.stop()
            assert c.get("/echo").status_code == 502
            port, upstream = start_echo(tmp_path, port)
            assert c.get("/echo").status_code == 200
            assert c.post("/echo", content=b"after restart").json()["body"] == "after restart"
    finally:
        upstream.stop()
        bridge.stop()
        print(bridge.output())


def test_upstream_prefix(make_gateway, tmp_path):
    gw = make_gateway(nodes=["echo"])
    port, upstream = start_echo(tmp_path)
    bridge = start_bridge(tmp_path, gw, "echo", f"http://127.0.0.1:{port}/prefix/", served=False)
    try:
        resp = httpx.get(gw.url + "/some/path?q=1", timeout=15)
        assert resp.status_code == 200 and resp.json()["target"] == "/prefix/some/path?q=1"
    finally:
        upstream.stop()
        bridge.stop()
        print(bridge.output())
