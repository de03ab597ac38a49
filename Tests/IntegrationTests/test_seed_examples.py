"""The original README's examples, in Python 3 (bytes), against the real gateway.

Each backend here is written the way the README writes it: a DEALER with the node name as identity,
``recv_multipart`` into ``sid, msg_type, msg_body`` and replies of 3 frames.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest
import zmq

from helpers import (HTTPHandler, RawConn, Request, curl_fetch, protocol_doc_decoder, request_bytes, respond,
                     uwsgi_pairs, uwsgi_to_dict)

sdk_uwsgi_to_dict = uwsgi_to_dict


class ReadmeNode:
    """A README-style consumer loop in a thread: recv_multipart, dispatch on msg_type, 3-frame replies."""

    def __init__(self, endpoint: str, identity: bytes, on_message):
        self.endpoint = endpoint
        self.identity = identity
        self.on_message = on_message
        self.pings: list[tuple[bytes, bytes, float]] = []
        self.seen: list[tuple[bytes, bytes, bytes]] = []
        self.errors: list[BaseException] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        context = zmq.Context()
        # create the dealer socket
        socket = context.socket(zmq.DEALER)
        # authorize it setting the identity
        socket.setsockopt(zmq.IDENTITY, self.identity)
        socket.setsockopt(zmq.LINGER, 0)
        # connect to blastbeat
        socket.connect(self.endpoint)
        try:
            while not self.stop_event.is_set():
                if not socket.poll(20):
                    continue
                # receive a blastbeat message
                sid, msg_type, msg_body = socket.recv_multipart()
                self.seen.append((sid, msg_type, msg_body))
                try:
                    self.on_message(self, socket, sid, msg_type, msg_body)
                except BaseException as e:  # noqa: BLE001
                    self.errors.append(e)
        finally:
            socket.close(linger=0)
            context.term()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)
        assert not self.errors, f"backend raised: {self.errors!r}"

    def wait_ready(self, timeout: float = 5.0) -> "ReadmeNode":
        deadline = time.monotonic() + timeout
        while not self.pings:
            assert time.monotonic() < deadline, "the gateway never pinged the node"
            time.sleep(0.02)
        time.sleep(0.15)
        return self


def readme_pong(node: ReadmeNode, socket, sid: bytes, msg_type: bytes, msg_body: bytes) -> bool:
    """The README's ping/pong snippet, with ``socket.send`` (the README's ``zmq.send`` is a typo) and bytes."""
    if msg_type == b'ping':
        node.pings.append((sid, msg_body, time.monotonic()))
        socket.send(sid, zmq.SNDMORE)
        socket.send(b'pong', zmq.SNDMORE)
        socket.send(b'')
        return True
    return False


# ----------------------------------------------------------------------------------------------------------------


def test_hello_headers_and_body(make_gateway):
    """Minimal node: on uwsgi send one `headers` (with Content-Length) and one `body`."""
    gw = make_gateway(vhosts={"localhost": ["foobar1"]})

    def on_message(node, socket, sid, msg_type, msg_body):
        if readme_pong(node, socket, sid, msg_type, msg_body):
            return
        if msg_type == b'uwsgi':
            body = b'<h1>Hello World</h1>'
            headers = '\r\n'.join(['HTTP/1.1 200 OK', 'Content-Type: text/html',
                                   'Content-Length: %d' % len(body)]) + '\r\n\r\n'
            socket.send_multipart([sid, b'headers', headers.encode()])
            socket.send_multipart([sid, b'body', body])

    with ReadmeNode(gw.endpoint, b'foobar1', on_message) as node:
        node.wait_ready()
        res = curl_fetch(gw.port, "/")
        assert res.returncode == 0, res.stderr
        assert res.status == 200
        assert res.header("Content-Type") == "text/html"
        assert res.body == b'<h1>Hello World</h1>'
        uwsgi = [m for m in node.seen if m[1] == b'uwsgi']
        assert len(uwsgi) == 1 and len(uwsgi[0][0]) == 16


def ruby_sequence(node, socket, sid, msg_type, msg_body):
    """The README's Ruby EventMachine example, message for message, in Python."""
    if readme_pong(node, socket, sid, msg_type, msg_body):
        return
    if msg_type == b'uwsgi':
        env = uwsgi_to_dict(msg_body)
        headers = []
        headers.append(env[b'SERVER_PROTOCOL'] + b' 200 OK')
        headers.append(b'Content-Type: text/html')
        headers.append(b'Server: tremolo.rb')
        socket.send_multipart([sid, b'headers', b'\r\n'.join(headers) + b'\r\n\r\n'])
        socket.send_multipart([sid, b'body', b'<h1>Hello World</h1>'])
        socket.send_multipart([sid, b'body', b'<h2>Done !!!</h2>'])
        socket.send_multipart([sid, b'body', b'<h3>Done !!!</h3>'])
        socket.send_multipart([sid, b'body', b'<h4>Done !!!</h4>'])
        socket.send_multipart([sid, b'end', b''])
    elif msg_type == b'websocket':
        socket.send_multipart([sid, b'websocket', msg_body])


