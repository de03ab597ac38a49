"""Flow control towards a node: request bodies wait in the client's TCP window, not in the gateway's
memory, when a node reads slower than clients upload (`max-node-queue`)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

from helpers import HTTPHandler, Request, request_bytes, respond


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_upload_to_a_stalled_node_waits_instead_of_filling_memory(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["SLOW"]},
                      options={"max-node-queue": "1m", "max-body-size": "64m", "backend-timeout": "30",
                               "body-timeout": "30", "ping-freq": "1", "ping-timeout": "10"})
    stall = threading.Event()
    stall.set()

    def app(req: Request, send):
        respond(send, req.sid, b"%d %s" % (len(req.body), hashlib.sha256(req.body).hexdigest().encode()))

    handler = HTTPHandler(app)

    def stalling(sid, mtype, body, send):
        if mtype == b"body" and stall.is_set():
            stall.clear()
            time.sleep(3.0)  # the backend thread reads nothing: libzmq keeps at most RCVHWM messages
        handler(sid, mtype, body, send)

    make_backend(gw, "SLOW", stalling, rcvhwm=4)
    size = 48 * 1024 * 1024
    payload = os.urandom(size)
    result: dict = {}

    def upload():
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(request_bytes("POST", "/upload", "localhost", [("Content-Length", str(size))], b""))
            s.sendall(payload)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"\n") and len(data) < 200:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and len(data.split(b"\r\n\r\n", 1)[1]) >= 70:
                    break
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
