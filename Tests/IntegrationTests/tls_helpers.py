"""TLS peers for the BlastBeat integration tests (issue #3).

* ``PKI``: a throw-away certificate authority made with the ``openssl`` CLI at test time, issuing leaf
  certificates (EC P-256 keys) with chosen subject, subjectAltNames and serial. Nothing is committed: the files
  live in a temporary directory that is world-readable, because a gateway started as root drops privileges to
  ``nobody`` and must still be able to re-read them on SIGHUP.
* ``TLSGateway``: ``helpers.Gateway`` plus a shared ``bind-ssl`` listener and per-vhost keys
  (``certificate``, ``key``, ``bind-ssl`` ...).
* Clients: ``tls_context``, ``tls_socket``, ``peer_certificate``, ``TLSConn`` (``helpers.RawConn`` over TLS),
  ``s_client`` (``openssl s_client`` with a hard time limit), ``curl_https``, ``client_hello``.
* ``websocket_echo_handler``: a backend that echoes ``websocket`` messages.

Everything is bounded in time.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import helpers
from helpers import Gateway, RawConn, decode_env, free_port, port_accepts

OPENSSL_TIMEOUT = 15.0


def run_openssl(*args: str, cwd: Path | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["openssl", *args], capture_output=True, timeout=OPENSSL_TIMEOUT, cwd=cwd, input=input,
                          env=openssl_env())
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode(errors='replace')}")
    return proc


def openssl_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    return env


# --------------------------------------------------------------------------------------------------------------
# Certificates


@dataclass
class CertPair:
    """A leaf certificate and its key, as files; ``serial`` is the decimal serial number."""

    cert: Path
    key: Path
    common_name: str
    sans: tuple[str, ...]
    serial: int

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "X")


def world_readable_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the unprivileged ``nobody`` can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


class PKI:
    """A test CA in ``directory`` (``ca.pem``, ``ca.key``) that issues leaf certificates."""

    _serial_lock = threading.Lock()
    _next_serial = int(time.time() * 1000) % (1 << 40) + 0x1000

    def __init__(self, directory: Path, ca_name: str = "BlastBeat Test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.ca_cert = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(self.ca_key), "-out", str(self.ca_cert), "-days", "3", "-subj", f"/CN={ca_name}",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-addext", "subjectKeyIdentifier=hash")
        self._chmod(self.ca_cert, self.ca_key)

    @classmethod
    def serial(cls) -> int:
        with cls._serial_lock:
            cls._next_serial += 1
            return cls._next_serial

    @staticmethod
    def _chmod(*paths: Path) -> None:
        for p in paths:
            p.chmod(0o644)  # test keys only: the gateway may run as nobody after its privilege drop

    def issue(self, name: str, common_name: str, sans: tuple[str, ...] | list[str] = (), serial: int | None = None,
              directory: Path | None = None, organization: str | None = None) -> CertPair:
        """``name.pem`` + ``name.key`` signed by the CA; ``sans`` are DNS names (default: the CN)."""
        directory = Path(directory) if directory is not None else self.dir
        sans = tuple(sans) if sans else (common_name,)
        serial = serial if serial is not None else self.serial()
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid\n"
                       f"subjectAltName={','.join('DNS:' + s for s in sans)}\n")
        run_openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj",
                    f"/CN={common_name}" + (f"/O={organization}" if organization else ""))
        run_openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
                    "-set_serial", str(serial), "-days", "2", "-extfile", str(ext), "-out", str(cert))
        csr.unlink()
        ext.unlink()
        self._chmod(cert, key)
        return CertPair(cert, key, common_name, sans, serial)


def replace_file(path: Path, content: bytes) -> None:
    """Atomically replace ``path`` (rename over it), keeping it world-readable."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.chmod(0o644)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------------
# Gateway with TLS


