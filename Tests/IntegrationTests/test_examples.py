"""The Python example nodes in examples/ work against the gateway, started exactly as documented."""

from __future__ import annotations

import time

from helpers import RawConn, curl_fetch, http_request, request_bytes


def wait_served(port: int, timeout: float = 10.0, **kwargs):
    """Poll until the vhost's nodes are alive (503 while the example is starting)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = http_request(port, **kwargs)
        if resp.status != 503 or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_hello_example(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": ["hello"]})
    run_example("hello", "--connect", gw.endpoint)
    assert wait_served(gw.port).status == 200
    res = curl_fetch(gw.port, "/world")
    assert res.returncode == 0, res.stderr
    assert res.status == 200
    assert res.body == b"Hello, World! (node hello, path /world)\n"
    head = http_request(gw.port, method="HEAD")
    assert head.status == 200 and head.body == b""


def test_hello_example_node_option(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": ["custom"]})
    run_example("hello", "--connect", gw.endpoint, "--node", "custom")
    resp = wait_served(gw.port)
    assert resp.status == 200 and b"node custom" in resp.body


def test_chunked_example(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": ["chunked"]})
    run_example("chunked", "--connect", gw.endpoint)
    assert wait_served(gw.port).status == 200
    expected = b"".join(b"i am the number %d<br/>" % i for i in range(1, 100))
    res = curl_fetch(gw.port, "/")
    assert res.status == 200 and res.body == expected
    with RawConn(gw.port) as c:
        for _ in range(2):
            c.send(request_bytes("GET", "/", "localhost"))
            resp = c.read_response()
            assert resp.chunked and resp.body == expected


def test_echo_body_example(make_gateway, run_example, tmp_path):
    gw = make_gateway(vhosts={"localhost": ["echo"]})
    run_example("echo_body", "--connect", gw.endpoint)
    assert wait_served(gw.port).status == 200
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    res = curl_fetch(gw.port, "/echo", "--data-binary", f"@{data}", "-H", "Content-Type: application/x-test")
    assert res.status == 200 and res.body == data.read_bytes()
    assert res.header("Content-Type") == "application/x-test"
    chunked = curl_fetch(gw.port, "/echo", "--data-binary", f"@{data}", "-H", "Transfer-Encoding: chunked")
    assert chunked.status == 200 and chunked.body == data.read_bytes()
    empty = http_request(gw.port, method="POST", headers=[("Content-Length", "0")])
    assert empty.status == 200 and empty.body == b""


def test_retry_example(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": ["busy", "worker"]})
    run_example("retry", "--connect", gw.endpoint, "--node", "busy")
    run_example("retry", "--connect", gw.endpoint, "--node", "worker", "--answer")
    time.sleep(1.5)  # both nodes pinged and alive
    for i in range(4):
        resp = wait_served(gw.port, method="POST", target=f"/r{i}", headers=[("Content-Length", "3")], body=b"abc")
        assert resp.status == 200, resp.raw
        assert resp.body == b"answered by worker: POST /r%d, 3 body bytes\n" % i


def test_retry_example_alone_gives_502(make_gateway, run_example):
    gw = make_gateway(vhosts={"localhost": ["retry"]})
    run_example("retry", "--connect", gw.endpoint)
    resp = wait_served(gw.port)
    assert resp.status_line == "HTTP/1.1 502 Bad Gateway"