RUBY_BODY = b'<h1>Hello World</h1><h2>Done !!!</h2><h3>Done !!!</h3><h4>Done !!!</h4>'


def test_ruby_multi_body_end_with_curl(make_gateway):
    """headers without framing + 4 bodies + end: curl (HTTP/1.1) receives the whole body."""
    gw = make_gateway(vhosts={"localhost": ["FOOBAR1"]})
    with ReadmeNode(gw.endpoint, b'FOOBAR1', ruby_sequence) as node:
        node.wait_ready()
        res = curl_fetch(gw.port, "/")
        assert res.returncode == 0, res.stderr
        assert res.status == 200
        assert res.header("Server") == "tremolo.rb"
        assert res.body == RUBY_BODY
        # The gateway echoes `end` to the node once the session is gone.
        deadline = time.monotonic() + 3
        while not any(m[1] == b'end' for m in node.seen):
            assert time.monotonic() < deadline, "no `end` from the gateway after the backend's `end`"
            time.sleep(0.02)


def test_ruby_multi_body_end_http11_is_chunked_then_closed(make_gateway):
    """An unframed response to an HTTP/1.1 client is chunk-framed by the gateway, then `end` closes."""
    gw = make_gateway(vhosts={"localhost": ["FOOBAR1"]})
    with ReadmeNode(gw.endpoint, b'FOOBAR1', ruby_sequence) as node:
        node.wait_ready()
        with RawConn(gw.port) as c:
            c.send(request_bytes("GET", "/", "localhost"))
            resp = c.read_response()
            assert resp.status_line == "HTTP/1.1 200 OK"
            assert resp.chunked, f"expected Transfer-Encoding: chunked, got {resp.headers!r}"
            assert resp.header("Content-Length") is None
            assert resp.body == RUBY_BODY
            assert c.is_closed_by_peer(3), "`end` must close the client connection"


def test_ruby_multi_body_end_http10_close_delimited(make_gateway):
    """The same sequence to an HTTP/1.0 client: no chunking, the body ends with the close."""
    gw = make_gateway(vhosts={"localhost": ["FOOBAR1"]})
    with ReadmeNode(gw.endpoint, b'FOOBAR1', ruby_sequence) as node:
        node.wait_ready()
        with RawConn(gw.port) as c:
            c.send(request_bytes("GET", "/", "localhost", version="HTTP/1.0"))
            raw = c.read_all_until_close(5)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.0 200 OK"
        assert b"transfer-encoding" not in head.lower()
        assert body == RUBY_BODY


def readme_chunked(node, socket, sid, msg_type, msg_body):
    if readme_pong(node, socket, sid, msg_type, msg_body):
        return
    if msg_type == b'uwsgi':
        headers = '\r\n'.join(['HTTP/1.1 200 OK', 'Content-Type: text/html',
                               'Transfer-Encoding: chunked']) + '\r\n\r\n'
        socket.send(sid, zmq.SNDMORE)
        socket.send(b'headers', zmq.SNDMORE)
        socket.send(headers.encode())
        for i in range(1, 100):
            socket.send(sid, zmq.SNDMORE)
            socket.send(b'chunk', zmq.SNDMORE)
            socket.send(b'i am the number %d<br/>' % i)
        # to end a chunked response just send an empty chunk
        socket.send(sid, zmq.SNDMORE)
        socket.send(b'chunk', zmq.SNDMORE)
        socket.send(b'')


