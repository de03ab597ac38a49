"""One conformance suite for the two backend SDKs: the same scripted exchanges, run through the real gateway
against a Python SDK node (conformance_backend.py) and a Swift SDK node (ConformanceBackend/main.swift,
``sdk-conformance-backend``), must give the client the same bytes, and the bytes docs/PROTOCOL.md says.

Each HTTP exchange sends its request and, on the same connection, ``GET /length`` with ``Connection: close``,
then reads until the gateway closes: the stream shows the response byte for byte (status line, header order,
chunk framing) and whether the connection survived it. The WebSocket exchanges compare the messages and close
codes the client gets. Each SDK serves a vhost with two nodes, ``first`` (which answers ``/retry`` with
``retry``) and ``second``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from sdk_helpers import HERE, REPO, Gateway, Proc, subprocess_env, wait_until

websockets_sync = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402


def swift_backend() -> Path:
    return Path(os.environ.get("SWIFT_EXAMPLES_DIR", REPO / ".build" / "debug")) / "sdk-conformance-backend"


SDKS = ["python", "swift"]
NODES = ("first", "second")


class Setup:
    def __init__(self, sdk: str, workdir: Path):
        self.gateway = Gateway(workdir, nodes=NODES, name=f"gateway-{sdk}")
        self.procs: list[Proc] = []
        self.gateway.start()
        for node in NODES:
            if sdk == "python":
                args = [sys.executable, str(HERE / "conformance_backend.py")]
            else:
                binary = swift_backend()
                if not binary.is_file():
                    pytest.fail(f"{binary} not found: run `swift build`", pytrace=False)
                args = [str(binary)]
            self.procs.append(Proc(args + ["--connect", self.gateway.endpoint, "--node", node],
                                   workdir / f"{sdk}-{node}.log", env=subprocess_env()))
        # Both nodes alive: every request of a round is answered (a node not yet connected gives 503).
        wait_until(lambda: all(b" 200 " in exchange(self.gateway.port, get("/length"))[:16] for _ in range(4)),
                   20, interval=0.2, what=f"the {sdk} nodes serving")

    def stop(self) -> list[str]:
        problems = []
        for proc in self.procs:
            proc.stop()
            print(f"--- {proc.log_path.name} ---\n{proc.output()}")
        rc = self.gateway.stop()
        print(self.gateway.logs())
        if rc != 0:
            problems.append(f"{self.gateway.name} exited with {rc}")
        return problems


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    made: dict[str, Setup] = {}
    try:
        for sdk in SDKS:
            made[sdk] = Setup(sdk, tmp_path_factory.mktemp(f"conformance-{sdk}"))
        yield made
    finally:
        problems = [p for s in made.values() for p in s.stop()]
        assert not problems, problems


def get(path: str, method: str = "GET", version: str = "HTTP/1.1", headers: tuple = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {path} {version}", "Host: localhost"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


FOLLOW_UP = get("/length", headers=(("Connection", "close"),))
LENGTH = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\r\n"
          b"length body\n")


def exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Sends ``request`` then the follow-up; everything the gateway sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request + FOLLOW_UP)
        data = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
        return bytes(data)


BIG = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and a bit: several 1 MiB messages each way

TEXT_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"

# name: (request, the bytes the client must receive, request included the follow-up's answer when kept alive)
EXCHANGES = {
    # Content-Length: the head and the body in one message; the connection carries the next request.
    "length": (get("/length"), LENGTH + LENGTH),
    "head-of-length": (get("/length", "HEAD"),
                       b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\r\n"
                       + LENGTH),
    # No framing header: for HTTP/1.1 both SDKs add `Transfer-Encoding: chunked` and send `chunk` messages
    # (one chunk per message); the connection survives.
    "unframed-http11": (get("/unframed"),
                        TEXT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n" + LENGTH),
    # ... and for HTTP/1.0 the body is delimited by the close.
    "unframed-http10": (get("/unframed", version="HTTP/1.0"), TEXT_HEAD + b"\r\none\ntwo\n"),
    "head-of-unframed": (get("/unframed", "HEAD"), TEXT_HEAD + b"\r\n" + LENGTH),
    # The backend's own `Transfer-Encoding: chunked`: every write is a `chunk` message.
    "chunked": (get("/chunked"),
                TEXT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n" + LENGTH),
    # `chunk` messages under an unframed head: the same bytes as `body` messages.
    "chunk-messages": (get("/chunk-messages"),
                       TEXT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n" + LENGTH),
    "chunk-messages-http10": (get("/chunk-messages", version="HTTP/1.0"), TEXT_HEAD + b"\r\none\ntwo\n"),
    "empty-unframed": (get("/empty-unframed"), TEXT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + LENGTH),
    # RFC 9110 §8.6: no Content-Length in a 204.
    "no-content": (get("/no-content"), b"HTTP/1.1 204 No Content\r\n\r\n" + LENGTH),
    # An interim head reaches an HTTP/1.1 client, then the final response.
    "interim-103": (get("/interim"),
                    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                    + TEXT_HEAD + b"Content-Length: 6\r\n\r\nfinal\n" + LENGTH),
    # ... and is left out for an HTTP/1.0 client (RFC 9110 §15.2).
    "interim-103-http10": (get("/interim", version="HTTP/1.0"), TEXT_HEAD + b"Content-Length: 6\r\n\r\nfinal\n"),
    # 101 outside a WebSocket upgrade, and a 1xx where a final status belongs, are handler errors: 500.
    "interim-101-refused": (get("/interim-101"), None),
    "respond-1xx-refused": (get("/respond-1xx"), None),
    "raise": (get("/raise"), None),
    # A handler that fails after its head: the session is ended; the body, chunked by the SDK, stays
    # visibly cut off (no last chunk) and the connection closes: the follow-up is never answered.
    "raise-after-head": (get("/raise-after-head"),
                         TEXT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n8\r\npartial\n\r\n"),
    "raise-after-head-http10": (get("/raise-after-head", version="HTTP/1.0"), TEXT_HEAD + b"\r\npartial\n"),
    # end() in the middle of a body the node chunked: only `end` goes out, so the client sees the chunked body
    # cut off (no last chunk) and the connection closed; the follow-up is never answered.
    "end-chunked": (get("/end-chunked"), TEXT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n"),
    # A Content-Length body that finishes short: the session is ended, the client sees it cut off.
    "length-short": (get("/end-length-short"), TEXT_HEAD + b"Content-Length: 10\r\n\r\nshort\n"),
    # Request bodies up to the end-of-body marker: sized, chunked, an empty chunked one, a large one.
    "echo-length": (get("/echo", "POST", headers=(("Content-Type", "application/x-test"), ("Content-Length", "5"))) + b"hello",
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-test\r\nContent-Length: 5\r\n\r\nhello" + LENGTH),
    "echo-chunked-upload": (get("/echo", "POST", headers=(("Transfer-Encoding", "chunked"),))
                            + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\n"
                            b"abcde" + LENGTH),
    "echo-empty-chunked-upload": (get("/echo", "POST", headers=(("Transfer-Encoding", "chunked"),)) + b"0\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0"
                                  b"\r\n\r\n" + LENGTH),
    "echo-large": (get("/echo", "POST", headers=(("Content-Length", str(len(BIG))),)) + BIG,
                   b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "
                   + str(len(BIG)).encode() + b"\r\n\r\n" + BIG + LENGTH),
    # retry: `first` hands the request on (body replayed); `second` answers. Either node may get it first.
    "retry": (get("/retry", "POST", headers=(("Content-Length", "3"),)) + b"abc",
              TEXT_HEAD + b"Content-Length: 46\r\n\r\nanswered by second: POST /retry, 3 body bytes\n" + LENGTH),
    "not-found": (get("/nowhere"),
                  b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\n\r\n"
                  b"no route /nowhere\n" + LENGTH),
}

SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: 22\r\n\r\nInternal Server Error\n" + LENGTH)


@pytest.mark.parametrize("name", list(EXCHANGES))
def test_http_exchange(setups, name):
    request, expected = EXCHANGES[name]
    # `retry` three times: the gateway takes tied nodes in turn, so `first` gets (and hands on) at least one.
    rounds = 3 if name == "retry" else 1
    got = {sdk: exchange(setups[sdk].gateway.port, request) for _ in range(rounds) for sdk in SDKS}
    # What docs/PROTOCOL.md specifies, byte for byte (long bodies abbreviated in the message).
    want = SERVER_ERROR if expected is None else expected
    for sdk in SDKS:
        assert got[sdk] == want, f"{sdk}: {got[sdk][:600]!r}"
    assert got["python"] == got["swift"]


def websocket_session(port: int, script: list) -> list:
    """Runs ``script`` (messages to send) on a WebSocket; returns what came back, then the close code and reason."""
    seen: list = []
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, close_timeout=5) as ws:
        for message in script:
            ws.send(message)
            try:
                seen.append(ws.recv(timeout=10))
            except ConnectionClosed:  # the backend closed (or failed)
                break
        else:
            ws.close()  # every message echoed: the client closes, the gateway answers with 1000
        seen.append((ws.close_code, ws.close_reason))
    return seen


WS_EXCHANGES = {
    "echo": (["hello", b"\x00\xff\x01", "héllo" * 1000, bytes(70000)],
             ["hello", b"\x00\xff\x01", "héllo" * 1000, bytes(70000), (1000, "")]),
    "backend-close": (["one", "close"], ["one", (4000, "bye")]),
    "handler-raises": (["one", "raise"], ["one", (1011, "")]),
}


@pytest.mark.parametrize("name", list(WS_EXCHANGES))
def test_websocket_exchange(setups, name):
    script, expected = WS_EXCHANGES[name]
    got = {sdk: websocket_session(setups[sdk].gateway.port, script) for sdk in SDKS}
    for sdk in SDKS:
        assert got[sdk] == expected, f"{sdk}: {str(got[sdk])[:600]}"
    assert got["python"] == got["swift"]
