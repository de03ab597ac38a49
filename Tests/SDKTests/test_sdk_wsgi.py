"""A real Flask application behind the real gateway through ``python -m blastbeat.wsgi``.

One gateway and one WSGI server process per module (``flask_testapp:app``, 4 threads); a second pair runs
the same app under ``wsgiref.validate`` to check PEP 3333 on both sides. Shutdown tests start their own.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import httpx
import pytest

from sdk_helpers import HERE, Gateway, Proc, RawConn, request_bytes, sdk_command, wait_served, wait_until


def start_pair(tmp_path_factory, name: str, app: str, threads: int = 4, extra=()):
    workdir = tmp_path_factory.mktemp(name)
    gw = Gateway(workdir, nodes=["flask"], name=f"{name}-gateway").start()
    proc = None
    try:
        proc = Proc(sdk_command("wsgi", app, "--chdir", str(HERE), "--connect", gw.endpoint, "--node", "flask",
                                "--threads", str(threads), *extra), workdir / f"{name}-wsgi.log")
        proc.wait_output("connected to")
        assert wait_served(gw.url) == 200, proc.output()
    except BaseException:
        # A module-scoped fixture that fails to set up gets no teardown: stop what was started.
        if proc is not None:
            proc.stop()
        gw.stop()
        raise
    return gw, proc


def stop_pair(gw: Gateway, proc: Proc) -> None:
    rc = proc.stop()
    print(f"--- wsgi server output ---\n{proc.output()}")
    assert rc == 0, f"WSGI server exited with {rc} after SIGTERM"
    assert gw.stop() == 0, gw.logs()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    gw, proc = start_pair(tmp_path_factory, "flask", "flask_testapp:app")
    yield gw, proc
    stop_pair(gw, proc)


@pytest.fixture
def client(server):
    gw, _ = server
    with httpx.Client(base_url=gw.url, timeout=15) as c:
        yield c


def counters(client) -> dict:
    return client.get("/counters").json()


# -- Flask ---------------------------------------------------------------------------------------------------


def test_routes(client):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.text == "index page"
    assert resp.headers["content-type"].startswith("text/html")
    assert client.get("/hello/Ada").text == "Hello, Ada!"
    assert client.get("/query", params=[("a", "1"), ("a", "2"), ("b", "x y")]).json() == {"a": ["1", "2"],
                                                                                          "b": ["x y"]}
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "Not Found" in missing.text
    assert client.get("/forbidden").status_code == 403


def test_form(client):
    resp = client.post("/form", data={"name": ["Ada", "Bob"], "city": "Zürich"})
    assert resp.json() == {"name": ["Ada", "Bob"], "city": ["Zürich"]}


def test_multipart_upload(client):
    data = os.urandom(300_000)
    resp = client.post("/upload", files={"file": ("data.bin", data, "application/octet-stream")},
                       data={"title": "random bytes"})
    assert resp.status_code == 200
    assert resp.json() == {"files": {"file": {"filename": "data.bin", "size": len(data), "type":
                                              "application/octet-stream",
                                              "sha256": hashlib.sha256(data).hexdigest()}},
                           "fields": {"title": "random bytes"}}


def test_json(client):
    payload = {"numbers": [1, 2, 3], "nested": {"ok": True}, "text": "h\u00e9llo"}
    resp = client.post("/json", json=payload)
    assert resp.json() == {"received": payload, "type": "application/json"}


def test_large_chunked_upload(client):
    """A 5 MiB upload of unknown length (chunked) reaches Flask whole through the streaming wsgi.input."""
    piece = os.urandom(65536)

    def body():
        for _ in range(80):
            yield piece

    resp = client.post("/digest", content=body())
    expected = hashlib.sha256(piece * 80).hexdigest()
    assert resp.json() == {"size": 65536 * 80, "sha256": expected, "content_length": None}


def test_upload_with_content_length(client):
    data = os.urandom(1_000_001)
    resp = client.post("/digest", content=data)
    assert resp.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "content_length": str(len(data))}


def test_streaming_response(client):
    started = time.monotonic()
    arrivals = []
    with client.stream("GET", "/stream", params={"n": 4, "delay": 0.3}) as resp:
        assert resp.status_code == 200
        assert resp.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in resp.headers
        body = b""
        for data in resp.iter_raw():
            arrivals.append(time.monotonic() - started)
            body += data
    assert body == b"piece 0\npiece 1\npiece 2\npiece 3\n"
    assert arrivals[0] < 0.3 * 3, f"the first piece must arrive before the generator ends: {arrivals}"
    assert arrivals[-1] >= 0.3 * 3


def test_crashing_view_gives_500_and_the_server_goes_on(client):
    for _ in range(6):  # more crashes than worker threads
        resp = client.get("/crash")
        assert resp.status_code == 500
    assert client.get("/").status_code == 200


def test_crash_mid_stream_closes_the_connection(server, client):
    gw, _ = server
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/crash-mid-stream"))
        head = c._until(b"\r\n\r\n", time.monotonic() + 10)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert c._until(b"before the crash\n\r\n", time.monotonic() + 10)
        assert c.closed_by_peer(10), "a response that failed mid-stream must end with a close, not a last chunk"
    assert client.get("/").status_code == 200


def test_head(client):
    head = client.head("/head-check")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "12" and head.headers["x-method"] == "HEAD"
    get = client.get("/head-check")
    assert get.content == b"twelve bytes" and get.headers["x-method"] == "GET"
    assert client.get("/").status_code == 200  # the keep-alive connection survived the HEAD


def test_environ(server, client):
    gw, _ = server
    env = client.get("/environ", headers={"X-Custom": "v"}, params={"q": "1 2"}).json()
    assert env["REQUEST_METHOD"] == "GET" and env["SCRIPT_NAME"] == "" and env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "q=1+2" and env["REQUEST_URI"] == "/environ?q=1+2"
    assert env["SERVER_NAME"] == "localhost" and env["SERVER_PORT"] == str(gw.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
    # multiprocess: started without --instance/--plain-identity, the node has a unique instance identity, so
    # another process started the same way serves the same node at the same time.
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True and env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True and env["errors_is_stderr"] and env["has_blastbeat_request"]
    assert env["HTTP_X_CUSTOM"] == "v" and env["HTTP_HOST"] == f"127.0.0.1:{gw.port}"
    assert env["SERVER_SOFTWARE"].startswith("blastbeat")
    again = client.get("/environ").json()
    assert again["REMOTE_PORT"] == env["REMOTE_PORT"], "one keep-alive connection for both requests"


def test_percent_decoded_path(client):
    resp = client.get("/path/a%20b/%C3%A9t%C3%A9")
    assert resp.json()["rest"] == "a b/\u00e9t\u00e9"
    assert resp.json()["raw_uri"] == "/path/a%20b/%C3%A9t%C3%A9"


# -- PEP 3333 corners (raw WSGI) -----------------------------------------------------------------------------


def test_exc_info_replaces_status_before_the_head(client):
    resp = client.get("/wsgi/exc-info")
    assert resp.status_code == 503 and resp.headers["x-replaced"] == "yes"
    assert resp.text == "replaced by exc_info"


def test_exc_info_after_the_head_reraises(server, client):
    gw, _ = server
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/wsgi/exc-info-late"))
        assert c._until(b"\r\n\r\n", time.monotonic() + 10).startswith(b"HTTP/1.1 200 OK")
        assert c._until(b"head is out\r\n", time.monotonic() + 10)
        assert c.closed_by_peer(10)
    assert client.get("/").status_code == 200


def test_write_callable(client):
    assert client.get("/wsgi/write").text == "written directly, then returned"


def test_list_body_gets_content_length(client):
    resp = client.get("/wsgi/list")
    assert resp.headers["content-length"] == "6" and "transfer-encoding" not in resp.headers
    assert resp.text == "abcdef"


def test_generator_body_is_chunked(client):
    resp = client.get("/wsgi/generator")
    assert resp.headers["transfer-encoding"] == "chunked" and resp.text == "generated"
    assert client.get("/wsgi/empty-generator").status_code == 204


def test_generator_body_to_http10_client(server):
    gw, _ = server
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/wsgi/generator", version="HTTP/1.0"))
        resp = c.read_response()
    assert resp.status == 200 and resp.header("transfer-encoding") is None and resp.body == b"generated"


def test_close_is_called(client):
    before = counters(client)["closed"]
    assert client.get("/wsgi/closeable").text == "closeable body"
    wait_until(lambda: counters(client)["closed"] == before + 1, 5, 0.05, "close() of the body")


def test_close_is_called_when_the_client_leaves_mid_stream(server, client):
    gw, _ = server
    before = counters(client)["infinite_closed"]
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/wsgi/infinite"))
        c._until(b"xxxx", time.monotonic() + 10)
    wait_until(lambda: counters(client)["infinite_closed"] == before + 1, 10, 0.1,
               "close() of the endless body after the client went away")
    assert client.get("/").status_code == 200


def test_input_iteration_and_readline(client):
    assert client.post("/wsgi/lines", content=b"one\ntwo\nthree").text == "3 lines, last three"
    assert client.post("/wsgi/lines", content=iter([b"a\nb", b"b\nc", b"cc\n"])).text == "3 lines, last ccc"
    resp = client.post("/wsgi/readline", content=b"abcdefgh\nijklmnop")
    assert resp.content == b"abcd|efgh\n|ijk|lmnop"


def test_app_without_start_response_gives_500(client):
    assert client.get("/wsgi/no-start-response").status_code == 500
    assert client.get("/").status_code == 200


def test_concurrent_requests_overlap(client, server):
    gw, _ = server
    started = time.monotonic()
    results = []

    def one():
        results.append(httpx.get(gw.url + "/slow", params={"t": 1.0}, timeout=10).status_code)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 4
    assert time.monotonic() - started < 3.0, "four 1 s requests on four threads must overlap"


# -- PEP 3333 validator --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    gw, proc = start_pair(tmp_path_factory, "validated", "flask_testapp:validated_app", threads=2)
    yield gw, proc
    stop_pair(gw, proc)


def test_wsgiref_validator_finds_nothing(validated):
    gw, proc = validated
    with httpx.Client(base_url=gw.url, timeout=15) as c:
        assert c.get("/").text == "index page"
        assert c.get("/hello/x").status_code == 200
        assert c.get("/query", params={"a": "1"}).json() == {"a": ["1"]}
        # (No form or JSON posts here: the validator insists on read(size) with an argument, and Werkzeug
        # calls read() without one; that is between those two, not the server.)
        assert c.post("/wsgi/lines", content=b"one\ntwo").text == "2 lines, last two"
        assert c.get("/stream").text == "piece 0\npiece 1\npiece 2\n"
        assert c.head("/head-check").status_code == 200
        assert c.get("/wsgi/list").text == "abcdef"
        assert c.get("/wsgi/generator").text == "generated"
        assert c.get("/wsgi/write").text == "written directly, then returned"
        assert c.get("/wsgi/exc-info").status_code == 503
        assert c.get("/wsgi/closeable").text == "closeable body"
        assert c.get("/wsgi/empty-generator").status_code == 204
    time.sleep(0.3)
    output = proc.output()
    for marker in ("AssertionError", "WSGIWarning", "Traceback", "without being closed"):
        assert marker not in output, output


# -- shutdown ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight(tmp_path_factory):
    gw, proc = start_pair(tmp_path_factory, "shutdown", "flask_testapp:app", extra=("--graceful-timeout", "5"))
    try:
        result = {}

        def slow():
            try:
                resp = httpx.get(gw.url + "/slow", params={"t": 1.5}, timeout=10)
                result["status"], result["text"] = resp.status_code, resp.text
            except httpx.HTTPError as exc:
                result["error"] = repr(exc)

        t = threading.Thread(target=slow)
        t.start()
        wait_until(lambda: httpx.get(gw.url + "/counters", timeout=10).json()["slow_started"] == 1, 10, 0.05,
                   "the slow request to be in flight")
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        t.join(10)
        assert result == {"status": 200, "text": "slow done"}, proc.output()
        assert time.monotonic() - started >= 0.5, "the server must wait for the request in flight"
        assert "stopping" in proc.output()
    finally:
        proc.stop()
        print(proc.output())
        gw.stop()


@pytest.mark.slow
def test_shutdown_is_bounded(tmp_path_factory):
    gw, proc = start_pair(tmp_path_factory, "bounded", "flask_testapp:app", extra=("--graceful-timeout", "0.5"))
    try:
        t = threading.Thread(target=lambda: httpx.get(gw.url + "/slow", params={"t": 20}, timeout=15))
        t.daemon = True
        t.start()
        wait_until(lambda: httpx.get(gw.url + "/counters", timeout=10).json()["slow_started"] == 1, 10, 0.05,
                   "the slow request to be in flight")
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5, "a stuck request must not hold the shutdown past the grace period"
    finally:
        proc.stop()
        print(proc.output())
        gw.stop()