CHUNKED_BODY = b''.join(b'i am the number %d<br/>' % i for i in range(1, 100))


def test_readme_chunked_with_curl(make_gateway):
    gw = make_gateway(vhosts={"localhost": ["foobar1"]})
    with ReadmeNode(gw.endpoint, b'foobar1', readme_chunked) as node:
        node.wait_ready()
        res = curl_fetch(gw.port, "/")
        assert res.returncode == 0, res.stderr
        assert res.status == 200
        assert res.header("Transfer-Encoding") == "chunked"
        assert res.body == CHUNKED_BODY


def test_readme_chunked_keeps_connection_alive(make_gateway):
    """99 chunks + the empty chunk: valid chunked framing, and the connection serves the next request."""
    gw = make_gateway(vhosts={"localhost": ["foobar1"]})
    with ReadmeNode(gw.endpoint, b'foobar1', readme_chunked) as node:
        node.wait_ready()
        with RawConn(gw.port) as c:
            for path in ("/first", "/second"):
                c.send(request_bytes("GET", path, "localhost"))
                resp = c.read_response()
                assert resp.status == 200
                assert resp.chunked
                assert resp.body == CHUNKED_BODY
                assert resp.raw.endswith(b"0\r\n\r\n")
                assert resp.raw.count(b"Transfer-Encoding") == 1, "no second Transfer-Encoding header"
        sids = {m[0] for m in node.seen if m[1] == b'uwsgi'}
        assert len(sids) == 1, "keep-alive requests share one sid"


def test_ping_pong_readme_snippet(make_gateway):
    """Pings have an empty sid and body; a node that answers them stays alive past ping-timeout."""
    gw = make_gateway(vhosts={"localhost": ["foobar1"]}, options={"ping-freq": "0.5", "ping-timeout": "2"})

    def on_message(node, socket, sid, msg_type, msg_body):
        if readme_pong(node, socket, sid, msg_type, msg_body):
            return
        if msg_type == b'uwsgi':
            socket.send_multipart([sid, b'headers', b'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong'])

    with ReadmeNode(gw.endpoint, b'foobar1', on_message) as node:
        node.wait_ready()
        time.sleep(3.0)  # longer than ping-timeout: only the pongs keep the node alive
        res = curl_fetch(gw.port, "/")
        assert res.status == 200 and res.body == b"pong"
        assert len(node.pings) >= 3, f"expected a ping every 0.5 s, got {len(node.pings)} in ~3 s"
        assert all(sid == b"" and body == b"" for sid, body, _ in node.pings)
        gaps = [b[2] - a[2] for a, b in zip(node.pings, node.pings[1:])]
        assert max(gaps) < 1.5, f"pings too irregular: {gaps!r}"


def test_retry_goes_to_the_other_node_with_body(make_gateway, make_backend):
    """One node answers every request with `retry`; the other node gets the same uwsgi and the body."""
    gw = make_gateway(vhosts={"localhost": ["NODE1", "NODE2"]})

    def refuse(req: Request, send):
        send(req.sid, b'retry', b'')

    def answer(req: Request, send):
        respond(send, req.sid, b'NODE2 got ' + bytes(req.body))

    h1, h2 = HTTPHandler(refuse), HTTPHandler(answer)
    make_backend(gw, "NODE1", h1)
    make_backend(gw, "NODE2", h2)
    for i in range(6):
        payload = b'payload %d' % i
        with RawConn(gw.port) as c:
            c.send(request_bytes("POST", f"/r{i}", "localhost", [("Content-Length", str(len(payload)))], payload))
            resp = c.read_response()
        assert resp.status == 200, resp.raw
        assert resp.body == b'NODE2 got ' + payload
    assert h1.requests, "NODE1 never got a request, so retry was not exercised"
    by_sid = {r.sid: r for r in h2.requests}
    for refused in h1.requests:
        assert refused.sid in by_sid, "the retried request must keep its sid"
        again = by_sid[refused.sid]
        assert again.packet == refused.packet, "the retried uwsgi must be the same packet"
        assert again.body == refused.body and again.end_marker, "the buffered body must be replayed"


