"""`include = PATTERN` (README "Configuration"): one file per tenant in a directory, read at startup and by
--check; errors name the included file and its line."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from helpers import blastbeat_bin, hello_app, HTTPHandler, http_request

AS_ROOT = os.geteuid() == 0


def check(config) -> subprocess.CompletedProcess:
    return subprocess.run([blastbeat_bin(), "--check", str(config)], capture_output=True, timeout=10,
                          stdin=subprocess.DEVNULL)


def tenant_file(directory, name: str, node: str, extra: str = "") -> None:
    (directory / f"{name}.ini").write_text(f"; tenant {name}\n[blastbeat:{name}]\nnode = {node}\n{extra}")


def test_tenants_from_a_directory_are_served(make_gateway, make_backend):
    """Two tenants' files in sites.d/ (relative to the main file), both served by their own nodes; the main
    file's own vhost and the [blastbeat] keys after the include line still apply."""
    gw = make_gateway(vhosts={"localhost": ["MAIN"]}, options={"include": "sites.d/*.ini", "max-hops": "3"},
                      start=False)
    sites = gw.workdir / "sites.d"
    sites.mkdir()
    tenant_file(sites, "a.test", "ALPHA", "max-body-size = 1k\n")
    tenant_file(sites, "b.test", "BETA")
    (sites / "README").write_text("not matched by *.ini\n")
    gw.start()
    for node, text in (("ALPHA", b"from alpha"), ("BETA", b"from beta"), ("MAIN", b"from main")):
        make_backend(gw, node, HTTPHandler(hello_app(text)))
    assert http_request(gw.port, host="a.test").body == b"from alpha"
    assert http_request(gw.port, host="b.test").body == b"from beta"
    assert http_request(gw.port, host="localhost").body == b"from main"
    # a.test's own limit from its file: 413 before its node sees the body.
    big = http_request(gw.port, "POST", host="a.test", headers=[("Content-Length", "2048")], body=b"x" * 2048)
    assert big.status == 413
    assert http_request(gw.port, "POST", host="b.test", headers=[("Content-Length", "2048")],
                        body=b"x" * 2048).status == 200


def test_check_names_the_included_file_and_line(tmp_path):
    sites = tmp_path / "sites.d"
    sites.mkdir()
    tenant_file(sites, "a.test", "ALPHA")
    tenant_file(sites, "b.test", "BETA", "\nmax-in-flight = lots\n")
    main = tmp_path / "site.ini"
    main.write_text("[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\ninclude = sites.d/*.ini\n")
    proc = check(main)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.startswith(f"blastbeat: {main.parent}/sites.d/b.test.ini:5: max-in-flight: "), err
    # Fixed, the same files pass; the count covers both tenants.
    tenant_file(sites, "b.test", "BETA")
    proc = check(main)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"2 virtual host(s)" in proc.stdout


@pytest.mark.parametrize("case", ["missing file", "in a vhost section", "includes itself", "empty directory"])
def test_check_include_lines(tmp_path, case):
    main = tmp_path / "site.ini"
    head = "[blastbeat]\nbind = 127.0.0.1:8080\nzmq = tcp://127.0.0.1:5000\n"
    if case == "missing file":
        main.write_text(head + "include = tenants/gone.ini\n[blastbeat:localhost]\nnode = N\n")
        where, says = f"{main}:4: include: ", "gone.ini"
    elif case == "in a vhost section":
        main.write_text(head + "[blastbeat:localhost]\nnode = N\ninclude = x.ini\n")
        where, says = f"{main}:6: include: ", "include belongs in [blastbeat]"
    elif case == "includes itself":
        (tmp_path / "loop.ini").write_text("[blastbeat]\ninclude = loop.ini\n")
        main.write_text(head + "include = loop.ini\n[blastbeat:localhost]\nnode = N\n")
        where, says = f"{tmp_path}/loop.ini:2: include: ", "includes itself"
    else:
        (tmp_path / "sites.d").mkdir()
        main.write_text(head + "include = sites.d/*.ini\n[blastbeat:localhost]\nnode = N\n")
        where, says = None, None
    proc = check(main)
    err = proc.stderr.decode()
    if where is None:
        assert proc.returncode == 0, err
        return
    assert proc.returncode == 1 and err.startswith(f"blastbeat: {where}"), err
    assert says in err, err


def test_tls_key_errors_point_into_the_tenant_file(make_gateway, tmp_path):
    """A tenant file's certificate is checked like the main file's, and blamed at the tenant file's line."""
    gw = make_gateway(vhosts={"localhost": ["MAIN"]}, options={"include": "sites.d/*.ini"}, start=False)
    sites = gw.workdir / "sites.d"
    sites.mkdir()
    tenant_file(sites, "a.test", "ALPHA",
                f"bind-ssl = 127.0.0.1:{gw.port + 1}\ncertificate = {tmp_path}/none.pem\nkey = {tmp_path}/none.key\n")
    gw.config_path.write_text(gw.config_text())
    proc = check(gw.config_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.startswith(f"blastbeat: {gw.workdir}/sites.d/a.test.ini:5: certificate: "), err
    assert "none.pem" in err


@pytest.mark.skipif(not AS_ROOT, reason="needs root: the gateway drops to nobody after reading the configuration")
def test_root_only_tenant_files_are_read_before_the_privilege_drop(make_gateway, make_backend):
    """Operators keep tenant files root-only (mode 600 in a mode 700 directory); the gateway reads them as root
    and then serves as nobody."""
    gw = make_gateway(vhosts={"localhost": ["MAIN"]}, options={"include": "private/*.ini"}, start=False)
    private = gw.workdir / "private"
    private.mkdir(mode=0o700)
    tenant_file(private, "a.test", "ALPHA")
    os.chmod(private / "a.test.ini", 0o600)
    gw.start()
    make_backend(gw, "ALPHA", HTTPHandler(hello_app(b"private tenant")))
    assert http_request(gw.port, host="a.test").body == b"private tenant"
    status = open(f"/proc/{gw.pid}/status").read()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] == str(pwd.getpwnam("nobody").pw_uid), uid_line
