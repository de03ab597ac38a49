"""Flow control towards a node: request bodies wait in the client's TCP window, not in the gateway's
memory, when a node reads slower than clients upload (`max-node-queue`)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time

from helpers import STALLED_NODE_OPTIONS, request_bytes, rss_bytes, start_stalling_digest_node


def test_upload_to_a_stalled_node_waits_instead_of_filling_memory(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["SLOW"]}, options=STALLED_NODE_OPTIONS)
    start_stalling_digest_node(make_backend, gw, "SLOW", stall_seconds=3.0)
    size = 48 * 1024 * 1024
    payload = os.urandom(size)
    result: dict = {}

    def upload():
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(request_bytes("POST", "/upload", "localhost", [("Content-Length", str(size))], b""))
            s.sendall(payload)
            data = b""
            while True:  # until the head and Content-Length bytes of body are in
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if length and len(body) >= int(length.group(1)):
                        break
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            result["response"] = data

    before = rss_bytes(gw.pid)
    client = threading.Thread(target=upload, daemon=True)
    client.start()
    time.sleep(2.0)  # well inside the stall: without flow control the gateway would hold ~40 MiB by now
    during = rss_bytes(gw.pid)
    client.join(30)
    assert not client.is_alive(), "upload did not finish after the node caught up"
    head, _, body = result["response"].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"%d %s" % (size, hashlib.sha256(payload).hexdigest().encode())
    growth = during - before
    assert growth < 16 * 1024 * 1024, f"gateway RSS grew {growth >> 20} MiB while the node was stalled"


def test_websocket_messages_to_a_stalled_node_wait_in_the_client(make_gateway, make_backend):
    """WebSocket messages are client data too: a stalled node stops the gateway reading the client."""
    from websockets.sync.client import connect

    gw = make_gateway(vhosts={"localhost": {"nodes": ["SLOW"], "default": True}},
                      options={"max-node-queue": "1m", "ping-freq": "1", "ping-timeout": "10"})
    stall = threading.Event()
    stall.set()
    received: list[bytes] = []

    def handler(sid, mtype, body, send):
        if mtype == b"websocket-binary":
            if stall.is_set():
                stall.clear()
                time.sleep(3.0)  # nothing is read meanwhile; libzmq keeps at most RCVHWM messages
            received.append(body)

    make_backend(gw, "SLOW", handler, rcvhwm=4)
    messages = [os.urandom(256 * 1024) for _ in range(160)]  # 40 MiB
    done = threading.Event()

    def client():
        with connect(f"ws://127.0.0.1:{gw.port}/", open_timeout=5, close_timeout=5, ping_interval=None,
                     proxy=None, compression=None, max_size=1 << 20) as ws:
            for message in messages:
                ws.send(message)
            done.set()
            deadline = time.monotonic() + 20
            while len(received) < len(messages) and time.monotonic() < deadline:
                time.sleep(0.05)

    before = rss_bytes(gw.pid)
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(2.0)  # inside the stall
    during = rss_bytes(gw.pid)
    thread.join(30)
    assert done.is_set(), "the client could not send everything after the node caught up"
    assert len(received) == len(messages) and all(a == b for a, b in zip(received, messages))
    growth = during - before
    assert growth < 16 * 1024 * 1024, f"gateway RSS grew {growth >> 20} MiB while the node was stalled"
