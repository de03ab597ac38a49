#!/usr/bin/env python3
"""BlastBeat side-by-side benchmark (`make bench`; Python 3 standard library only).

Starts each system on 127.0.0.1 with generated configs in a temporary directory, loads it with wrk,
and prints a table of requests/s, p50/p99 latency, the gateway's CPU seconds and peak RSS, plus the
ratios BlastBeat / peer from the same run. See bench/README.md.

    python3 bench/run.py [--quick] [--rounds 3] [--duration 5] [--systems a,b] [--scenarios x,y]
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PEERS = os.path.join(BENCH, "peers")
BIN = os.path.join(BENCH, "bin")
RESULTS = os.path.join(BENCH, "results")
HOST = "127.0.0.1"
HELLO = b"Hello, World!"
UPLOAD_SIZE = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name -> (title, wrk connections, path, extra wrk args builder)
SCENARIOS = {
    "keepalive": "GET /, keep-alive, 50 connections",
    "close": "GET /, Connection: close, 50 connections",
    "64k": "GET /64k (64 KiB response), keep-alive, 50 connections",
    "upload": "POST / with a 1 MiB body, keep-alive, 50 connections",
    "c1000": "GET /, keep-alive, 1,000 connections",
    "tls-keepalive": "HTTPS GET /, keep-alive, 50 connections (wrk over TLS)",
    "tls-handshake": "HTTPS GET / on a new connection each time: full TLS handshakes/s, 50 connections "
                     "(bench/peers/tls_load.c)",
    "h2": "HTTPS GET / over HTTP/2 (ALPN h2): h2load -c50 -m10, 50 connections with 10 streams each",
}
# Scenarios that run only when named with --scenarios (not in the default list).
OPTIONAL_SCENARIOS = {
    "wsecho": "WebSocket echo: 100 connections, 1 message of 32 bytes in flight on each (bench/peers/ws_load.c)",
    "many-tenants": "GET /, keep-alive, 50 connections, to the last of 10,000 vhosts, with 3,000 backend "
                    "connections of other tenants open (bench/zmtp_swarm.py); BlastBeat only",
}
# many-tenants: vhosts in the configuration before the measured one, and idle backend connections of theirs.
MANY_VHOSTS, MANY_BACKENDS = 10_000, 3_000
MANY_NA = "BlastBeat only: the scenario measures the gateway's Host and identity lookups with many tenants"
# wsecho load: ws_load -c WS_CONNS -k WS_INFLIGHT -s WS_SIZE (text messages, masked)
WS_CONNS, WS_INFLIGHT, WS_SIZE = 100, 1, 32
WS_SCENARIOS = {"wsecho"}
# TLS scenarios: the system listens with TLS only, on the certificate generated for this run
# (ECDSA P-256, self-signed, CN/SAN localhost). tls-keepalive loads it with wrk over https;
# tls-handshake with bench/bin/tls_load, which never resumes a session (see bench/README.md).
TLS_SCENARIOS = {"tls-keepalive", "tls-handshake", "h2"}
# HTTP/2 scenarios: TLS as above, loaded with nghttp2's h2load; nginx's listener gets `http2`.
H2_SCENARIOS = {"h2"}
H2_CONNS, H2_STREAMS = 50, 10
TLS_NAME = "localhost"  # the certificate's name, the SNI and Host that tls_load and the checks send
# nginx gets BlastBeat's TLS policy (Sources/BlastBeatSystem/TLSServerContext.swift): TLS 1.2/1.3,
# the same TLS 1.2 cipher list and TLS 1.3 suites in the same order, server preference, no session
# cache, session tickets on. Inserted after the TLS server's `listen` line.
NGINX_TLS_DIRECTIVES = """
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_prefer_server_ciphers on;
        ssl_session_cache off;
        ssl_session_tickets on;"""
TLS_NA = "TLS setup for {} is out of scope for this suite: only BlastBeat and nginx get a TLS listener"
SYSTEMS = ["blastbeat", "mongrel2", "condure", "nginx-proxy", "nginx-direct"]
# Systems that run only when named with --systems: the gateway with libzmq speaking ZMTP (zmq-engine = libzmq),
# to see what the native engine gains in the same run.
# blastbeat-admin: the admin listener on and /metrics scraped every second (issue #16: at most 2% lost).
# blastbeat-2w, nginx-proxy-2w: two worker processes each (issue #18, README "Worker processes"), beside the
# one-worker systems in the same run.
OPTIONAL_SYSTEMS = ["blastbeat-libzmq", "blastbeat-curve", "blastbeat-libzmq-curve", "blastbeat-admin", "blastbeat-limits",
                    "blastbeat-2w", "nginx-proxy-2w"]
ALL_SYSTEMS = SYSTEMS + OPTIONAL_SYSTEMS
LABELS = {
    "blastbeat": "BlastBeat",
    "blastbeat-libzmq": "BlastBeat (libzmq)",
    "blastbeat-curve": "BlastBeat (CURVE)",
    "blastbeat-libzmq-curve": "BlastBeat (libzmq, CURVE)",
    "blastbeat-admin": "BlastBeat (admin, scraped 1/s)",
    "blastbeat-limits": "BlastBeat (limits)",
    "blastbeat-2w": "BlastBeat (2 workers)",
    "nginx-proxy-2w": "nginx proxy (2 workers)",
    "mongrel2": "Mongrel2",
    "condure": "Condure",
    "nginx-proxy": "nginx proxy",
    "nginx-direct": "nginx direct",
}
PEER_ORDER = [s for s in ALL_SYSTEMS if s != "blastbeat"]


class BenchError(Exception):
    pass


class Stop(Exception):
    """SIGTERM/SIGHUP: unwind through the finally blocks like Ctrl-C does."""


def on_signal(signum, frame):
    raise Stop(f"signal {signum}")


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# processes

def set_subreaper():
    """Become the parent of orphaned descendants (mongrel2 daemonizes) so they can be reaped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def raise_nofile(want=65536):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root: hard limit too
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)  # ours (subreaper): reap it
        except ChildProcessError:
            pass
        return False
    return True


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def status_bytes(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Procs:
    """Every process this run starts, so that all of them are stopped in a finally block."""

    def __init__(self):
        self.popens = []   # (name, Popen)
        self.daemons = []  # (name, pid) of processes that detached themselves

    def spawn(self, name, argv, logfile, cwd=None, env=None):
        """Start a child in its own session; its working directory (by default the directory of its
        log, inside this run's temp dir) is what marks it, and its descendants, as ours."""
        cwd = cwd or os.path.dirname(logfile)
        out = open(logfile, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=cwd, env=env, start_new_session=True, close_fds=True)
        finally:
            out.close()
        self.popens.append((name, p))
        return p

    def adopt(self, name, pid):
        self.daemons.append((name, pid))

    @staticmethod
    def _signal_group(pid, sig):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop_all(self):
        """SIGTERM everything, a second SIGTERM after 3 s, SIGKILL after 5 s; newest first."""
        popens, daemons = self.popens[::-1], self.daemons[::-1]
        self.popens, self.daemons = [], []
        for _, p in popens:
            if p.poll() is None:
                self._signal_group(p.pid, signal.SIGTERM)
        for _, pid in daemons:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        t0 = time.monotonic()
        second = False
        while True:
            live_p = [(n, p) for n, p in popens if p.poll() is None]
            live_d = [(n, pid) for n, pid in daemons if pid_alive(pid)]
            if not live_p and not live_d:
                break
            elapsed = time.monotonic() - t0
            if elapsed > 3 and not second:
                second = True
                for _, p in live_p:
                    self._signal_group(p.pid, signal.SIGTERM)
                for _, pid in live_d:
                    os.kill(pid, signal.SIGTERM)
            if elapsed > 5:
                for n, p in live_p:
                    log(f"    killing {n} (pid {p.pid}) with SIGKILL")
                    self._signal_group(p.pid, signal.SIGKILL)
                for n, pid in live_d:
                    log(f"    killing {n} (pid {pid}) with SIGKILL")
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                for _, p in live_p:
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                deadline = time.monotonic() + 5
                while any(pid_alive(pid) for _, pid in live_d) and time.monotonic() < deadline:
                    time.sleep(0.05)
                break
            time.sleep(0.05)


def run_cmd(argv, timeout, cwd=None):
    """A short helper command, bounded in time; returns (returncode, output)."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=cwd, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return -1, f"timed out after {timeout}s: {(e.output or b'').decode(errors='replace')}"
    except OSError as e:
        return -1, str(e)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join("      | " + line for line in lines[-n:])
    except OSError:
        return "      | (no log)"


# --------------------------------------------------------------------------------------------
# a tiny HTTP client for readiness and for checking each scenario before loading it

def http_request(port, method="GET", path="/", body=b"", timeout=3.0, tls=None):
    """One request on a fresh connection; returns (status, body). Content-Length responses only.
    tls: an ssl.SSLContext (opts.tls["context"], see make_certificate) to speak HTTPS, checking
    that the server presents the run's certificate for TLS_NAME."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw, \
            (tls.wrap_socket(raw, server_hostname=TLS_NAME) if tls else raw) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if body:
            head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        buf = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", buf[:end])
                if m and len(buf) >= end + 4 + int(m.group(1)):
                    break
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise BenchError(f"incomplete response ({len(buf)} bytes)")
    status = int(buf.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", buf[:end])
    payload = buf[end + 4:]
    if m:
        payload = payload[:int(m.group(1))]
    return status, payload


def wait_ready(port, procs_to_watch, timeout=15.0, tls=None):
    """Poll GET / until it answers 200 "Hello, World!"; fail early if a watched process exits.
    tls: an ssl.SSLContext for a TLS listener (see http_request)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for name, p in procs_to_watch:
            if p.poll() is not None:
                raise BenchError(f"{name} exited with status {p.returncode} during startup")
        try:
            status, payload = http_request(port, timeout=1.0, tls=tls)
            if status == 200 and payload == HELLO:
                return
            last = f"status {status}, body {payload[:40]!r}"
        except (OSError, BenchError, ValueError, IndexError) as e:
            last = str(e)
        time.sleep(0.1)
    raise BenchError(f"not ready after {timeout:.0f}s ({last})")


def check_scenario(port, scenario, opts=None):
    """The request the scenario sends must get the right answer before wrk counts anything."""
    if scenario in TLS_SCENARIOS:
        # over TLS, verifying that the server presents this run's certificate for TLS_NAME
        status, payload = http_request(port, tls=opts.tls["context"])
        if status != 200 or payload != HELLO:
            raise BenchError(f"HTTPS GET / answered {status} {payload[:40]!r}")
        return
    if scenario in WS_SCENARIOS:
        # one connection: upgrade (101 + the right Sec-WebSocket-Accept), then echoed messages
        out = run_load_client(ws_load_argv(port, 0.3, conns=1), 0.3, None)
        r = parse_ws_load(out)
        if not r["requests"] or r["ws"]["errors"]:
            raise BenchError(f"WebSocket echo check failed: {out.strip().splitlines()[-1][:300]}")
        return
    if scenario == "64k":
        status, payload = http_request(port, path="/64k")
        if status != 200 or len(payload) != 65536:
            raise BenchError(f"GET /64k answered {status} with {len(payload)} bytes, expected 65536")
    elif scenario == "upload":
        status, payload = http_request(port, method="POST", body=b"x" * UPLOAD_SIZE, timeout=10)
        if status != 200:
            raise BenchError(f"POST of 1 MiB answered {status}")
    else:
        status, payload = http_request(port)
        if status != 200 or payload != HELLO:
            raise BenchError(f"GET / answered {status} {payload[:40]!r}")


# --------------------------------------------------------------------------------------------
# systems

class System:
    name = ""
    unsupported = {}  # scenario -> reason

    def __init__(self, procs, workdir, opts):
        self.procs, self.dir, self.opts = procs, workdir, opts
        self.port = None
        self.watch = []  # (name, Popen) that must stay up
        self.ws = False  # True: start the WebSocket echo backend instead of the hello backend
        self.tls = False  # True: the client-facing listener speaks TLS only (opts.tls: certificate, key)
        self.h2 = False  # True: the TLS listener offers HTTP/2 (BlastBeat always does; nginx needs `http2`)
        self.many_tenants = False  # True: the many-tenants scenario's configuration and backend crowd

    def client_tls(self):
        """The ssl.SSLContext for readiness checks of the client-facing listener, or None (plain)."""
        return self.opts.tls["context"] if self.tls else None

    def start(self):
        raise NotImplementedError

    def gateway_pids(self):
        raise NotImplementedError

    def backend_pids(self):
        return [p.pid for n, p in self.watch if n.endswith("backend")]

    def logfile(self, what):
        return os.path.join(self.dir, f"{what}.log")

    def logs(self):
        return [os.path.join(self.dir, f) for f in sorted(os.listdir(self.dir)) if f.endswith(".log")]


def blastbeat_bin():
    return os.environ.get("BLASTBEAT_BIN") or os.path.join(ROOT, ".build", "release", "blastbeat")


class BlastBeat(System):
    name = "blastbeat"
    engine = "native"
    curve = False
    admin = False  # True: an admin listener, scraped every second while the system runs (SCRAPER)
    vhost_limits = ""  # keys added to the measured vhost's section
    workers = 1

    def keygen(self, binary, name):
        """`blastbeat keygen` in the run's directory; returns the file stem and both Z85 keys."""
        stem = os.path.join(self.dir, name + ".key")
        for leftover in (stem, stem + "_secret"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        subprocess.run([binary, "keygen", os.path.join(self.dir, name)], check=True, capture_output=True, timeout=30)
        keys = {"file": stem}
        with open(stem + "_secret") as f:
            for line in f:
                name_value = line.strip().split("=", 1)
                if len(name_value) == 2 and name_value[0].strip() in ("public-key", "secret-key"):
                    keys[name_value[0].strip().split("-")[0]] = name_value[1].strip().strip('"')
        return keys

    def start(self):
        binary = blastbeat_bin()
        if not os.access(binary, os.X_OK):
            raise BenchError(f"no gateway binary at {binary} (run `make release` or set BLASTBEAT_BIN)")
        self.port, zport = free_port(), free_port()
        conf = os.path.join(self.dir, "blastbeat.ini")
        if self.tls:  # TLS only, with the run's certificate as the default one
            listen = (f"bind-ssl = {HOST}:{self.port}\ncertificate = {self.opts.tls['cert']}\n"
                      f"key = {self.opts.tls['key']}")
        else:
            listen = f"bind = {HOST}:{self.port}"
        curve_main, curve_vhost, backend_env = "", "", None
        if self.curve:
            gateway_keys, node_keys = self.keygen(binary, "gateway"), self.keygen(binary, "node")
            curve_main = f"curve-key = {gateway_keys['file']}_secret\n"
            curve_vhost = f"node-key = BENCH1 {node_keys['public']}\n"
            backend_env = dict(os.environ, BLASTBEAT_CURVE_SECRET=node_keys["secret"],
                               BLASTBEAT_CURVE_PUBLIC=node_keys["public"], BLASTBEAT_CURVE_SERVER=gateway_keys["public"])
        # many-tenants: 10,000 other vhosts first (each with its node), the measured one last and matched by
        # name (not as the default), so the Host lookup is what is measured.
        admin_line = ""
        if self.admin:
            self.admin_port = free_port()
            admin_line = f"admin = {HOST}:{self.admin_port}\n"
        tenants, measured = "", "default = true\n"
        if self.many_tenants:
            tenants = "".join(f"[blastbeat:tenant{i}.example]\nnode = tenant{i}\n" for i in range(MANY_VHOSTS))
            measured = ""
        with open(conf, "w") as f:
            f.write(f"""; generated by bench/run.py
[blastbeat]
{listen}
zmq = tcp://{HOST}:{zport}
zmq-engine = {self.engine}
workers = {self.workers}
access-log = off
log-level = warning
; room for the 10,000 idle connections of the memory test (default 10000)
max-connections = 20000
{admin_line}{curve_main}
{tenants}
[blastbeat:localhost]
node = BENCH1
{measured}{curve_vhost}{self.vhost_limits}""")
        gw = self.procs.spawn("blastbeat", [binary, conf], self.logfile("blastbeat"))
        self.gw = gw
        self.watch = [("blastbeat", gw)]
        backend = self.procs.spawn("blastbeat backend",
                                   [os.path.join(BIN, "blastbeat_ws_echo" if self.ws else "blastbeat_backend"),
                                    f"tcp://{HOST}:{zport}", "BENCH1"],
                                   self.logfile("backend"), env=backend_env)
        self.watch.append(("blastbeat backend", backend))
        wait_ready(self.port, self.watch, tls=self.client_tls())
        if self.admin:
            scraper = self.procs.spawn("metrics scraper", [sys.executable, "-c", SCRAPER, str(self.admin_port)],
                                       self.logfile("scraper"))
            self.watch.append(("metrics scraper", scraper))
        if self.many_tenants:
            swarm_log = self.logfile("swarm")
            swarm = self.procs.spawn("zmtp swarm", [sys.executable, os.path.join(BENCH, "zmtp_swarm.py"),
                                                    "--port", str(zport), "--count", str(MANY_BACKENDS)], swarm_log)
            self.watch.append(("zmtp swarm", swarm))
            deadline = time.monotonic() + 90
            while "ready" not in open(swarm_log).read():
                if swarm.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the backend crowd did not connect: {tail(swarm_log)}")
                time.sleep(0.2)

    def gateway_pids(self):
        # Started as root the gateway is two processes: the privileged parent and the serving child (README,
        # "Reload"); counted together, as nginx's master and workers are.
        return [self.gw.pid] + children_of(self.gw.pid)


class Mongrel2(System):
    name = "mongrel2"
    unsupported = {sc: TLS_NA.format("Mongrel2") for sc in sorted(TLS_SCENARIOS)}

    def start(self):
        self.port, send_port, recv_port = free_port(), free_port(), free_port()
        for sub in ("logs", "run", "tmp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        # The access log cannot be switched off: make it a /dev/null device inside the chroot.
        access = os.path.join(self.dir, "logs", "access.log")
        try:
            os.mknod(access, 0o666 | 0o020000, os.makedev(1, 3))
            self.access_note = "access log → /dev/null (device node in the chroot)"
        except OSError:
            self.access_note = "access log written to a file (mknod not permitted)"
        server_uuid = str(uuid.uuid4())
        conf = os.path.join(self.dir, "mongrel2.conf")
        with open(conf, "w") as f:
            f.write(f"""# generated by bench/run.py
hello = Handler(send_spec='tcp://{HOST}:{send_port}',
                send_ident='{uuid.uuid4()}',
                recv_spec='tcp://{HOST}:{recv_port}', recv_ident='')
main = Server(
    uuid="{server_uuid}",
    name="bench",
    chroot="./",
    access_log="/logs/access.log",
    error_log="/logs/error.log",
    pid_file="/run/mongrel2.pid",
    default_host="localhost",
    bind_addr="{HOST}",
    port={self.port},
    hosts=[Host(name="localhost", routes={{'/': hello}})]
)
settings = {{"zeromq.threads": 1,
            "limits.content_length": {2 * UPLOAD_SIZE},
            "superpoll.max_fd": 16384}}
servers = [main]
""")
        db = os.path.join(self.dir, "config.sqlite")
        rc, out = run_cmd(["m2sh", "load", "-config", conf, "-db", db], timeout=30, cwd=self.dir)
        if rc != 0:
            raise BenchError(f"m2sh load failed: {out.strip()[-300:]}")
        # Started as root, mongrel2 chroots to the cwd ("./") and switches to the owner of that
        # directory (root here); it then daemonizes and writes /run/mongrel2.pid inside the chroot.
        starter = self.procs.spawn("mongrel2 (starter)", ["mongrel2", db, server_uuid],
                                   self.logfile("mongrel2-start"), cwd=self.dir)
        try:
            starter.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise BenchError("mongrel2 did not daemonize within 15 s")
        pidfile = os.path.join(self.dir, "run", "mongrel2.pid")
        deadline = time.monotonic() + 10
        self.pid = None
        while time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    self.pid = int(f.read().strip())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        if self.pid is None:
            raise BenchError("mongrel2 wrote no pid file\n" + tail(os.path.join(self.dir, "logs", "error.log")))
        self.procs.adopt("mongrel2", self.pid)
        handler = self.procs.spawn("mongrel2 backend",
                                   [os.path.join(BIN, "mongrel2_ws_echo" if self.ws else "mongrel2_handler"),
                                    f"tcp://{HOST}:{send_port}", f"tcp://{HOST}:{recv_port}"],
                                   self.logfile("handler-backend"))
        self.watch = [("mongrel2 backend", handler)]
        wait_ready(self.port, self.watch)
        if not pid_alive(self.pid):
            raise BenchError("mongrel2 exited")

    def gateway_pids(self):
        return [self.pid]

    def logs(self):
        return super().logs() + [os.path.join(self.dir, "logs", "error.log")]


class Condure(System):
    name = "condure"
    unsupported = {
        "64k": "condure_handler.c answers every path with the 13-byte hello",
        "upload": "condure_handler.c grants no credits, so condure never forwards a request body "
                  "(it answers and closes without reading it)",
        **{sc: TLS_NA.format("Condure") for sc in sorted(TLS_SCENARIOS)},
    }

    def start(self):
        self.port = free_port()
        base = f"ipc://{self.dir}/client"
        # --stream-maxconn: room for the 10,000 idle connections of the memory test (default 10000)
        self.cd = self.procs.spawn("condure", ["condure", "--listen", f"{HOST}:{self.port}",
                                               "--zclient-stream", base, "--stream-maxconn", "12000"],
                                   self.logfile("condure"))
        self.watch = [("condure", self.cd)]
        handler = self.procs.spawn("condure backend",
                                   [os.path.join(BIN, "condure_ws_echo" if self.ws else "condure_handler"), base],
                                   self.logfile("handler-backend"))
        self.watch.append(("condure backend", handler))
        wait_ready(self.port, self.watch)

    def gateway_pids(self):
        return [self.cd.pid]


NGINX_COMMON = """# generated by bench/run.py
worker_processes {workers};
worker_rlimit_nofile {nofile};
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    default_type text/plain;
    sendfile on;
    # like the other systems: never close a busy keep-alive connection (default: after 1000 requests)
    keepalive_requests 1000000;
    client_max_body_size 2m;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
{server}
}}
"""

NGINX_ORIGIN = """    server {{
        listen {host}:{port} backlog=4096;
        location = /64k {{ root {dir}/html; }}
        location / {{ return 200 "Hello, World!"; }}
    }}"""

NGINX_PROXY = """    upstream hello {{
        server {host}:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # buffer the 1 MiB upload in memory, never spool a body or a response to disk. (With
            # proxy_request_buffering off the origin's early 200 makes nginx close every client
            # connection after an upload: wrk then counts only read errors.)
            client_body_buffer_size 2m;
            proxy_max_temp_file_size 0;
        }}
    }}"""


class NginxBase(System):
    workers = 1  # worker_processes of the measured nginx (the origin behind the proxy keeps 1)
    unsupported = {
        "wsecho": "no WebSocket echo without a backend: nginx only proxies WebSocket, and this suite has no "
                  "WebSocket origin behind nginx",
    }

    def start_nginx(self, tag, server_block, tls=False):
        """tls: this server listens with TLS only (NGINX_TLS_DIRECTIVES, the run's certificate)."""
        if tls:
            listen = "listen {host}:{port} backlog=4096;"
            if server_block.count(listen) != 1:
                raise BenchError(f"nginx {tag}: no single `{listen}` to turn into a TLS listener")
            directives = NGINX_TLS_DIRECTIVES.format(cert=self.opts.tls["cert"], key=self.opts.tls["key"])
            server_block = server_block.replace(
                listen, ("listen {host}:{port} ssl http2 backlog=4096;" if self.h2 else
                         "listen {host}:{port} ssl backlog=4096;")
                + directives.replace("{", "{{").replace("}", "}}"))
        d = os.path.join(self.dir, tag)
        os.makedirs(os.path.join(d, "html"), exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chmod(d, 0o755)
        big = os.path.join(d, "html", "64k")
        with open(big, "wb") as f:
            f.write(b"x" * 65536)
        os.chmod(big, 0o644)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_COMMON.format(nofile=self.opts.nofile, dir=d, workers=self.workers if tag != "origin" else 1,
                                        server=server_block.format(
                host=HOST, port=self.ports[tag], dir=d, upstream=self.ports.get("origin"))))
        rc, out = run_cmd(["nginx", "-t", "-q", "-c", conf, "-p", d + "/", "-g", "daemon off;"], timeout=20, cwd=d)
        if rc != 0:
            raise BenchError(f"nginx -t ({tag}): {out.strip()[-400:]}")
        p = self.procs.spawn(f"nginx {tag}", ["nginx", "-c", conf, "-p", d + "/", "-g", "daemon off;"],
                             self.logfile(f"nginx-{tag}"))
        self.watch.append((f"nginx {tag}", p))
        return p

    @staticmethod
    def master_and_workers(p):
        return [p.pid] + children_of(p.pid)

    def logs(self):
        return super().logs() + [os.path.join(self.dir, t, "error.log") for t in ("origin", "proxy")
                                 if os.path.exists(os.path.join(self.dir, t, "error.log"))]


class NginxDirect(NginxBase):
    name = "nginx-direct"

    def start(self):
        self.ports = {"origin": free_port()}
        self.origin = self.start_nginx("origin", NGINX_ORIGIN, tls=self.tls)
        self.port = self.ports["origin"]
        wait_ready(self.port, self.watch, tls=self.client_tls())

    def gateway_pids(self):
        return self.master_and_workers(self.origin)


class NginxProxy(NginxBase):
    name = "nginx-proxy"

    def start(self):
        self.ports = {"origin": free_port(), "proxy": free_port()}
        self.origin = self.start_nginx("origin", NGINX_ORIGIN)
        wait_ready(self.ports["origin"], self.watch)
        self.proxy = self.start_nginx("proxy", NGINX_PROXY, tls=self.tls)  # the origin stays plain HTTP
        self.port = self.ports["proxy"]
        wait_ready(self.port, self.watch, tls=self.client_tls())

    def gateway_pids(self):
        return self.master_and_workers(self.proxy)

    def backend_pids(self):
        return self.master_and_workers(self.origin)


# Scrapes http://HOST:PORT/metrics once a second, as a Prometheus server would; a failed scrape ends it (and so
# fails the run: it is watched like the gateway).
SCRAPER = f"""
import sys, time, urllib.request
url = "http://{HOST}:" + sys.argv[1] + "/metrics"
n = 0
while True:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read()
    n += 1
    if n == 1 or n % 10 == 0:
        print(f"scrape {{n}}: {{len(body)}} bytes in {{(time.monotonic() - started) * 1000:.1f}} ms", flush=True)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
"""


class BlastBeatAdmin(BlastBeat):
    name = "blastbeat-admin"
    admin = True


class BlastBeatLibzmq(BlastBeat):
    name = "blastbeat-libzmq"
    engine = "libzmq"


# The keep-alive path with CURVE between gateway and backend (the C backend reads its keys from the
# environment); the WebSocket echo peer has no CURVE.
CURVE_NA = "the WebSocket echo peer does not speak CURVE"


class BlastBeatCurve(BlastBeat):
    name = "blastbeat-curve"
    curve = True
    unsupported = {sc: CURVE_NA for sc in sorted(WS_SCENARIOS)}


class BlastBeatLibzmqCurve(BlastBeatCurve):
    name = "blastbeat-libzmq-curve"
    engine = "libzmq"


# The same gateway with every per-tenant limit configured for the measured vhost but none reached (wrk's 50
# connections all come from 127.0.0.1, so client-rate is far above what they send): what the checks cost.
class BlastBeatLimits(BlastBeat):
    name = "blastbeat-limits"
    vhost_limits = ("client-rate = 1000000\nclient-burst = 1000000\nmax-in-flight = 10000\nmax-connections = 15000\n"
                    "max-body-size = 64m\nbackend-timeout = 30\n")


class BlastBeat2w(BlastBeat):
    name = "blastbeat-2w"
    workers = 2


class NginxProxy2w(NginxProxy):
    name = "nginx-proxy-2w"
    workers = 2


for _cls in (Mongrel2, Condure, NginxDirect, NginxProxy, BlastBeatCurve, BlastBeatLimits, NginxProxy2w):
    _cls.unsupported = {**_cls.unsupported, "many-tenants": MANY_NA}

CLASSES = {"blastbeat": BlastBeat, "blastbeat-libzmq": BlastBeatLibzmq, "blastbeat-curve": BlastBeatCurve,
           "blastbeat-libzmq-curve": BlastBeatLibzmqCurve, "blastbeat-admin": BlastBeatAdmin, "blastbeat-limits": BlastBeatLimits, "mongrel2": Mongrel2, "condure": Condure,
           "nginx-proxy": NginxProxy, "nginx-direct": NginxDirect, "blastbeat-2w": BlastBeat2w,
           "nginx-proxy-2w": NginxProxy2w}


# --------------------------------------------------------------------------------------------
# wrk

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_latency(text, pct):
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(m.group(1)) * UNITS_MS[m.group(2)] if m else None


def parse_wrk(text):
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise BenchError("wrk printed no Requests/sec:\n" + text[-500:])
    r = {"rps": float(m.group(1)),
         "p50_ms": parse_latency(text, 50),
         "p99_ms": parse_latency(text, 99)}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    r["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx"] = int(m.group(1)) if m else 0
    return r


def pinned(argv, opts):
    """The load generator's command, on the CPUs of `--pin-client` (taskset), so that a gateway or nginx with one
    worker and with two share the cores with the client the same way."""
    return ["taskset", "-c", opts.pin_client] + argv if opts.pin_client else argv


def wrk_argv(scenario, port, duration, tmp):
    conns = 1000 if scenario == "c1000" else 50
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "2s"]
    path = "/"
    if scenario == "close":
        argv += ["-H", "Connection: close"]
    elif scenario == "many-tenants":
        argv += ["-H", "Host: localhost"]  # the measured vhost, the last of the file
    elif scenario == "64k":
        path = "/64k"
    elif scenario == "upload":
        script = os.path.join(tmp, "upload.lua")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(f'-- POST a 1 MiB body on every request\nwrk.method = "POST"\n'
                        f'wrk.body = string.rep("x", {UPLOAD_SIZE})\n'
                        f'wrk.headers["Content-Type"] = "application/octet-stream"\n')
        argv += ["-s", script]
    scheme = "https" if scenario == "tls-keepalive" else "http"
    return argv + [f"{scheme}://{HOST}:{port}{path}"]


# --------------------------------------------------------------------------------------------
# TLS: the run's certificate, and tls_load (the tls-handshake scenario)

def make_certificate(tmp):
    """One ECDSA P-256 self-signed certificate for the whole run (CN and SAN TLS_NAME), shared by
    every system. World-readable: BlastBeat drops to nobody after binding, nginx workers run as
    nobody too. Returns opts.tls: cert, key, and an ssl.SSLContext that trusts only this certificate."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d)
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    rc, out = run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={TLS_NAME}",
                       "-addext", f"subjectAltName=DNS:{TLS_NAME}"], timeout=30, cwd=d)
    if rc != 0:
        raise BenchError(f"openssl req (certificate for the TLS scenarios) failed: {out.strip()[-300:]}")
    for path in (cert, key):
        os.chmod(path, 0o644)
    context = ssl.create_default_context(cafile=cert)  # hostname checked against TLS_NAME
    return {"cert": cert, "key": key, "context": context}


TLS_CONNS = 50


def tls_load_argv(port, duration, conns=TLS_CONNS):
    return [os.path.join(BIN, "tls_load"), "-h", HOST, "-p", str(port), "-H", TLS_NAME, "-S", TLS_NAME,
            "-c", str(conns), "-d", str(duration), "-w", "0", "-t", "2", "-q"]


def run_load_client(argv, duration, cwd):
    """Runs tls_load or ws_load. Both bound themselves (connect timeout + duration, then an alarm);
    this timeout is a backstop."""
    rc, out = run_cmd(argv, timeout=duration + 30, cwd=cwd)
    if rc != 0:
        raise BenchError(f"{os.path.basename(argv[0])} exited {rc}: {out.strip()[-300:]}")
    return out


def parse_tls_load(text):
    """The last line of tls_load's output is JSON; map it onto the wrk fields (req/s = full handshakes/s,
    each with one request)."""
    try:
        d = json.loads(text.strip().splitlines()[-1])
        r = {"rps": float(d["handshakes_per_s"]), "p50_ms": d["p50_us"] / 1000.0, "p99_ms": d["p99_us"] / 1000.0,
             "requests": int(d["handshakes"]), "non_2xx": int(d["bad_response"]),
             "socket_errors": {k: int(d[k]) for k in ("connect", "handshake", "closed", "timeout", "resumed")}}
        r["tls"] = {k: d[k] for k in ("tls13", "tls12", "cipher", "max_us")}
        return r
    except (ValueError, KeyError, IndexError, TypeError):
        raise BenchError("tls_load printed no result:\n" + text[-500:])


# --------------------------------------------------------------------------------------------
# h2load (the HTTP/2 scenario)

def h2load_argv(port, duration, log_file):
    """h2load over TLS with SNI and :authority TLS_NAME, connected to HOST:port; one line per request in log_file."""
    return ["h2load", "-t1", f"-c{H2_CONNS}", f"-m{H2_STREAMS}", "-D", str(duration), f"--connect-to={HOST}:{port}",
            f"--log-file={log_file}", f"https://{TLS_NAME}:{port}/"]


def run_h2load(argv, duration, cwd):
    """Runs h2load; appends the latency percentiles it does not print, from its log file (one line per
    request: start time, status, microseconds), as a last JSON line."""
    log_file = next(a.split("=", 1)[1] for a in argv if a.startswith("--log-file="))
    rc, out = run_cmd(argv, timeout=duration + 30, cwd=cwd)
    if rc != 0:
        raise BenchError(f"h2load exited {rc}: {out.strip()[-300:]}")
    times = []
    with open(log_file) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                times.append(int(parts[2]))
    times.sort()
    pct = (lambda p: times[min(len(times) - 1, int(len(times) * p / 100))] / 1000.0) if times else (lambda p: None)
    return out + "\n" + json.dumps({"p50_ms": pct(50), "p99_ms": pct(99)})


def parse_h2load(text):
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if not m:
        raise BenchError("h2load printed no req/s:\n" + text[-500:])
    r = {"rps": float(m.group(1))}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", text)
    if not m:
        raise BenchError("h2load printed no request counts:\n" + text[-500:])
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    r["requests"] = done
    r["socket_errors"] = {"failed": failed, "errored": errored, "timeout": timeout}
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    r["non_2xx"] = sum(map(int, m.groups()[1:])) if m else 0
    r.update(json.loads(text.strip().splitlines()[-1]))
    return r


# --------------------------------------------------------------------------------------------
# ws_load (the WebSocket scenarios)

def ws_load_argv(port, duration, conns=WS_CONNS):
    return [os.path.join(BIN, "ws_load"), "-h", HOST, "-p", str(port), "-H", "localhost",
            "-c", str(conns), "-k", str(WS_INFLIGHT), "-s", str(WS_SIZE), "-d", str(duration), "-w", "0",
            "-t", "10", "-q"]


def parse_ws_load(text):
    """The last line of ws_load's output is JSON; map it onto the wrk fields (req/s = messages/s)."""
    try:
        d = json.loads(text.strip().splitlines()[-1])
        r = {"rps": float(d["messages_per_s"]), "p50_ms": d["p50_us"] / 1000.0, "p99_ms": d["p99_us"] / 1000.0,
             "requests": int(d["messages"]), "non_2xx": 0,
             "socket_errors": {k: int(d[k]) for k in ("closed", "protocol", "wrong_echo", "io")}}
        r["ws"] = {k: d[k] for k in ("connections", "inflight", "size", "seconds", "errors", "open", "max_us")}
        return r
    except (ValueError, KeyError, IndexError, TypeError):
        raise BenchError("ws_load printed no result:\n" + text[-500:])


def run_wrk(argv, duration, cwd):
    rc, out = run_cmd(argv, timeout=duration + 30, cwd=cwd)
    if rc != 0:
        raise BenchError(f"wrk exited {rc}: {out.strip()[-300:]}")
    return out


# --------------------------------------------------------------------------------------------
# one measurement

class GatewayCPUCap:
    """`--gateway-cpu N`: the measured system's processes get N CPUs' worth of time (a cgroup CPU quota, 10 ms
    period), so that the system under test, not the two cores it shares with the load generator and the
    backend, is the limit. The throughput is then what it does per CPU it has: the ratio of two setups of one
    gateway (CURVE against plain, say) is the ratio of their own costs, without the backend's."""
    PERIOD_US = 10000

    def __init__(self, cpus):
        self.quota = max(1000, int(cpus * self.PERIOD_US))
        v1 = "/sys/fs/cgroup/cpu"
        if os.path.exists(os.path.join(v1, "cpu.cfs_quota_us")):
            self.parent, self.v2 = v1, False
        elif "cpu" in open_text("/sys/fs/cgroup/cgroup.controllers").split():
            self.parent, self.v2 = "/sys/fs/cgroup", True
        else:
            raise BenchError("--gateway-cpu needs the cgroup cpu controller (v1 at /sys/fs/cgroup/cpu, or v2)")
        self.dir = os.path.join(self.parent, f"blastbeat-bench-{os.getpid()}")

    def apply(self, pids):
        try:
            if self.v2:
                with open(os.path.join(self.parent, "cgroup.subtree_control"), "w") as f:
                    f.write("+cpu")
            os.makedirs(self.dir, exist_ok=True)
            if self.v2:
                with open(os.path.join(self.dir, "cpu.max"), "w") as f:
                    f.write(f"{self.quota} {self.PERIOD_US}")
            else:
                with open(os.path.join(self.dir, "cpu.cfs_period_us"), "w") as f:
                    f.write(str(self.PERIOD_US))
                with open(os.path.join(self.dir, "cpu.cfs_quota_us"), "w") as f:
                    f.write(str(self.quota))
            for pid in pids:  # children forked later (a restarted worker) are born inside
                with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
        except OSError as e:
            raise BenchError(f"--gateway-cpu: {e} (run as root)")

    def release(self):
        if not os.path.isdir(self.dir):
            return
        for pid in open_text(os.path.join(self.dir, "cgroup.procs")).split():  # stragglers go back to the root
            try:
                with open(os.path.join(self.parent, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError as e:
            log(f"    could not remove {self.dir}: {e}")


def open_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def box_idle_seconds():
    """Idle time of all CPUs so far (/proc/stat's idle and iowait columns): is the box the limit?"""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def measure(system_name, scenario, opts, procs, tmp, run_no):
    """Start the system fresh, check the scenario's answer, warm up, measure, stop. Returns a dict."""
    work = os.path.join(tmp, f"{run_no:03d}-{system_name}-{scenario}")
    os.makedirs(work)
    system = CLASSES[system_name](procs, work, opts)
    result = {"system": system_name, "scenario": scenario}
    cap = None
    ws = scenario in WS_SCENARIOS
    hs = scenario == "tls-handshake"
    try:
        system.ws = ws
        system.tls = scenario in TLS_SCENARIOS
        system.h2 = scenario in H2_SCENARIOS
        system.many_tenants = scenario == "many-tenants"
        system.start()
        check_scenario(system.port, scenario, opts)
        if opts.gateway_cpu:
            cap = GatewayCPUCap(opts.gateway_cpu)
            cap.apply(system.gateway_pids())
        h2 = scenario in H2_SCENARIOS
        if ws:  # ws_load: the warm-up is a separate run on its own connections, like wrk's
            argv, run_load = ws_load_argv(system.port, opts.duration), run_load_client
        elif h2:  # h2load likewise
            argv, run_load = h2load_argv(system.port, opts.duration, os.path.join(work, "h2load.log")), run_h2load
        elif hs:  # tls_load likewise
            argv, run_load = tls_load_argv(system.port, opts.duration), run_load_client
        else:
            argv, run_load = wrk_argv(scenario, system.port, opts.duration, tmp), run_wrk
        if opts.warmup > 0:
            if ws:
                warm = ws_load_argv(system.port, opts.warmup)
            elif h2:
                warm = h2load_argv(system.port, opts.warmup, os.path.join(work, "h2load-warmup.log"))
            elif hs:
                warm = tls_load_argv(system.port, opts.warmup)
            else:
                warm = list(argv)
                warm[3] = f"-d{opts.warmup}s"
            run_load(pinned(warm, opts), opts.warmup, work)
        pids = system.gateway_pids()
        bpids = system.backend_pids()
        cpu0, bcpu0 = cpu_seconds(pids), cpu_seconds(bpids)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        idle0 = box_idle_seconds()
        out = run_load(pinned(argv, opts), opts.duration, work)
        result["box_idle_s"] = box_idle_seconds() - idle0
        # the load generator's CPU (waited for by run_cmd): is the client the limit?
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["client_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        for name, p in system.watch:
            if p.poll() is not None:
                raise BenchError(f"{name} died during the run (status {p.returncode})")
        if not all(pid_alive(pid) for pid in pids):
            raise BenchError(f"{LABELS[system_name]} died during the run")
        result.update(parse_ws_load(out) if ws else parse_h2load(out) if h2 else parse_tls_load(out) if hs
                      else parse_wrk(out))
        result["cpu_s"] = cpu_seconds(pids) - cpu0
        result["backend_cpu_s"] = cpu_seconds(bpids) - bcpu0
        result["peak_rss"] = sum(status_bytes(pid, "VmHWM") or 0 for pid in pids)
        result["gateway_processes"] = len(pids)
        if result["requests"]:
            result["cpu_us_per_req"] = result["cpu_s"] * 1e6 / result["requests"]
        errs = sum(result["socket_errors"].values()) + result["non_2xx"]
        if not result["requests"]:
            result["error"] = "no request completed"
        elif ws and (errs or result["ws"]["open"] != result["ws"]["connections"]):
            # an echo test has no expected failures: any closed connection or wrong echo fails the run
            result["error"] = (f"WebSocket errors {result['socket_errors']}, "
                               f"{result['ws']['open']}/{result['ws']['connections']} connections open at the end")
        elif hs and result["socket_errors"]["resumed"]:
            result["error"] = f"{result['socket_errors']['resumed']} handshakes resumed a session (must be full)"
        elif errs > 0.01 * result["requests"]:
            result["error"] = (f"{errs} errors in {result['requests']} requests "
                               f"(non-2xx {result['non_2xx']}, socket {result['socket_errors']})")
        if opts.verbose:
            log(out)
    except (BenchError, OSError, ValueError, IndexError) as e:
        result["error"] = (str(e).splitlines() or [type(e).__name__])[0]
        log(f"    {LABELS[system_name]} / {scenario}: {e!r}" if not isinstance(e, BenchError)
            else f"    {LABELS[system_name]} / {scenario}: {e}")
        for path in system.logs():
            log(f"    {path}:\n{tail(path)}")
    finally:
        procs.stop_all()
        if cap:
            cap.release()
    if not opts.keep_tmp:
        shutil.rmtree(work, ignore_errors=True)
    return result


def measure_idle(system_name, opts, procs, tmp):
    work = os.path.join(tmp, f"idle-{system_name}")
    os.makedirs(work)
    system = CLASSES[system_name](procs, work, opts)
    result = {"system": system_name, "count": opts.idle_conns}
    try:
        system.start()
        # a few requests first, so the baseline is a warm server
        for _ in range(20):
            http_request(system.port)
        pids = system.gateway_pids()
        argv = [sys.executable, os.path.join(BENCH, "idle_conns.py"), "--host", HOST,
                "--port", str(system.port), "--count", str(opts.idle_conns), "--timeout", "150"]
        for pid in pids:
            argv += ["--pid", str(pid)]
        rc, out = run_cmd(argv, timeout=200, cwd=work)
        try:
            data = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"idle_conns.py failed (status {rc}): {out.strip()[-300:]}")
        result.update(data)
        if not all(pid_alive(pid) for pid in pids):
            raise BenchError(f"{LABELS[system_name]} died while holding idle connections")
        if data["alive"] < 0.99 * opts.idle_conns:
            result["error"] = (f"only {data['alive']} of {opts.idle_conns} connections stayed open "
                               f"(errors: {data['errors']})")
    except (BenchError, OSError, ValueError, IndexError) as e:
        result["error"] = (str(e).splitlines() or [type(e).__name__])[0]
        log(f"    {LABELS[system_name]} / idle: {e}")
        for path in system.logs():
            log(f"    {path}:\n{tail(path)}")
    finally:
        procs.stop_all()
        if cap:
            cap.release()
    if not opts.keep_tmp:
        shutil.rmtree(work, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------
# summary

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, systems, scenarios):
    """Medians per (scenario, system) over the valid runs; paired per-round ratios BlastBeat / peer."""
    summary, ratios = {}, {}
    for sc in scenarios:
        summary[sc] = {}
        for sy in systems:
            cls = CLASSES[sy]
            if sc in cls.unsupported:
                summary[sc][sy] = {"na": cls.unsupported[sc]}
                continue
            mine = [r for r in runs if r["system"] == sy and r["scenario"] == sc]
            good = [r for r in mine if "error" not in r]
            if not good:
                errs = sorted({r.get("error", "not run") for r in mine}) or ["not run"]
                summary[sc][sy] = {"failed": "; ".join(errs)}
                continue
            summary[sc][sy] = {k: median(r.get(k) for r in good)
                               for k in ("rps", "p50_ms", "p99_ms", "cpu_s", "cpu_us_per_req", "peak_rss",
                                         "backend_cpu_s")}
            summary[sc][sy]["valid_runs"] = len(good)
            summary[sc][sy]["runs"] = len(mine)
            if len(good) < len(mine):
                summary[sc][sy]["failed_runs"] = sorted({r["error"] for r in mine if "error" in r})
        if "blastbeat" not in systems:
            continue
        ratios[sc] = {}
        for peer in systems:
            if peer == "blastbeat":
                continue
            per_round = {k: [] for k in ("rps", "p99_ms", "cpu_us_per_req", "peak_rss")}
            for rnd in sorted({r["round"] for r in runs}):
                a = [r for r in runs if r["round"] == rnd and r["scenario"] == sc and r["system"] == "blastbeat"
                     and "error" not in r]
                b = [r for r in runs if r["round"] == rnd and r["scenario"] == sc and r["system"] == peer
                     and "error" not in r]
                if a and b:
                    for k in per_round:
                        if a[0].get(k) is not None and b[0].get(k):
                            per_round[k].append(a[0][k] / b[0][k])
            ratios[sc][peer] = {k: median(v) for k, v in per_round.items()}
    return summary, ratios


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    if kind == "cpu":
        return f"{v:.2f}"
    if kind == "us":
        return f"{v:.1f}"
    if kind == "mib":
        return f"{v / 1048576:.1f}"
    if kind == "ratio":
        return f"{v:.2f}×"
    return str(v)


def markdown(meta, summary, ratios, idle, systems, scenarios):
    L = []
    L.append(f"# BlastBeat benchmark — {meta['started']}")
    L.append("")
    L.append(f"{meta['machine']}; {meta['rounds']} round(s) of {meta['duration']} s per run "
             f"(+{meta['warmup']} s warm-up), runs interleaved system by system, medians shown. "
             f"`wrk -t1 -cN -dDs --latency`; CPU = user+system seconds of the gateway process(es) during "
             f"the measured run; peak RSS = VmHWM of a gateway started fresh for each run.")
    L.append("")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    L.append("")
    L.append("## Throughput and latency")
    L.append("")
    L.append("| scenario | system | req/s | p50 ms | p99 ms | CPU s | CPU µs/req | peak RSS MiB | notes |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for sc in scenarios:
        for sy in systems:
            s = summary[sc][sy]
            if "na" in s:
                L.append(f"| {sc} | {LABELS[sy]} | n/a | | | | | | {s['na']} |")
            elif "failed" in s:
                L.append(f"| {sc} | {LABELS[sy]} | failed | | | | | | {s['failed']} |")
            else:
                note = ""
                if s.get("failed_runs"):
                    note = f"{s['valid_runs']}/{s['runs']} runs valid: " + "; ".join(s["failed_runs"])
                L.append(f"| {sc} | {LABELS[sy]} | {fmt(s['rps'], 'rps')} | {fmt(s['p50_ms'], 'ms')} | "
                         f"{fmt(s['p99_ms'], 'ms')} | {fmt(s['cpu_s'], 'cpu')} | {fmt(s['cpu_us_per_req'], 'us')} | "
                         f"{fmt(s['peak_rss'], 'mib')} | {note} |")
    L.append("")
    peers = [p for p in systems if p != "blastbeat"]
    if ratios and peers:
        L.append("## BlastBeat / peer (median of the per-round ratios)")
        L.append("")
        L.append("req/s above 1 = BlastBeat faster; p99, CPU µs/req and peak RSS above 1 = BlastBeat higher "
                 "(worse).")
        L.append("")
        L.append("| scenario | metric | " + " | ".join(f"BlastBeat / {LABELS[p]}" for p in peers) + " |")
        L.append("|---|---|" + "---:|" * len(peers))
        for sc in scenarios:
            for key, label in (("rps", "req/s"), ("p99_ms", "p99"), ("cpu_us_per_req", "CPU µs/req"),
                               ("peak_rss", "peak RSS")):
                cells = []
                for p in peers:
                    if "na" in summary[sc][p]:
                        cells.append("n/a")
                    elif "na" in summary[sc]["blastbeat"]:
                        cells.append("n/a")
                    else:
                        cells.append(fmt(ratios[sc][p][key], "ratio"))
                L.append(f"| {sc} | {label} | " + " | ".join(cells) + " |")
        L.append("")
    if idle:
        L.append(f"## Idle keep-alive connections ({meta['idle_conns']:,} opened, one request each, then idle)")
        L.append("")
        L.append("| system | alive | RSS before MiB | RSS after MiB | bytes / connection | BlastBeat / system | notes |")
        L.append("|---|---:|---:|---:|---:|---:|---|")
        bb = idle.get("blastbeat", {}).get("bytes_per_conn")
        for sy in systems:
            r = idle.get(sy)
            if r is None:
                continue
            if r.get("bytes_per_conn") is None:
                L.append(f"| {LABELS[sy]} | {r.get('alive', '–')} | | | failed | | {r.get('error', '')} |")
                continue
            ratio = fmt(bb / r["bytes_per_conn"], "ratio") if (bb is not None and r["bytes_per_conn"] > 0) else "–"
            L.append(f"| {LABELS[sy]} | {r['alive']:,} | {fmt(r['rss_before'], 'mib')} | {fmt(r['rss_after'], 'mib')} | "
                     f"{r['bytes_per_conn']:,.0f} | {ratio} | {r.get('error', '')} |")
        L.append("")
    if meta.get("notes"):
        L.append("## Notes")
        L.append("")
        for n in meta["notes"]:
            L.append(f"- {n}")
        L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------------------------
# setup and main

def build_peers():
    os.makedirs(BIN, exist_ok=True)
    for name in ("blastbeat_backend", "mongrel2_handler", "condure_handler",
                 "blastbeat_ws_echo", "mongrel2_ws_echo", "condure_ws_echo", "ws_load", "tls_load"):
        src, exe = os.path.join(PEERS, name + ".c"), os.path.join(BIN, name)
        if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
            continue
        libs = [] if name == "ws_load" else ["-lssl", "-lcrypto"] if name == "tls_load" else ["-lzmq"]
        rc, out = run_cmd(["gcc", "-O2", "-Wall", "-o", exe, src] + libs, timeout=120)
        if rc != 0:
            raise SystemExit(f"bench: building {name} failed:\n{out}")
        log(f"built bench/bin/{name}")


def versions(systems):
    v = {}
    if "blastbeat" in systems:
        if os.access(blastbeat_bin(), os.X_OK):
            rc, out = run_cmd([blastbeat_bin(), "--version"], timeout=10)
            v["BlastBeat"] = out.strip().split()[-1] if rc == 0 and out.strip() else "?"
        else:
            v["BlastBeat"] = "(binary missing)"
    for pkg in ("mongrel2-core", "condure", "nginx-light", "wrk", "libzmq5", "libssl3"):
        rc, out = run_cmd(["dpkg-query", "-W", "-f", "${Version}", pkg], timeout=10)
        v[pkg] = out.strip() if rc == 0 else "?"
    return v


def leftovers(tmp):
    """Processes of this run still alive: every process it starts works in (or names) its unique
    temp dir, and their descendants inherit that working directory (mongrel2's chroot included)."""
    rc, out = run_cmd(["pgrep", "-f", "--", tmp], timeout=10)
    found = {int(w) for w in out.split() if w.isdigit()}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cwd = os.readlink(f"/proc/{d}/cwd")
            except OSError:
                continue
            if cwd == tmp or cwd.startswith(tmp + "/"):
                found.add(int(d))
    found.discard(os.getpid())
    ours = []
    for pid in sorted(found):
        if pid_alive(pid):  # (a zombie of ours is reaped here: we are a subreaper)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = "?"
            ours.append((pid, cmd))
    return ours


def parse_args(argv):
    ap = argparse.ArgumentParser(description="BlastBeat vs Mongrel2, Condure and nginx (see bench/README.md)")
    ap.add_argument("--duration", type=int, default=None, help="seconds per measured wrk run (default 5)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds; medians are reported (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measured run (default 1)")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma list of " + ",".join(ALL_SYSTEMS) + " (default: all but " + ",".join(OPTIONAL_SYSTEMS) + ")")
    ap.add_argument("--scenarios", default=",".join(list(SCENARIOS) + ["idle"]),
                    help="comma list of " + ",".join(list(SCENARIOS) + ["idle"] + list(OPTIONAL_SCENARIOS))
                    + " (default: all but " + ",".join(OPTIONAL_SCENARIOS) + ")")
    ap.add_argument("--idle-conns", type=int, default=10000, help="connections for the idle memory test")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 3 s")
    ap.add_argument("--no-deps", action="store_true", help="skip scripts/install-deps.sh bench")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the generated configs and logs")
    ap.add_argument("--out", default=RESULTS, help="results directory (default bench/results)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output")
    ap.add_argument("--gateway-cpu", type=float, default=None, metavar="N",
                    help="give each measured system N CPUs' worth of time (cgroup CPU quota), so that it, not the "
                         "shared cores, is the limit; e.g. 0.5")
    ap.add_argument("--pin-client", default=None, metavar="CPUS",
                    help="run the load generators on these CPUs only (taskset -c CPUS), e.g. 1")
    opts = ap.parse_args(argv)
    if opts.duration is None:
        opts.duration = 3 if opts.quick else 5
    if opts.rounds is None:
        opts.rounds = 1 if opts.quick else 3
    opts.systems = [s.strip() for s in opts.systems.split(",") if s.strip()]
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    for s in opts.systems:
        if s not in CLASSES:
            ap.error(f"unknown system {s!r} (choose from {', '.join(ALL_SYSTEMS)})")
    for s in opts.scenarios:
        if s not in SCENARIOS and s not in OPTIONAL_SCENARIOS and s != "idle":
            ap.error(f"unknown scenario {s!r} (choose from {', '.join(SCENARIOS)}, idle, "
                     f"{', '.join(OPTIONAL_SCENARIOS)})")
    opts.systems = [s for s in ALL_SYSTEMS if s in opts.systems]
    if opts.duration < 1 or opts.rounds < 1:
        ap.error("--duration and --rounds must be at least 1")
    return opts


def main(argv=None):
    opts = parse_args(argv if argv is not None else sys.argv[1:])
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    set_subreaper()
    opts.nofile = raise_nofile()
    if not opts.no_deps:
        rc = subprocess.call([os.path.join(ROOT, "scripts", "install-deps.sh"), "bench"], cwd=ROOT)
        if rc != 0:
            raise SystemExit("bench: scripts/install-deps.sh bench failed")
    build_peers()

    load = [s for s in opts.scenarios if s != "idle"]
    started = datetime.datetime.now()
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{os.cpu_count()} CPU(s), Linux {platform.release()}",
        "duration": opts.duration, "rounds": opts.rounds, "warmup": opts.warmup,
        "idle_conns": opts.idle_conns, "systems": opts.systems, "scenarios": opts.scenarios,
        "gateway_cpu": opts.gateway_cpu,
        "gateway_binary": blastbeat_bin() if "blastbeat" in opts.systems else None,
        "versions": versions(opts.systems),
        "notes": [],
    }
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="blastbeat-bench-")
    os.chmod(tmp, 0o755)
    opts.tls = None
    if any(sc in TLS_SCENARIOS for sc in load):
        try:
            opts.tls = make_certificate(tmp)  # one certificate per run, for every system
        except BenchError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SystemExit(f"bench: {e}")
    runs, idle = [], {}
    n = 0
    total_runs = opts.rounds * sum(1 for sc in load for sy in opts.systems if sc not in CLASSES[sy].unsupported)
    t0 = time.monotonic()
    try:
        if "blastbeat" in opts.systems:
            if os.access(blastbeat_bin(), os.X_OK):
                log(f"bench: gateway {blastbeat_bin()}")
            else:
                log(f"bench: WARNING: no gateway binary at {blastbeat_bin()}: BlastBeat will show as failed")
        log(f"bench: {opts.rounds} round(s) × {len(load)} scenario(s) × {len(opts.systems)} system(s), "
            f"{opts.duration} s per run; work dir {tmp}")
        for rnd in range(1, opts.rounds + 1):
            for sc in load:
                for sy in opts.systems:
                    if sc in CLASSES[sy].unsupported:
                        continue
                    n += 1
                    r = measure(sy, sc, opts, procs, tmp, n)
                    r["round"] = rnd
                    runs.append(r)
                    if "error" in r:
                        line = "ERROR " + r["error"]
                    else:
                        line = (f"{r['rps']:>10,.0f} req/s  p50 {fmt(r['p50_ms'], 'ms')} ms  "
                                f"p99 {fmt(r['p99_ms'], 'ms')} ms  cpu {r['cpu_s']:.2f} s  "
                                f"rss {fmt(r['peak_rss'], 'mib')} MiB")
                    log(f"  [{n:>3}/{total_runs}] round {rnd} {sc:<13} {LABELS[sy]:<13} {line}")
        if "idle" in opts.scenarios and opts.idle_conns > 0:
            log(f"bench: idle memory, {opts.idle_conns:,} keep-alive connections per system")
            for sy in opts.systems:
                r = measure_idle(sy, opts, procs, tmp)
                idle[sy] = r
                if r.get("bytes_per_conn") is not None:
                    log(f"  idle {LABELS[sy]:<13} {r['alive']:>6,} alive  RSS {fmt(r['rss_before'], 'mib')} → "
                        f"{fmt(r['rss_after'], 'mib')} MiB  {r['bytes_per_conn']:,.0f} B/conn"
                        + (f"  ({r['error']})" if r.get("error") else ""))
                else:
                    log(f"  idle {LABELS[sy]:<13} ERROR {r.get('error')}")
    except KeyboardInterrupt:
        log("bench: interrupted")
        meta["notes"].append("interrupted before the end")
    except Stop as e:
        log(f"bench: stopped by {e}")
        meta["notes"].append("stopped before the end")
    finally:
        procs.stop_all()
        left = leftovers(tmp)
        if left:
            log("bench: leftover processes, killing them: " + "; ".join(f"{pid} {cmd}" for pid, cmd in left))
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            meta["notes"].append("leftover processes killed at the end: "
                                 + "; ".join(f"{pid} {cmd}" for pid, cmd in left))
        else:
            log("bench: no leftover processes (pgrep)")
        if not opts.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    if "mongrel2" in opts.systems:
        meta["notes"].append("Mongrel2 runs as root with chroot \"./\" = its temp dir (owned by root, so it "
                             "stays root); its access log is a /dev/null device node inside that chroot.")
    if "condure" in opts.systems:
        meta["notes"].append("Condure runs with its default 2 worker threads; the others use one event loop "
                             "(nginx: worker_processes 1).")
    if any(sc in WS_SCENARIOS for sc in load):
        meta["notes"].append(f"wsecho: req/s = echoed WebSocket messages/s (`bench/bin/ws_load`: {WS_CONNS} "
                             f"connections, {WS_INFLIGHT} text message of {WS_SIZE} bytes in flight on each, masked); "
                             f"p50/p99 = message round trip; CPU µs/req = per message. Backends: "
                             f"`*_ws_echo.c` in bench/peers.")
    if any(sc in TLS_SCENARIOS for sc in load):
        meta["notes"].append("TLS: one ECDSA P-256 self-signed certificate (openssl req, CN/SAN localhost) per run, "
                             "the same for every system; TLS only on the client-facing listener (nginx proxy: "
                             "plain HTTP to its origin); nginx with BlastBeat's TLS policy (TLSv1.2 TLSv1.3, "
                             "the same cipher order, ssl_prefer_server_ciphers on, ssl_session_cache off, "
                             "ssl_session_tickets on). tls-keepalive: `wrk -t1 -c50 https://…` (50 handshakes, "
                             "then requests on established connections). tls-handshake: req/s = full "
                             f"handshakes/s from `bench/bin/tls_load -c {TLS_CONNS}` (no session is ever offered, so "
                             "never resumed; any resumption fails the run), "
                             "one GET / with Connection: close per handshake; p50/p99 = connect to last byte. "
                             "wrk with Connection: close is not used for it: it resumes the previous session "
                             "(TLS 1.3 ticket) on every reconnect. A full handshake costs the client more CPU than the "
                             "server and the cores are shared, so compare CPU µs/req (= per handshake) first; "
                             "`client_cpu_s` in the JSON shows when the client was the limit.")
    meta["notes"].append("BlastBeat / X ratios are medians of per-round ratios (each round runs the systems "
                         "back to back), so they are comparable even when absolute numbers drift.")
    if opts.gateway_cpu:
        meta["notes"].append(f"--gateway-cpu {opts.gateway_cpu}: each measured system had {opts.gateway_cpu} CPUs' "
                             "worth of time (cgroup quota); the load generator and the backend were not limited.")
    meta["notes"].append("Each run's JSON also has `client_cpu_s` (the load generator's CPU), `backend_cpu_s` and "
                         "`box_idle_s` (idle seconds of all CPUs during the run): whether the cores were the limit, "
                         "and who had them.")
    if "many-tenants" in load and "keepalive" in load:
        for sy in ("blastbeat", "blastbeat-libzmq"):
            per_round = []
            for rnd in sorted({r["round"] for r in runs}):
                pair = [next((r for r in runs if r["round"] == rnd and r["system"] == sy and r["scenario"] == sc
                              and "error" not in r), None) for sc in ("many-tenants", "keepalive")]
                if all(pair) and pair[1]["rps"]:
                    per_round.append(pair[0]["rps"] / pair[1]["rps"])
            if per_round:
                meta["notes"].append(
                    f"many-tenants / keepalive, {LABELS[sy]} (median of per-round req/s ratios): "
                    f"{median(per_round):.2f}× ({MANY_VHOSTS:,} vhosts before the measured one, "
                    f"{MANY_BACKENDS:,} other backend connections open).")
    if "blastbeat-admin" in opts.systems and "blastbeat" in opts.systems:
        for sc in load:
            per_round = []
            for rnd in sorted({r["round"] for r in runs}):
                pair = [next((r for r in runs if r["round"] == rnd and r["system"] == sy and r["scenario"] == sc
                              and "error" not in r), None) for sy in ("blastbeat-admin", "blastbeat")]
                if all(pair) and pair[1].get("rps"):
                    per_round.append(pair[0]["rps"] / pair[1]["rps"])
            if per_round:
                meta["notes"].append(
                    f"{sc}: admin listener on and scraped every second / off (median of per-round req/s ratios): "
                    f"{median(per_round):.3f}× ({(1 - median(per_round)) * 100:+.1f}% lost; rounds: "
                    + ", ".join(f"{x:.3f}" for x in per_round) + ").")
    summary, ratios = summarize(runs, opts.systems, load)
    md = markdown(meta, summary, ratios, idle, opts.systems, load)
    os.makedirs(opts.out, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    md_path = os.path.join(opts.out, f"bench-{stamp}.md")
    js_path = os.path.join(opts.out, f"bench-{stamp}.json")
    with open(md_path, "w") as f:
        f.write(md + "\n")
    with open(js_path, "w") as f:
        json.dump({"meta": meta, "summary": summary, "ratios": ratios, "idle": idle, "runs": runs}, f, indent=1)
    for src, name in ((md_path, "latest.md"), (js_path, "latest.json")):
        shutil.copyfile(src, os.path.join(opts.out, name))
    log("")
    log(md)
    log(f"bench: results in {os.path.relpath(md_path, ROOT)} and {os.path.relpath(js_path, ROOT)} "
        f"({meta['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
