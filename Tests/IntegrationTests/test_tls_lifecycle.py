"""HTTPS (issue #3), the connection and process lifecycle: plain HTTP on the TLS port, stalled handshakes and
tls-handshake-timeout, the idle close, certificate problems at startup, and certificate reload on SIGHUP (also
with root-only keys, read by the privileged parent)."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import ssl
import time

import pytest

from helpers import HTTPHandler, RawConn, curl_fetch, hello_app, http_request, port_accepts, request_bytes
from tls_helpers import (  # noqa: F401 - fixtures
    TLSConn,
    cert_dir,
    client_hello,
    curl_https,
    make_tls_gateway,
    peer_certificate,
    pki,
    replace_file,
    subject_cn,
    tls_context,
)


NOBODY = pwd.getpwnam("nobody").pw_uid


def vhost(nodes, pair=None, **keys):
    spec = {"nodes": list(nodes), **keys}
    if pair is not None:
        spec["certificate"], spec["key"] = str(pair.cert), str(pair.key)
    return spec


def https_get(port: int, ctx: ssl.SSLContext, host: str = "localhost", sni: str | None = "localhost",
              path: str = "/") -> int:
    """One keep-alive request on a fresh TLS connection; the status (the client closes)."""
    with TLSConn(port, sni, ctx, timeout=5) as c:
        c.send(request_bytes("GET", path, host=host))
        return c.read_response().status


@pytest.fixture
def tls_gw(make_tls_gateway, make_backend, pki):
    gw = make_tls_gateway(vhosts={"localhost": vhost(["L"], pki.localhost)},
                          options={"tls-handshake-timeout": "1", "keepalive-timeout": "5"})
    make_backend(gw, "L", HTTPHandler(hello_app(b"hello over tls")))
    return gw


# --------------------------------------------------------------------------------------------------------------
# Plain HTTP on the TLS port


def test_plain_http_on_tls_port_gets_plain_text_400_then_close(tls_gw, pki):
    with RawConn(tls_gw.tls_port, timeout=5) as c:
        c.send(request_bytes("GET", "/", host="localhost"))
        r = c.read_response()
        assert r.status_line == "HTTP/1.1 400 Bad Request", r.raw[:300]
        assert r.has_token("Connection", "close")
        assert b"https" in r.body.lower(), r.body
        assert c.is_closed_by_peer(3)
    # A POST with a body the gateway never reads: still the 400, not a reset that destroys it.
    with RawConn(tls_gw.tls_port, timeout=5) as c:
        c.send(request_bytes("POST", "/upload", host="localhost", headers=[("Content-Length", "100000")],
                             body=b"x" * 100000))
        r = c.read_response()
        assert r.status == 400
    # curl speaking http:// to the TLS port sees the same answer.
    res = curl_fetch(tls_gw.tls_port, "/", host="localhost")
    assert res.status == 400, (res.heads, res.stderr)
    # And the gateway keeps serving both kinds of client.
    assert https_get(tls_gw.tls_port, tls_context(pki.ca_cert)) == 200
    assert http_request(tls_gw.port, host="localhost").status == 200


# --------------------------------------------------------------------------------------------------------------
# Stalled handshakes


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[float, bytes, str]:
    """Read until EOF or reset; (seconds waited, bytes received, how it ended). Never longer than ``timeout``."""
    started = time.monotonic()
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - started, data, "reset"
        if not chunk:
            return time.monotonic() - started, data, "eof"
        data += chunk
    return time.monotonic() - started, data, "still open"


@pytest.mark.slow
@pytest.mark.parametrize("stall", ["nothing", "partial ClientHello", "ClientHello, no Finished"])
def test_stalled_handshake_closed_after_tls_handshake_timeout(tls_gw, pki, stall):
    hello = client_hello("localhost")
    sock = socket.create_connection(("127.0.0.1", tls_gw.tls_port), timeout=5)
    try:
        started = time.monotonic()
        if stall == "partial ClientHello":
            sock.sendall(hello[:len(hello) // 2])
        elif stall == "ClientHello, no Finished":
            sock.sendall(hello)
        # While this client stalls, others are served at once.
        t0 = time.monotonic()
        assert https_get(tls_gw.tls_port, tls_context(pki.ca_cert)) == 200
        assert time.monotonic() - t0 < 0.8
        _, data, how = read_until_closed(sock, 5)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert how in ("eof", "reset"), f"connection still open {elapsed:.1f}s after connecting (timeout is 1 s)"
    assert 0.8 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s, expected about 1 s (tls-handshake-timeout)"
    if stall == "ClientHello, no Finished":
        assert data[:1] == b"\x16", data[:20]  # the ServerHello flight came before the cut
    else:
        assert data == b"" or data[:1] == b"\x15", data[:20]  # nothing, or an alert
    assert https_get(tls_gw.tls_port, tls_context(pki.ca_cert)) == 200
    assert http_request(tls_gw.port, host="localhost").status == 200


def test_handshake_timeout_does_not_limit_established_connections(tls_gw, pki):
    """The 1 s handshake deadline ends with the handshake: a keep-alive connection lives past it."""
    with TLSConn(tls_gw.tls_port, "localhost", tls_context(pki.ca_cert), timeout=5) as c:
        time.sleep(1.6)
        c.send(request_bytes("GET", "/", host="localhost"))
        assert c.read_response().status == 200
        time.sleep(1.6)
        c.send(request_bytes("GET", "/", host="localhost"))
        assert c.read_response().status == 200


@pytest.mark.slow
def test_idle_keepalive_close_over_tls_sends_close_notify(make_tls_gateway, make_backend, pki):
    """When the gateway closes an idle TLS connection (keepalive-timeout) it ends the TLS session properly:
    close_notify, so that clients can tell it from a truncation (OpenSSL 3 reports "unexpected eof" otherwise)."""
    gw = make_tls_gateway(vhosts={"localhost": vhost(["L"], pki.localhost)}, options={"keepalive-timeout": "1"})
    make_backend(gw, "L", HTTPHandler(hello_app(b"hello over tls")))
    ctx = tls_context(pki.ca_cert)
    raw = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
        s.sendall(request_bytes("GET", "/", host="localhost"))
        data = b""
        started = time.monotonic()
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break  # close_notify received
                data += chunk
        except ssl.SSLEOFError as e:
            pytest.fail(f"the gateway closed the idle TLS connection without close_notify "
                        f"({time.monotonic() - started:.1f}s after the request): {e}")
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"hello over tls")
        assert time.monotonic() - started < 4


# --------------------------------------------------------------------------------------------------------------
# Certificate problems at startup


def bad_pem(path, text: bytes):
    path.write_bytes(text)
    path.chmod(0o644)
    return path


STARTUP_CASES = ["missing certificate", "missing key", "key does not match", "corrupt certificate PEM",
                 "no PEM in certificate", "corrupt key PEM", "vhost certificate missing", "key is a directory",
                 "garbage key", "vhost key does not match", "unreadable key"]


def line_naming(config_text: str, key: str, path: str) -> int:
    """The 1-based line of ``key = path`` in the configuration."""
    lines = config_text.splitlines()
    matches = [i + 1 for i, line in enumerate(lines) if line == f"{key} = {path}"]
    assert len(matches) == 1, (key, path, config_text)
    return matches[0]


@pytest.mark.parametrize("case", STARTUP_CASES)
def test_certificate_problem_fails_check_and_startup_at_its_own_line(make_tls_gateway, pki, cert_dir, case):
    """``--check`` loads every TLS file as startup does (issue #16: it answered OK for a missing key and a key of
    another certificate), and both report the same error at the line of the key that names the file: the
    ``certificate`` line for a certificate that cannot be read or parsed, the ``key`` line for a key that cannot
    be read or parsed or does not match (the start named the ``bind-ssl`` line)."""
    good = pki.localhost
    cert, key = str(good.cert), str(good.key)
    vhosts = {"localhost": vhost(["L"])}
    blamed = "key"
    if case == "missing certificate":
        cert = named = str(cert_dir / "missing-cert.pem")
        reasons, blamed = ["No such file or directory"], "certificate"
    elif case == "missing key":
        key = named = str(cert_dir / "missing-key.pem")
        reasons = ["No such file or directory"]
    elif case == "key does not match":
        key = named = str(pki.a.key)
        reasons = ["does not match", cert]
    elif case == "corrupt certificate PEM":
        body = good.cert.read_text().splitlines()
        body[3] = "!!!! this is not base64 !!!!"
        cert = named = str(bad_pem(cert_dir / "corrupt.pem", ("\n".join(body) + "\n").encode()))
        reasons, blamed = ["cannot parse"], "certificate"
    elif case == "no PEM in certificate":
        cert = named = str(bad_pem(cert_dir / "notpem.pem", b"just some text, no PEM here\n"))
        reasons, blamed = ["no certificate found"], "certificate"
    elif case == "corrupt key PEM":
        key = named = str(bad_pem(cert_dir / "corrupt.key",
                                  b"-----BEGIN PRIVATE KEY-----\nAAAAnotakey\n-----END PRIVATE KEY-----\n"))
        reasons = ["cannot parse"]
    elif case == "key is a directory":
        # Root reads any file whatever its mode: a directory is a path nobody can read as a key.
        key = named = str(cert_dir)
        reasons = ["Is a directory"]
    elif case == "garbage key":
        key = named = str(bad_pem(cert_dir / "garbage.key", bytes(range(256)) * 4))
        reasons = ["no private key found"]
    elif case == "vhost key does not match":
        vhosts = {"localhost": vhost(["L"], certificate=str(pki.a.cert), key=str(pki.b.key))}
        named = str(pki.b.key)
        reasons = ["does not match", str(pki.a.cert)]
    elif case == "unreadable key":
        if os.geteuid() == 0:
            pytest.skip("root reads a mode-000 file; 'key is a directory' covers an unreadable key as root")
        key = named = str(bad_pem(cert_dir / "secret.key", good.key.read_bytes()))
        os.chmod(named, 0)
        reasons = ["Permission denied"]
    else:
        vhosts = {"localhost": vhost(["L"], certificate=str(cert_dir / "vhost-missing.pem"), key=str(good.key))}
        named = str(cert_dir / "vhost-missing.pem")
        reasons, blamed = ["No such file or directory"], "certificate"
    gw = make_tls_gateway(vhosts=vhosts, options={"certificate": cert, "key": key}, start=False)
    line = line_naming(gw.config_text(), blamed, named)
    check = gw.check()
    check_err = check.stderr.decode(errors="replace")
    assert check.returncode == 1 and check.stdout == b"", f"--check passed a broken setup ({case}):\n{check_err}"
    proc = gw.run_to_exit()
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode != 0, f"gateway started with a broken certificate setup ({case})\n{err}"
    prefix = f"blastbeat: {gw.config_path}:{line}: {blamed}: "
    for text in (check_err, err):
        assert text.startswith(prefix), f"expected {prefix!r}...:\n{text}"
        assert named in text, f"stderr does not name {named}:\n{text}"
        for reason in reasons:
            assert reason in text, f"stderr lacks {reason!r}:\n{text}"
    assert check_err == err, "--check and the start report the same problem"
    assert not port_accepts(gw.port) and not port_accepts(gw.tls_port)


def test_check_passes_good_certificates_and_names_them_on_a_vhost_line(make_tls_gateway, pki):
    """The same files that start: --check answers OK (exit 0) for a vhost's own pair and the default pair."""
    gw = make_tls_gateway(vhosts={"localhost": vhost(["L"]), "a.test": vhost(["L"], pki.a)},
                          options={"certificate": str(pki.localhost.cert), "key": str(pki.localhost.key)},
                          start=False)
    check = gw.check()
    assert check.returncode == 0, check.stderr.decode(errors="replace")
    assert b": OK: " in check.stdout