def original_readme_decoder(msg):
    """The original README's decoder, the way backends written for it decode (the subject of the test below:
    it stops at the size field, which this gateway writes as the pairs' length, not 4 + that)."""
    (ulen, ) = struct.unpack('<H', msg[1:3])
    pos = 4
    env = {}
    while pos < ulen:
        (klen,) = struct.unpack('<H', msg[pos:pos+2])
        k = msg[pos+2:pos+2+klen]
        pos += 2+klen
        (vlen,) = struct.unpack('<H', msg[pos:pos+2])
        v = msg[pos+2:pos+2+vlen]
        pos += 2+vlen
        env[k] = v
    return env


@pytest.mark.parametrize("decoder", ["sdk", "protocol-doc", "original-readme"])
def test_uwsgi_to_dict_decodes_every_variable(make_gateway, make_backend, decoder):
    """The SDK's decoder, the one docs/PROTOCOL.md gives, and the original README's read every variable of the
    contract from a real packet."""
    uwsgi_to_dict = {"sdk": sdk_uwsgi_to_dict, "protocol-doc": protocol_doc_decoder(),
                     "original-readme": original_readme_decoder}[decoder]
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    handler = HTTPHandler(lambda req, send: respond(send, req.sid, b"ok"))
    backend = make_backend(gw, "NODE1", handler)
    target = "/a%20b/%C3%A9t%C3%A9?x=1&y=%20z"
    with RawConn(gw.port) as c:
        c.send(request_bytes("POST", target, f"localhost:{gw.port}", [
            ("Content-Type", "text/plain"),
            ("Content-Length", "3"),
            ("X-Dup", "one"),
            ("User-Agent", "seed-test/1.0"),
            ("X-Dup", "two"),
            ("X_Under", "dropped"),
        ], b"abc"))
        resp = c.read_response()
        client_port = c.local_port
    assert resp.status == 200
    packet = backend.messages(b"uwsgi")[0].body
    env = uwsgi_to_dict(packet)
    expected = {
        b'REQUEST_METHOD': b'POST',
        b'SCRIPT_NAME': b'',
        b'PATH_INFO': '/a b/été'.encode(),
        b'QUERY_STRING': b'x=1&y=%20z',
        b'REQUEST_URI': target.encode(),
        b'SERVER_NAME': b'localhost',
        b'SERVER_PORT': str(gw.port).encode(),
        b'SERVER_PROTOCOL': b'HTTP/1.1',
        b'REMOTE_ADDR': b'127.0.0.1',
        b'REMOTE_PORT': str(client_port).encode(),
        b'UWSGI_SCHEME': b'http',
        b'CONTENT_TYPE': b'text/plain',
        b'CONTENT_LENGTH': b'3',
        b'HTTP_HOST': f'localhost:{gw.port}'.encode(),
        b'HTTP_USER_AGENT': b'seed-test/1.0',
        b'HTTP_X_DUP': b'one, two',
    }
    for key, value in expected.items():
        assert key in env, f"{key!r} missing from env {env!r}"
        assert env[key] == value, f"{key!r}: {env[key]!r} != {value!r}"
    for absent in (b'HTTP_CONTENT_TYPE', b'HTTP_CONTENT_LENGTH', b'HTTP_X_UNDER'):
        assert absent not in env, f"{absent!r} must not be in the env"
    # The packet itself is a standard uwsgi packet without duplicate keys.
    pairs = uwsgi_pairs(packet)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in the packet: {keys!r}"
    assert dict(pairs) == env
    assert len(backend.messages(b"uwsgi")[0].sid) == 16


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_uwsgi_env_without_body_has_no_content_vars(make_gateway, make_backend, method):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    backend = make_backend(gw, "NODE1", HTTPHandler(lambda req, send: respond(send, req.sid, b"ok")))
    with RawConn(gw.port) as c:
        c.send(request_bytes(method, "/plain", "localhost"))
        assert c.read_response().status == 200
    env = uwsgi_to_dict(backend.messages(b"uwsgi")[0].body)
    assert env[b'REQUEST_METHOD'] == method.encode()
    assert env[b'PATH_INFO'] == b'/plain' and env[b'QUERY_STRING'] == b''
    assert env[b'SERVER_PORT'] == str(gw.port).encode()
    assert b'CONTENT_LENGTH' not in env and b'CONTENT_TYPE' not in env
    assert not backend.messages(b"body"), "a request without body gets no body messages"
