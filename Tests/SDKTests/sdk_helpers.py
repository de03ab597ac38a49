"""Peers for the SDK tests: the real gateway binary, SDK processes, raw HTTP connections.

Everything is bounded in time: every wait has a deadline and every socket a timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SDK_SRC = REPO / "python" / "src"
DEFAULT_BIN = str(REPO / ".build" / "debug" / "blastbeat")

sys.path.insert(0, str(REPO / "Tests"))
from free_ports import free_port  # noqa: E402  (shared with the integration tests)


def blastbeat_bin() -> str:
    return os.environ.get("BLASTBEAT_BIN", DEFAULT_BIN)


def subprocess_env(**extra: str) -> dict:
    """The environment for SDK subprocesses: the SDK sources first on PYTHONPATH, unbuffered output."""
    env = dict(os.environ)
    paths = [str(SDK_SRC), str(HERE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``pred`` until it returns something truthy; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


GATEWAY_OPTIONS = {
    "ping-freq": "0.5",
    "ping-timeout": "2",
    "backend-timeout": "10",
    "header-timeout": "5",
    "keepalive-timeout": "10",
    "body-timeout": "10",
    "shutdown-timeout": "5",
    "max-hops": "3",
    "max-body-size": "64m",
    "access-log": "-",
}


class Gateway:
    """One ``blastbeat`` process with a generated ini (free ports on 127.0.0.1) in ``workdir``.

    ``nodes`` are the node names of the single vhost ``localhost``, which is also the default vhost, so any
    Host header reaches it; ``vhost_options`` are more keys for it (``websocket-handshake = backend``...; a
    list value writes the key once per item).
    """

    def __init__(self, workdir: Path, nodes: Sequence[str] = ("app",), options: Optional[dict] = None,
                 name: str = "gateway", vhost_options: Optional[dict] = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.nodes = list(nodes)
        self.port = free_port()
        self.zmq_port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.zmq_port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = dict(GATEWAY_OPTIONS)
        self.options.update(options or {})
        self.vhost_options = dict(vhost_options or {})
        self.config_path = self.workdir / f"{name}.ini"
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.killed = False

    def config_text(self) -> str:
        lines = ["[blastbeat]", f"bind = 127.0.0.1:{self.port}", f"zmq = {self.endpoint}"]
        lines += [f"{k} = {v}" for k, v in self.options.items()]
        lines += ["", "[blastbeat:localhost]"] + [f"node = {n}" for n in self.nodes] + ["default = true"]
        for k, v in self.vhost_options.items():  # a list value: the key repeated (node-key, one per node)
            lines += [f"{k} = {item}" for item in (v if isinstance(v, (list, tuple)) else [v])]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "Gateway":
        self.config_path.write_text(self.config_text())
        binary = blastbeat_bin()
        deadline = time.monotonic() + timeout
        # The binary may be being rebuilt by someone else for a moment: retry until it is there.
        while not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            if time.monotonic() > deadline:
                raise FileNotFoundError(f"gateway binary not found or not executable: {binary} (set BLASTBEAT_BIN)")
            time.sleep(0.2)
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([binary, str(self.config_path)], stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"blastbeat exited with {self.proc.returncode} during startup\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"blastbeat did not accept on {self.port} within {timeout}s\n{self.logs()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` (then kill -9); returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(5)
        if self.returncode is None:
            self.returncode = self.proc.returncode
            self._out.close()
            self._err.close()
        return self.returncode

    def restart(self) -> "Gateway":
        """Stop (SIGTERM) and start again on the same ports and config."""
        assert self.stop() == 0, self.logs()
        self.proc, self.returncode = None, None
        return self.start()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def logs(self, tail: int = 100) -> str:
        def cut(path: Path) -> str:
            text = path.read_text(errors="replace") if path.exists() else ""
            return "\n".join(text.splitlines()[-tail:])

        return (f"--- {self.config_path.name} ---\n{self.config_text()}"
                f"--- {self.name} stdout ---\n{cut(self.stdout_path)}\n"
                f"--- {self.name} stderr ---\n{cut(self.stderr_path)}\n")


class Proc:
    """A subprocess (an SDK node, an upstream server...) with its output in a log file."""

    def __init__(self, args: Sequence[str], log_path: Path, cwd: Optional[Path] = None,
                 env: Optional[dict] = None):
        self.args = list(args)
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=env or subprocess_env())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_output(self, text: str, timeout: float = 10.0, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the output (fails early if the process exits)."""
        def seen():
            if self.output().count(text) >= count:
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited with {self.proc.returncode}:\n{self.output()}")
            return False

        wait_until(seen, timeout, 0.05, f"{text!r} in the output of {self.args}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def sdk_command(module: str, *args: str) -> list:
    """``python -m blastbeat.MODULE ARGS`` with the interpreter running the tests."""
    return [sys.executable, "-m", f"blastbeat.{module}", *args]


def wait_served(url: str, timeout: float = 10.0, path: str = "/") -> int:
    """Poll ``url + path`` until the answer is no longer 502/503 (the node has joined); returns the status."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            status = httpx.get(url + path, timeout=5).status_code
        except httpx.HTTPError:
            status = 0
        if status not in (0, 502, 503) or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------
# Raw HTTP


class RawConn:
    """A plain TCP connection speaking HTTP/1.x by hand; every read is bounded by ``timeout``."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("read deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout as exc:
            raise TimeoutError("read deadline passed") from exc
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def _until(self, marker: bytes, deadline: float) -> bytes:
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                out = bytes(self.buf[:idx + len(marker)])
                del self.buf[:idx + len(marker)]
                return out
            if not self._fill(deadline):
                raise ConnectionError(f"closed before {marker!r}; have {bytes(self.buf)[:200]!r}")

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method: str = "GET", timeout: Optional[float] = None) -> "RawResponse":
        """One response, framed by its head (HEAD/204/304: no body; chunked; Content-Length; until close)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self._until(b"\r\n\r\n", deadline).decode("latin-1")
        lines = head[:-4].split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        resp = RawResponse(lines[0], status, headers, b"", [])
        te = resp.header("transfer-encoding") or ""
        length = resp.header("content-length")
        if method == "HEAD" or status in (204, 304) or status < 200:
            return resp
        if "chunked" in te.lower():
            body = bytearray()
            while True:
                size = int(self._until(b"\r\n", deadline).split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                data = self._exact(size + 2, deadline)[:-2]
                resp.chunks.append(data)
                body += data
            resp.body = bytes(body)
        elif length is not None:
            resp.body = self._exact(int(length), deadline)
        else:
            while self._fill(deadline):
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        return resp

    def read_until_close(self, timeout: float = 5.0) -> bytes:
        """Everything up to EOF (with what is buffered); TimeoutError if the peer keeps the connection open."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the peer closes (EOF) within ``timeout`` without sending more bytes."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            return False
        return not self.buf