# --------------------------------------------------------------------------------------------------------------
# SIGHUP reload


@pytest.fixture
def reload_setup(make_tls_gateway, make_backend, cert_dir, pki):
    """A gateway whose default certificate (localhost) and a.test certificate live in ``cert_dir``."""
    local = pki.issue("live-localhost", "localhost", ("localhost",), directory=cert_dir, organization="First")
    a = pki.issue("live-a", "a.test", ("a.test",), directory=cert_dir, organization="First")
    gw = make_tls_gateway(vhosts={"localhost": vhost(["L"]), "a.test": vhost(["L"], a)},
                          options={"certificate": str(local.cert), "key": str(local.key)})
    make_backend(gw, "L", HTTPHandler(hello_app(b"hello over tls")))
    return gw, local, a


def serial_of(port, name, cafile) -> int:
    return int(peer_certificate(port, name, cafile)["serialNumber"], 16)


def organization_of(cert: dict) -> str | None:
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "organizationName":
                return v
    return None


def hup(gw, expect: str, timeout: float = 5.0) -> str:
    offset = len(gw.stderr())
    gw.proc.send_signal(signal.SIGHUP)
    return gw.wait_log(expect, timeout, after=offset)


def test_sighup_reloads_replaced_certificates(reload_setup, pki, cert_dir):
    gw, local, a = reload_setup
    ctx = tls_context(pki.ca_cert)
    assert serial_of(gw.tls_port, "localhost", pki.ca_cert) == local.serial
    assert serial_of(gw.tls_port, "a.test", pki.ca_cert) == a.serial
    # A connection made before the reload.
    before = TLSConn(gw.tls_port, "a.test", ctx, timeout=5)
    try:
        before.send(request_bytes("GET", "/", host="a.test"))
        assert before.read_response().status == 200
        # Renewal: new certificates (new serial, new subject) written over the same paths.
        new_local = pki.issue("next-localhost", "localhost", ("localhost",), directory=cert_dir, organization="Second")
        new_a = pki.issue("next-a", "a.test", ("a.test",), directory=cert_dir, organization="Second")
        for old, new in ((local, new_local), (a, new_a)):
            replace_file(old.cert, new.cert.read_bytes())
            replace_file(old.key, new.key.read_bytes())
        hup(gw, r"reloaded .*certificate")
        assert gw.running()
        for name, new in (("localhost", new_local), ("a.test", new_a), ("unknown.test", new_local)):
            cert = peer_certificate(gw.tls_port, name, pki.ca_cert)
            assert int(cert["serialNumber"], 16) == new.serial, (name, cert)
            assert organization_of(cert) == "Second" and subject_cn(cert) == new.common_name, cert
        proc = curl_https(gw.tls_port, "a.test", "/", cafile=pki.ca_cert)
        assert proc.returncode == 0 and proc.stdout.endswith(b"hello over tls"), proc.stderr
        # The connection from before the reload keeps working (with the certificate it was given).
        assert int(before.sock.getpeercert()["serialNumber"], 16) == a.serial
        before.send(request_bytes("GET", "/again", host="a.test"))
        assert before.read_response().status == 200
    finally:
        before.close()
    assert https_get(gw.tls_port, ctx, host="a.test", sni="a.test") == 200


