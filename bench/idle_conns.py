#!/usr/bin/env python3
"""Memory cost of idle keep-alive connections (Python 3 standard library only).

Opens COUNT TCP connections to 127.0.0.1:PORT, sends one small GET on each and reads the whole
response (so each is a real keep-alive connection the server has already served), then leaves them
idle and reads VmRSS of the given server process(es) from /proc/PID/status before and after.
Prints one JSON object on stdout:

    {"count": ..., "opened": ..., "alive": ..., "rss_before": bytes, "rss_after": bytes,
     "hwm_after": bytes, "bytes_per_conn": ..., "open_seconds": ..., "errors": {...}}

Bounded: at most --timeout seconds in total, at most --batch connections in flight at once;
every socket is closed before it exits. Only loopback addresses are accepted.

    idle_conns.py --port 8080 --pid 1234 [--pid 1235] [--count 10000]
"""
import argparse
import errno
import ipaddress
import json
import resource
import selectors
import socket
import sys
import time


def proc_kib(pid, field):
    """A 'VmXXX:  N kB' line of /proc/PID/status, in bytes (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def total(pids, field):
    values = [proc_kib(p, field) for p in pids]
    if any(v is None for v in values):
        return None
    return sum(values)


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


class Conn:
    __slots__ = ("sock", "state", "out", "buf", "need")

    def __init__(self, sock, request):
        self.sock = sock
        self.state = "connecting"
        self.out = request
        self.buf = b""
        self.need = None


def response_complete(conn):
    """True once a whole Content-Length response is in conn.buf; raises on a non-keep-alive answer."""
    if conn.need is None:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = conn.buf[:end].decode("latin-1").lower()
        status = head.split("\r\n", 1)[0]
        if " 200 " not in status + " ":
            raise ValueError("status " + status.strip())
        length = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value == "close":
                raise ValueError("server answered Connection: close")
        if length is None:
            raise ValueError("no Content-Length")
        conn.need = end + 4 + length
    return len(conn.buf) >= conn.need


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True, help="server process (repeatable)")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=256, help="connections being opened at once")
    ap.add_argument("--path", default="/")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds idle before the second reading")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        sys.exit("idle_conns.py: only loopback addresses are allowed")

    deadline = time.monotonic() + args.timeout
    limit = raise_nofile(args.count + 64)
    count = min(args.count, limit - 64)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: idle_conns\r\n\r\n").encode()

    time.sleep(0.2)
    rss_before = total(args.pid, "VmRSS")
    if rss_before is None:
        sys.exit("idle_conns.py: server process not found")

    sel = selectors.DefaultSelector()
    done, errors = [], {}
    in_flight = 0
    started = 0
    t0 = time.monotonic()

    def fail(conn, why):
        nonlocal in_flight
        errors[why] = errors.get(why, 0) + 1
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        in_flight -= 1

    try:
        while (started < count or in_flight) and time.monotonic() < deadline:
            while started < count and in_flight < args.batch:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                started += 1
                rc = s.connect_ex((args.host, args.port))
                if rc not in (0, errno.EINPROGRESS):
                    errors[errno.errorcode.get(rc, str(rc))] = errors.get(errno.errorcode.get(rc, str(rc)), 0) + 1
                    s.close()
                    continue
                c = Conn(s, request)
                sel.register(s, selectors.EVENT_WRITE, c)
                in_flight += 1
            for key, mask in sel.select(timeout=0.5):
                c = key.data
                try:
                    if c.state == "connecting":
                        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            fail(c, errno.errorcode.get(err, str(err)))
                            continue
                        c.state = "sending"
                    if c.state == "sending":
                        n = c.sock.send(c.out)
                        c.out = c.out[n:]
                        if not c.out:
                            c.state = "reading"
                            sel.modify(c.sock, selectors.EVENT_READ, c)
                        continue
                    data = c.sock.recv(65536)
                    if not data:
                        fail(c, "closed by server")
                        continue
                    c.buf += data
                    if response_complete(c):
                        sel.unregister(c.sock)
                        c.buf = b""
                        done.append(c.sock)
                        in_flight -= 1
                except (BlockingIOError, InterruptedError):
                    pass
                except (OSError, ValueError) as e:
                    fail(c, str(e)[:80])
        timed_out = started < count or in_flight > 0
        open_seconds = time.monotonic() - t0
        # leave them idle, then look again; count the ones the server has not closed
        time.sleep(max(0.0, min(args.settle, deadline - time.monotonic())))
        rss_after = total(args.pid, "VmRSS")
        hwm_after = total(args.pid, "VmHWM")
        alive = 0
        probe = selectors.DefaultSelector()
        for s in done:
            probe.register(s, selectors.EVENT_READ)
        readable = {key.fileobj for key, _ in probe.select(timeout=0)}
        probe.close()
        for s in done:
            if s in readable:
                try:
                    if s.recv(1, socket.MSG_PEEK) == b"":
                        continue
                except OSError:
                    continue
            alive += 1
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()
        for s in done:
            s.close()

    result = {
        "count": args.count, "opened": len(done), "alive": alive, "timed_out": timed_out,
        "rss_before": rss_before, "rss_after": rss_after, "hwm_after": hwm_after,
        "bytes_per_conn": (rss_after - rss_before) / alive if (alive and rss_after is not None) else None,
        "open_seconds": round(open_seconds, 3), "errors": errors,
    }
    print(json.dumps(result))
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