class RawResponse:
    def __init__(self, status_line: str, status: int, headers: list, body: bytes, chunks: list):
        self.status_line = status_line
        self.status = status
        self.headers = headers
        self.body = body
        self.chunks = chunks

    def header(self, name: str) -> Optional[str]:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None


def request_bytes(method: str = "GET", target: str = "/", headers: Iterable[tuple] = (), body: bytes = b"",
                  version: str = "HTTP/1.1", host: str = "localhost") -> bytes:
    lines = [f"{method} {target} {version}", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---------------------------------------------------------------------------------------------------------
# A pyzmq ROUTER standing in for the gateway (identities, CURVE)


class RouterPeer:
    """A ROUTER on a random 127.0.0.1 port, optionally a CURVE server.

    ``curve``: the server's (public, secret) Z85 keys. ``allowed``: a directory of public certificates; a ZAP
    authenticator then admits only clients whose key is among them (as the gateway's ``node-key`` lines do),
    and every message carries the client's public key as its ``User-Id``. Without it any client that knows
    the server key gets through (libzmq without ZAP).
    """

    def __init__(self, curve: Optional[tuple] = None, allowed: Optional[Path] = None) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.auth = None
        if allowed is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(allowed))
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            self.sock.curve_server = True
            self.sock.curve_publickey, self.sock.curve_secretkey = curve
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.user_ids: list = []  # the User-Id of each message received (None without ZAP)

    def recv(self, timeout: float = 5.0) -> list:
        """The next message as [identity, sid, type, body]; TimeoutError after ``timeout`` seconds."""
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no message within {timeout}s")
        frames = self.sock.recv_multipart(copy=False)
        try:
            self.user_ids.append(frames[-1].get("User-Id"))
        except Exception:  # no such property: no ZAP handler authenticated the connection
            self.user_ids.append(None)
        return [f.bytes for f in frames]

    def wait_announce(self, timeout: float = 10.0) -> bytes:
        """The identity of the first node that announces itself (its unsolicited pong)."""
        deadline = time.monotonic() + timeout
        while True:
            frames = self.recv(max(0.01, deadline - time.monotonic()))
            if frames[2] == b"pong":
                return frames[0]

    def silent_for(self, seconds: float) -> bool:
        """True if no message at all arrives within ``seconds``."""
        return not self.sock.poll(int(seconds * 1000))

    def get(self, identity: bytes, path: str = "/", timeout: float = 5.0) -> list:
        """Send a GET for ``path`` to ``identity``; the first non-pong reply as [identity, sid, type, body]."""
        from blastbeat import uwsgi  # the tree's SDK: conftest put python/src first on sys.path

        sid = os.urandom(16)
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "REMOTE_PORT": "40000", "UWSGI_SCHEME": "http", "HTTP_HOST": "localhost", "REQUEST_URI": path}
        self.sock.send_multipart([identity, sid, b"uwsgi", uwsgi.encode(env)])
        deadline = time.monotonic() + timeout
        while True:
            frames = self.recv(max(0.01, deadline - time.monotonic()))
            if frames[2] != b"pong":
                assert frames[1] == sid, f"reply for another session: {frames!r}"
                return frames

    def close(self) -> None:
        self.sock.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