@pytest.mark.parametrize("breakage", ["garbage certificate", "key of another certificate", "certificate deleted"])
def test_sighup_with_broken_files_keeps_the_old_certificates(reload_setup, pki, cert_dir, breakage):
    gw, local, a = reload_setup
    ctx = tls_context(pki.ca_cert)
    if breakage == "garbage certificate":
        replace_file(a.cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        named = str(a.cert)
    elif breakage == "key of another certificate":
        # Half a renewal: the new certificate is in place, its key is not.
        new_a = pki.issue("next-a", "a.test", ("a.test",), directory=cert_dir, organization="Second")
        replace_file(a.cert, new_a.cert.read_bytes())
        named = str(a.key)
    else:
        a.cert.unlink()
        named = str(a.cert)
    line = hup(gw, r"reload.*fail")
    assert named in line, line
    assert gw.running()
    # Old certificates still served, to new connections too; requests still answered.
    for name, pair in (("a.test", a), ("localhost", local)):
        cert = peer_certificate(gw.tls_port, name, pki.ca_cert)
        assert int(cert["serialNumber"], 16) == pair.serial and organization_of(cert) == "First", (name, cert)
    assert https_get(gw.tls_port, ctx, host="a.test", sni="a.test") == 200
    proc = curl_https(gw.tls_port, "a.test", "/", cafile=pki.ca_cert)
    assert proc.returncode == 0 and proc.stdout.endswith(b"hello over tls"), proc.stderr
    # Fixing the files and sending SIGHUP again picks up the new ones.
    fixed = pki.issue("fixed-a", "a.test", ("a.test",), directory=cert_dir, organization="Fixed")
    replace_file(a.cert, fixed.cert.read_bytes())
    replace_file(a.key, fixed.key.read_bytes())
    hup(gw, r"reloaded .*certificate")
    cert = peer_certificate(gw.tls_port, "a.test", pki.ca_cert)
    assert int(cert["serialNumber"], 16) == fixed.serial and organization_of(cert) == "Fixed", cert


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the gateway must run as nobody with root-only key files")
def test_sighup_reads_root_only_keys_through_the_privileged_parent(reload_setup, pki, cert_dir):
    """The usual setup: key files mode 600, owned by root, while the gateway serves as nobody (issue #16: the
    reload failed with Permission denied). The privileged parent reads them for the reload; the serving
    process itself still cannot."""
    gw, local, a = reload_setup
    serving = gw.pid
    assert serving != gw.proc.pid, "started as root, the gateway serves from a child of the privileged parent"
    with open(f"/proc/{serving}/status") as f:
        assert next(line for line in f if line.startswith("Uid:")).split()[1] == str(NOBODY)
    new_a = pki.issue("rootonly-a", "a.test", ("a.test",), directory=cert_dir, organization="Root only")
    replace_file(a.cert, new_a.cert.read_bytes())
    replace_file(a.key, new_a.key.read_bytes())
    os.chmod(a.key, 0o600)
    os.chmod(local.key, 0o600)
    hup(gw, r"reloaded .*certificate")
    cert = peer_certificate(gw.tls_port, "a.test", pki.ca_cert)
    assert int(cert["serialNumber"], 16) == new_a.serial and organization_of(cert) == "Root only", cert
    assert https_get(gw.tls_port, tls_context(pki.ca_cert), host="a.test", sni="a.test") == 200
    # SIGHUP sent to the serving process itself goes through the parent too.
    offset = len(gw.stderr())
    os.kill(serving, signal.SIGHUP)
    gw.wait_log(r"SIGHUP: reloaded .*no change", after=offset)
