#!/usr/bin/env python3
"""How evenly two worker processes share new connections (issue #18, README "Worker processes"): one listening
socket inherited by both (what the gateway does: each worker's libev loop waits on it with level-triggered
epoll) against one SO_REUSEPORT socket per worker (the kernel hashes each connection to one of them).

Each worker accepts in a loop like the gateway's (epoll, then accept until EAGAIN), answers one line and closes,
and counts what it accepted. Clients: CONCURRENCY threads opening connections as fast as they can for SECONDS.
Prints the share of the busier worker per mode (0.50 is a perfect split).

    python3 bench/listener_spread.py [SECONDS] [CONCURRENCY]
"""
import os
import select
import socket
import sys
import threading
import time


def worker(sock, counts_w):
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN)
    sock.setblocking(False)
    accepted = 0
    deadline = time.monotonic() + SECONDS + 2
    while time.monotonic() < deadline:
        for _ in ep.poll(0.1):
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                accepted += 1
                try:
                    conn.send(b"ok\n")
                except OSError:
                    pass
                conn.close()
    os.write(counts_w, b"%d\n" % accepted)
    os._exit(0)


def listener(port, reuseport):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    return s


def clients(port):
    stop = time.monotonic() + SECONDS

    def run():
        while time.monotonic() < stop:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.recv(8)
            except OSError:
                pass

    threads = [threading.Thread(target=run) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(reuseport):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    shared = None if reuseport else listener(port, False)
    r, w = os.pipe()
    pids = []
    for _ in range(2):
        sock = listener(port, True) if reuseport else shared
        pid = os.fork()
        if pid == 0:
            worker(sock, w)
        pids.append(pid)
        if reuseport:
            sock.close()
    if shared:
        shared.close()
    time.sleep(0.3)
    clients(port)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(w)
    counts = [int(x) for x in os.read(r, 100).split()]
    return counts


SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5
CONCURRENCY = int(sys.argv[2]) if len(sys.argv) > 2 else 8
if __name__ == "__main__":
    for mode, reuseport in (("shared listener (the gateway's)", False), ("SO_REUSEPORT per worker", True)):
        counts = measure(reuseport)
        print(f"{mode}: {counts} accepted, busier worker {max(counts) / max(1, sum(counts)):.2f}")