class TLSGateway(Gateway):
    """A ``Gateway`` with a shared ``bind-ssl = 127.0.0.1:tls_port`` (unless ``shared_tls=False``).

    The plain ``bind`` of ``Gateway`` is kept (it is what ``start`` waits for, and shows the gateway is still
    serving). ``vhosts`` values may be dicts with ``nodes``, ``default`` and any other vhost key, e.g.
    ``{"nodes": ["A"], "certificate": path, "key": path, "bind-ssl": "127.0.0.1:PORT"}``; a list value is a
    repeated key. ``options`` may hold ``certificate``/``key`` (the default certificate) and
    ``tls-handshake-timeout``.
    """

    def __init__(self, workdir: Path, vhosts=None, options=None, shared_tls: bool = True, **kwargs):
        super().__init__(workdir, vhosts=vhosts, options=options, **kwargs)
        self.shared_tls = shared_tls
        self.tls_port = free_port() if shared_tls else None

    def config_text(self) -> str:
        lines = ["[blastbeat]", f"bind = 127.0.0.1:{self.port}"]
        lines += [f"bind = {b}" for b in self.extra_binds]
        if self.shared_tls:
            lines.append(f"bind-ssl = 127.0.0.1:{self.tls_port}")
        lines.append(f"zmq = {self.endpoint}")
        lines += [f"{k} = {v}" for k, v in self.options.items()]
        for vhost, spec in self.vhosts.items():
            if not isinstance(spec, dict):
                spec = {"nodes": spec}
            lines += ["", f"[blastbeat:{vhost}]"] + [f"node = {n}" for n in spec.get("nodes", [])]
            if spec.get("default"):
                lines.append("default = true")
            for key, value in spec.items():
                if key in ("nodes", "default"):
                    continue
                for v in (value if isinstance(value, (list, tuple)) else [value]):
                    lines.append(f"{key} = {v}")
        return "\n".join(lines) + "\n"

    def tls_ports(self) -> list[int]:
        ports = [self.tls_port] if self.shared_tls else []
        for spec in self.vhosts.values():
            if isinstance(spec, dict) and "bind-ssl" in spec:
                values = spec["bind-ssl"] if isinstance(spec["bind-ssl"], (list, tuple)) else [spec["bind-ssl"]]
                ports += [int(str(v).rsplit(":", 1)[1]) for v in values]
        return ports

    def start(self, timeout: float = 10.0) -> "TLSGateway":
        super().start(timeout)
        deadline = time.monotonic() + timeout
        for port in self.tls_ports():
            while not port_accepts(port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"TLS port {port} not accepting\n{self.logs()}")
                time.sleep(0.05)
        return self

    def run_to_exit(self, timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Run the gateway expecting it to exit by itself (startup failure); never left running."""
        self.config_path.write_text(self.config_text())
        try:
            proc = subprocess.run([helpers.blastbeat_bin(), str(self.config_path)], capture_output=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.workdir)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"gateway kept running for {timeout}s instead of failing at startup") from e
        self.stdout_path.write_bytes(proc.stdout)
        self.stderr_path.write_bytes(proc.stderr)
        return proc

    def check(self, timeout: float = 10.0) -> subprocess.CompletedProcess:
        self.config_path.write_text(self.config_text())
        return subprocess.run([helpers.blastbeat_bin(), "--check", str(self.config_path)], capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.workdir)

    def wait_log(self, pattern: str, timeout: float = 5.0, after: int = 0) -> str:
        """Wait until stderr (from character offset ``after``) has a line matching ``pattern``; return it."""
        rx = re.compile(pattern)

        def find():
            text = self.stderr()[after:]
            for line in text.splitlines():
                if rx.search(line):
                    return line
            return None

        try:
            return helpers.wait_until(find, timeout, interval=0.05, what=f"log line /{pattern}/")
        except TimeoutError as e:
            raise AssertionError(f"no stderr line matching /{pattern}/ within {timeout}s\n{self.logs()}") from e


# --------------------------------------------------------------------------------------------------------------
# Clients


def tls_context(cafile: Path | None, alpn: list[str] | None = None, minimum: ssl.TLSVersion | None = None,
                maximum: ssl.TLSVersion | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(cafile))
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def tls_socket(port: int, server_name: str | None, ctx: ssl.SSLContext, timeout: float = 10.0,
               session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    """A completed TLS handshake to 127.0.0.1:port with SNI ``server_name`` (None: no SNI)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_name, session=session)
    except BaseException:
        raw.close()
        raise


def subject_cn(cert: dict) -> str | None:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def san_dns(cert: dict) -> list[str]:
    return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def peer_certificate(port: int, server_name: str | None, cafile: Path, **kw) -> dict:
    """The certificate the gateway serves for ``server_name`` (verified against the CA, hostname not checked)."""
    ctx = tls_context(cafile, check_hostname=False, **kw)
    with tls_socket(port, server_name, ctx) as s:
        return s.getpeercert()


class TLSConn(RawConn):
    """``helpers.RawConn`` over TLS: the strict HTTP reader on a verified TLS connection."""

    def __init__(self, port: int, server_name: str | None, ctx: ssl.SSLContext, timeout: float = 10.0,
                 session: ssl.SSLSession | None = None):
        self.sock = tls_socket(port, server_name, ctx, timeout, session)
        self.timeout = timeout
        self.buf = bytearray()


def s_client(port: int, *args: str, server_name: str | None = "localhost", input: bytes = b"",
             timeout: float = 10.0) -> subprocess.CompletedProcess:
    """``openssl s_client -connect 127.0.0.1:port [-servername NAME] ARGS``; text output (stdout + stderr)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    if server_name is not None:
        cmd += ["-servername", server_name]
    else:
        cmd += ["-noservername"]
    cmd += list(args)
    proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=openssl_env())
    proc.text = proc.stdout.decode("latin-1") + "\n" + proc.stderr.decode("latin-1")  # type: ignore[attr-defined]
    return proc


def s_client_exchange(port: int, *args: str, request: bytes, until: bytes, server_name: str | None = "localhost",
                      timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run ``openssl s_client``, send ``request``, read its output until ``until`` appears, then close its stdin so
    that it ends the session itself (close_notify) and exits. ``.text`` holds stdout + stderr; ``.complete`` tells
    whether ``until`` was seen. The exchange does not depend on the gateway closing the connection."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    cmd += ["-servername", server_name] if server_name is not None else ["-noservername"]
    cmd += list(args)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=openssl_env())
    out = bytearray()
    seen = threading.Event()

    def reader():
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out.extend(chunk)
            if until in out:
                seen.set()
        seen.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        proc.stdin.write(request)
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    seen.wait(timeout)
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    thread.join(5)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    result = subprocess.CompletedProcess(cmd, proc.returncode, bytes(out), err)
    result.text = bytes(out).decode("latin-1") + "\n" + err.decode("latin-1")  # type: ignore[attr-defined]
    result.complete = until in out  # type: ignore[attr-defined]
    return result


def served_certificate_text(port: int, server_name: str | None, cafile: Path) -> str:
    """``openssl x509 -text`` of the leaf that ``s_client -servername NAME -showcerts`` received."""
    proc = s_client(port, "-showcerts", "-CAfile", str(cafile), server_name=server_name)
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", proc.text, re.S)
    assert pems, f"s_client showed no certificate:\n{proc.text}"
    return run_openssl("x509", "-noout", "-subject", "-serial", "-ext", "subjectAltName",
                       input=pems[0].encode()).stdout.decode()


def curl_https(port: int, host: str, path: str = "/", *args: str, cafile: Path | None = None,
               timeout: float = 20.0) -> subprocess.CompletedProcess:
    """curl https://HOST:PORT/PATH with HOST resolved to 127.0.0.1; -D - puts the head on stdout."""
    extra = ["--cacert", str(cafile)] if cafile is not None else []
    return helpers.curl("--resolve", f"{host}:{port}:127.0.0.1", *extra, "-D", "-", f"https://{host}:{port}{path}",
                        *args, timeout=timeout)


def client_hello(server_name: str = "localhost") -> bytes:
    """The bytes of a real TLS ClientHello (taken from Python's ssl via memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


# --------------------------------------------------------------------------------------------------------------
# Backends


class WebSocketEchoHandler:
    """Backend handler for WebSocket sessions: records each upgrade's env and echoes ``websocket`` messages."""

    def __init__(self):
        self.envs: dict[bytes, dict[str, str]] = {}
        self.messages: list[tuple[bytes, bytes, bytes]] = []
        self.ended: list[bytes] = []

    def __call__(self, sid: bytes, mtype: bytes, body: bytes, send) -> None:
        if mtype == b"uwsgi":
            self.envs[sid] = decode_env(body)
        elif mtype in (b"websocket", b"websocket-binary"):
            self.messages.append((sid, mtype, body))
            send(sid, mtype, body)
        elif mtype == b"end":
            self.ended.append(sid)


def cleanup_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# Fixtures (import them into a test module: ``from tls_helpers import pki, make_tls_gateway, cert_dir``)


class StandardPKI(PKI):
    """The CA plus the certificates most tests share (read-only: tests that rewrite files use ``cert_dir``)."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.localhost = self.issue("localhost", "localhost", ("localhost",))
        self.a = self.issue("a", "a.test", ("a.test", "www.a.test"))
        self.b = self.issue("b", "b.test", ("b.test",))
        self.c = self.issue("c", "c.test", ("c.test",))
        self.wildcard = self.issue("wildcard", "*.example.test", ("*.example.test",))
        self.default = self.issue("default", "default.test", ("default.test",))


@pytest.fixture(scope="session")
def pki():
    directory = world_readable_dir("blastbeat-pki-")
    try:
        yield StandardPKI(directory)
    finally:
        cleanup_dir(directory)


@pytest.fixture
def cert_dir():
    """A world-readable scratch directory for certificate files a test rewrites (removed afterwards)."""
    directory = world_readable_dir("blastbeat-certs-")
    try:
        yield directory
    finally:
        cleanup_dir(directory)


@pytest.fixture
def make_tls_gateway(make_gateway, tmp_path):
    """Like conftest's ``make_gateway`` but builds a ``TLSGateway``; same teardown (SIGTERM, exit status 0).

    List it before ``make_backend`` in a test's arguments so that backends stop first.
    """
    from conftest import finish_gateways

    gateways: list[TLSGateway] = []

    def factory(vhosts=None, options=None, shared_tls: bool = True, start: bool = True, **kwargs) -> TLSGateway:
        gw = TLSGateway(tmp_path / f"tls{len(gateways)}", vhosts=vhosts, options=options, shared_tls=shared_tls,
                        name=f"tlsgateway{len(gateways)}", **kwargs)
        gateways.append(gw)
        if start:
            gw.start()
        return gw

    yield factory
    problems = finish_gateways(gateways)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
