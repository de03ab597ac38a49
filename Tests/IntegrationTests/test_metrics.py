"""Metrics (issue #16): the admin listener's GET /metrics and GET /healthz (README "Metrics").

Known traffic goes through the gateway, /metrics is scraped and parsed with the Prometheus project's own
parser (``prometheus_client.parser.text_string_to_metric_families``), and every counter must match what the
test sent. One test runs a real ``prometheus`` server against the admin listener.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import (HTTPHandler, RawConn, Request, free_port, hello_app, http_request, request_bytes, respond,
                     response_head, rss_bytes, socket_inodes, wait_until)
from tls_helpers import TLSConn, cert_dir, make_tls_gateway, pki, replace_file, tls_context  # noqa: F401 - fixtures
from ws_helpers import OP_TEXT, RawWS, ws_echo_handler


# --------------------------------------------------------------------------------------------------------------
# helpers

def admin_options(port: int | None = None, **more) -> dict:
    return {"admin": f"127.0.0.1:{port or free_port()}", **more}


def admin_port(gw) -> int:
    return int(gw.options["admin"].rsplit(":", 1)[1])


def admin_get(gw, path: str = "/metrics", method: str = "GET", timeout: float = 5.0):
    """One request to the admin listener; a helpers.Response."""
    return http_request(admin_port(gw), method=method, target=path, host="admin", timeout=timeout)


class Scrape:
    """A parsed /metrics: ``value(name, **labels)`` for one sample, ``families`` by name."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for family in self.families.values():
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, f"no sample {name}{labels} in:\n" + "\n".join(
            line for line in self.text.splitlines() if line.startswith(name))
        return self.samples[key]

    def has(self, name: str, **labels) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.samples


def scrape(gw) -> Scrape:
    resp = admin_get(gw)
    assert resp.status == 200, resp.raw[:300]
    assert resp.header("Content-Type").startswith("text/plain; version=0.0.4"), resp.header("Content-Type")
    return Scrape(resp.body.decode())


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes in LISTEN state in /proc/net/tcp and tcp6)."""
    held = socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in held:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def get_from(port: int, host: str, target: str = "/", body: bytes = b"", method: str = "GET"):
    """One request on its own connection, closed by the client after the response; (request bytes, response)."""
    headers = [("Content-Length", str(len(body)))] if body else []
    data = request_bytes(method, target, host, headers, body)
    with RawConn(port) as c:
        c.send(data)
        resp = c.read_response(method)
    return data, resp


# --------------------------------------------------------------------------------------------------------------
# the counters against known traffic

def test_counters_match_the_traffic_sent(make_gateway, make_backend):
    """a.test answers 200 three times, 404 once and sends a broken head once (502), and refuses a body over its
    max-body-size (413); b.test answers 200 twice; c.test's only node never connects (503); a Host no vhost serves
    gets 404 (vhost=""); w.test carries one WebSocket. Every count, the bytes of b.test to the byte, the duration
    histogram, the node series and the gateway totals are checked against that."""
    gw = make_gateway(
        vhosts={"a.test": {"nodes": ["ALPHA"], "options": {"max-body-size": "1k"}}, "b.test": ["BETA"],
                "c.test": ["GHOST"], "w.test": ["WS"]},
        options=admin_options())

    def alpha_app(req: Request, send):
        path = req.path
        if path == "/missing":
            respond(send, req.sid, b"nope", status=404)
        elif path == "/broken":
            send(req.sid, b"headers", b"HTTP/1.1 2x0 Broken\r\n\r\n")
        else:
            respond(send, req.sid, b"alpha " + path.encode())

    make_backend(gw, "ALPHA", HTTPHandler(alpha_app))
    make_backend(gw, "BETA", HTTPHandler(hello_app(b"b" * 1000)))
    make_backend(gw, "WS", ws_echo_handler)

    for i in range(3):
        assert get_from(gw.port, "a.test", f"/ok{i}")[1].status == 200
    assert get_from(gw.port, "a.test", "/missing")[1].status == 404
    assert get_from(gw.port, "a.test", "/broken")[1].status == 502
    assert get_from(gw.port, "a.test", "/upload", body=b"x" * 2048, method="POST")[1].status == 413
    b_in = b_out = 0
    for i in range(2):
        sent, resp = get_from(gw.port, "b.test", f"/b{i}")
        assert resp.status == 200 and resp.body == b"b" * 1000
        b_in += len(sent)
        b_out += len(resp.raw)
    assert get_from(gw.port, "c.test")[1].status == 503
    nobody_sent, nobody_resp = get_from(gw.port, "nobody.test")
    assert nobody_resp.status == 404

    ws = RawWS(gw.port)
    ws.handshake(host="w.test")
    ws.send_text("hello")
    assert ws.recv_frame().payload == b"hello"
    w_in = len(ws.request(host="w.test"))
    wait_until(lambda: scrape(gw).value("blastbeat_connections_open") == 1, 5, what="only the WebSocket open")
    m = scrape(gw)
    assert m.value("blastbeat_vhost_websockets_open", vhost="w.test") == 1
    assert m.value("blastbeat_vhost_connections_open", vhost="w.test") == 1
    assert m.value("blastbeat_vhost_requests_in_flight", vhost="w.test") == 1
    assert m.value("blastbeat_node_requests_in_flight", node="WS") == 1
    ws.send_close(1000)
    ws.close()
    wait_until(lambda: scrape(gw).value("blastbeat_connections_open") == 0, 5, what="every connection closed")

    m = scrape(gw)
    responses = {(v, c): m.value("blastbeat_responses_total", vhost=v, code=c)
                 for v in ("a.test", "b.test", "c.test", "w.test", "") for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
    expected = {(v, c): 0 for (v, c) in responses}
    expected.update({("a.test", "2xx"): 3, ("a.test", "4xx"): 2, ("a.test", "5xx"): 1, ("b.test", "2xx"): 2,
                     ("c.test", "5xx"): 1, ("", "4xx"): 1, ("w.test", "1xx"): 1})
    assert responses == expected
    assert m.value("blastbeat_rejections_total", vhost="a.test", limit="max-body-size") == 1
    assert sum(v for (name, labels), v in m.samples.items() if name == "blastbeat_rejections_total") == 1

    # The duration histogram: one observation per response, cumulative buckets ending in +Inf = _count.
    family = m.families["blastbeat_request_duration_seconds"]
    assert family.type == "histogram"
    for vhost, count in (("a.test", 6), ("b.test", 2), ("c.test", 1), ("w.test", 1), ("", 1)):
        buckets = [(float(s.labels["le"]), s.value) for s in family.samples
                   if s.name.endswith("_bucket") and s.labels["vhost"] == vhost]
        assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1][0] == float("inf")
        values = [v for _, v in buckets]
        assert values == sorted(values) and values[-1] == count, (vhost, buckets)
        assert m.value("blastbeat_request_duration_seconds_count", vhost=vhost) == count
        assert 0 <= m.value("blastbeat_request_duration_seconds_sum", vhost=vhost) < 5 * count
    # Local requests take well under a second.
    assert m.value("blastbeat_request_duration_seconds_bucket", vhost="b.test", le="1") == 2

    # Bytes: b.test's to the byte (each connection carried one request and was closed by the client).
    assert m.value("blastbeat_received_bytes_total", vhost="b.test") == b_in
    assert m.value("blastbeat_sent_bytes_total", vhost="b.test") == b_out
    assert m.value("blastbeat_sent_bytes_total", vhost="a.test") > 0
    # The WebSocket's frames count for w.test, also those moved at the scrape while it was open; vhost=""
    # has the bytes of the request for nobody.test, exactly.
    assert m.value("blastbeat_received_bytes_total", vhost="w.test") == w_in + 11 + 8  # + "hello" and close frames
    assert m.value("blastbeat_received_bytes_total", vhost="") == len(nobody_sent)
    assert m.value("blastbeat_sent_bytes_total", vhost="") == len(nobody_resp.raw)

    # Nodes: ALPHA sent 4 valid response heads (the broken one is not an answer), GHOST never came.
    assert m.value("blastbeat_node_responses_total", node="ALPHA") == 4
    assert m.value("blastbeat_node_responses_total", node="BETA") == 2
    assert m.value("blastbeat_node_instances_connected", node="ALPHA") == 1
    assert m.value("blastbeat_node_instances_connected", node="GHOST") == 0
    assert m.value("blastbeat_node_deaths_total", node="GHOST") >= 1
    assert m.value("blastbeat_node_deaths_total", node="ALPHA") == 0
    assert m.value("blastbeat_node_requests_in_flight", node="WS") == 0
    assert m.value("blastbeat_vhost_websockets_open", vhost="w.test") == 0

    # The gateway: 11 client connections (3 + 1 + 1 + 1 + 2 + 1 + 1 + the WebSocket), one request head each, and
    # the fixture's readiness probe.
    assert m.value("blastbeat_connections_accepted_total") == 12
    assert m.value("blastbeat_requests_total") == 11
    assert m.value("blastbeat_backend_errors_total") == 1
    assert m.value("blastbeat_buffered_bytes", held_for="clients") == 0
    rss = m.value("blastbeat_resident_memory_bytes")
    # The sum over the serving processes (README "Worker processes": /metrics covers the whole gateway).
    measured = sum(rss_bytes(pid) for pid in gw.worker_pids() or [gw.pid])
    assert 0.5 < rss / measured < 2, (rss, measured)


def test_node_retries_and_ping_round_trip(make_gateway, make_backend):
    """A node that answers `retry`: its retries are counted; a quiet node is pinged (ping-freq 0.5 s) and its
    last round trip is a small positive number."""
    gw = make_gateway(vhosts={"a.test": ["ONE", "TWO"]}, options=admin_options())
    make_backend(gw, "ONE", lambda sid, mtype, body, send: send(sid, b"retry", b"") if mtype == b"uwsgi" else None)
    make_backend(gw, "TWO", HTTPHandler(hello_app(b"two")))
    retried = 0
    for i in range(6):
        assert get_from(gw.port, "a.test", f"/{i}")[1].status == 200
    m = scrape(gw)
    retried = m.value("blastbeat_node_retries_total", node="ONE")
    # Affinity to the node that answered last: ONE gets at least the first request, each one it gets is retried.
    assert retried >= 1
    assert m.value("blastbeat_node_retries_total", node="TWO") == 0
    assert m.value("blastbeat_node_responses_total", node="TWO") == 6
    rtt = wait_until(lambda: scrape(gw).samples.get(("blastbeat_node_ping_rtt_seconds", (("node", "ONE"),))), 5,
                     what="a ping round trip")
    assert 0 < rtt < 0.5, rtt


def test_limits_are_counted_per_vhost(make_gateway, make_backend):
    """max-in-flight (503), backend-timeout (504) and header-timeout (408, before any vhost) each count once, in
    the right vhost and under their own key."""
    gw = make_gateway(
        vhosts={"slow.test": {"nodes": ["SLOW"], "options": {"max-in-flight": "1", "backend-timeout": "1"}}},
        options=admin_options(**{"header-timeout": "1"}))
    make_backend(gw, "SLOW", lambda sid, mtype, body, send: None)
    with RawConn(gw.port) as held:
        held.send(request_bytes("GET", "/held", "slow.test"))
        time.sleep(0.3)
        assert get_from(gw.port, "slow.test", "/over")[1].status == 503
        assert held.read_response().status == 504
    with RawConn(gw.port) as partial:
        partial.send(b"GET / HTTP/1.1\r\n")
        assert partial.read_response().status == 408
    m = scrape(gw)
    assert m.value("blastbeat_rejections_total", vhost="slow.test", limit="max-in-flight") == 1
    assert m.value("blastbeat_rejections_total", vhost="slow.test", limit="backend-timeout") == 1
    assert m.value("blastbeat_rejections_total", vhost="", limit="header-timeout") == 1
    assert m.value("blastbeat_responses_total", vhost="slow.test", code="5xx") == 2
    assert m.value("blastbeat_responses_total", vhost="", code="4xx") == 1
    assert m.value("blastbeat_max_in_flight_refusals_total") == 1


def test_limits_on_http2_streams_are_counted_in_the_streams_vhost(make_gateway, make_backend):
    """The same max-in-flight 503 and backend-timeout 504 over HTTP/2 count in the stream's vhost (an HTTP/2
    connection's streams may each go to another vhost; they once counted in none)."""
    from h2_helpers import H2Conn
    gw = make_gateway(
        vhosts={"slow.test": {"nodes": ["SLOW"], "options": {"max-in-flight": "1", "backend-timeout": "1"}}},
        options=admin_options())
    make_backend(gw, "SLOW", lambda sid, mtype, body, send: None)
    with H2Conn(gw.port) as c:
        held = c.request("GET", "/held", "slow.test")
        time.sleep(0.3)
        assert c.get("/over", "slow.test").status == 503
        assert c.response(held, timeout=5).status == 504
    m = scrape(gw)
    assert m.value("blastbeat_rejections_total", vhost="slow.test", limit="max-in-flight") == 1
    assert m.value("blastbeat_rejections_total", vhost="slow.test", limit="backend-timeout") == 1
    assert m.value("blastbeat_responses_total", vhost="slow.test", code="5xx") == 2


def test_tls_handshakes_and_reloads(make_tls_gateway, make_backend, pki, cert_dir):
    """One TLS client completes its handshake, one sends garbage: 1 handshake, 1 more failure (the fixture's
    readiness probe of the TLS port, which never starts a handshake, is one already). SIGHUP reloads the
    certificates: counted, without failure; with the key file broken, a reload and a failure."""
    port = free_port()
    cert, key = cert_dir / "localhost.pem", cert_dir / "localhost.key"
    replace_file(cert, pki.localhost.cert.read_bytes())
    replace_file(key, pki.localhost.key.read_bytes())
    gw = make_tls_gateway(vhosts={"localhost": {"nodes": ["L"], "certificate": str(cert), "key": str(key)}},
                          options={"admin": f"127.0.0.1:{port}"})
    make_backend(gw, "L", HTTPHandler(hello_app(b"tls")))
    with TLSConn(gw.tls_port, "localhost", tls_context(pki.ca_cert)) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        assert c.read_response().body == b"tls"
        m = scrape(gw)
        assert m.value("blastbeat_tls_handshakes_total") == 1  # counted while still open
        failures = m.value("blastbeat_tls_handshake_failures_total")
        assert failures <= 1
    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\x05garbage")
        s.settimeout(5)
        while s.recv(4096):
            pass
    gw.proc.send_signal(signal.SIGHUP)
    m = wait_until(lambda: (lambda m: m if m.value("blastbeat_config_reloads_total") == 1 else None)(scrape(gw)), 5,
                   what="the reload counted")
    wait_until(lambda: scrape(gw).value("blastbeat_connections_open") == 0, 5, what="connections closed")
    m = scrape(gw)
    assert m.value("blastbeat_tls_handshakes_total") == 1
    assert m.value("blastbeat_tls_handshake_failures_total") == 2
    assert m.value("blastbeat_config_reload_failures_total") == 0
    replace_file(key, b"not a key\n")
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: scrape(gw).value("blastbeat_config_reloads_total") == 2, 5, what="the second reload")
    m = scrape(gw)
    assert m.value("blastbeat_config_reload_failures_total") == 1
    # Reloads keep the counts.
    assert m.value("blastbeat_responses_total", vhost="localhost", code="2xx") == 1
    assert m.value("blastbeat_tls_handshakes_total") == 1


# --------------------------------------------------------------------------------------------------------------
# the format and the admin listener itself

def test_exposition_format(make_gateway, make_backend):
    """Every family has HELP and TYPE, a blastbeat_ name, counters end in _total, and the parser reads it all;
    a node name with a quote and a backslash comes back exactly (escaped in the text); HEAD gives the head only."""
    odd = 'odd"node\\x'
    gw = make_gateway(vhosts={"localhost": ["NODE1", odd]}, options=admin_options())
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    http_request(gw.port)
    resp = admin_get(gw)
    text = resp.body.decode()
    assert resp.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert resp.header("Content-Length") == str(len(resp.body))
    helps = re.findall(r"^# HELP (\S+) ", text, re.M)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert helps and set(helps) == set(types) and len(helps) == len(set(helps))
    for name, kind in types.items():
        assert name.startswith("blastbeat_"), name
        assert (kind == "counter") == name.endswith("_total"), (name, kind)
        assert kind in ("counter", "gauge", "histogram")
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.match(r'^[a-z_]+(\{[a-z_]+="([^"\\]|\\[\\"n])*"(,[a-z_]+="([^"\\]|\\[\\"n])*")*\})? \S+$',
                            line), line
    families = list(text_string_to_metric_families(text))
    assert len(families) == len(types)
    assert 'node="odd\\"node\\\\x"' in text
    assert Scrape(text).value("blastbeat_node_instances_connected", node=odd) == 0
    head = admin_get(gw, method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.header("Content-Length")) > 1000


def test_healthz_404_405_and_bad_requests(make_gateway, make_backend):
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options=admin_options())
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    r = admin_get(gw, "/healthz")
    assert (r.status, r.body, r.header("Connection")) == (200, b"ok\n", "close")
    assert admin_get(gw, "/healthz?verbose=1").status == 200
    assert admin_get(gw, "/").status == 404
    assert admin_get(gw, "/metrics/x").status == 404
    r = admin_get(gw, "/metrics", method="POST")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    assert admin_get(gw, "/healthz", method="DELETE").status == 405
    with RawConn(admin_port(gw)) as c:
        c.send(b"garbage\r\n\r\n")
        assert c.read_response().status == 400
    with RawConn(admin_port(gw)) as c:  # a head past 4 KiB: 431, whatever follows
        c.send(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000)
        assert c.read_response().status == 431
    # The public listener knows nothing of /metrics: it goes to the backend like any path.
    assert http_request(gw.port, target="/metrics").body == b"Hello World"


def test_silent_admin_clients_neither_stay_nor_lock_monitoring_out(make_gateway):
    """32 connections that say nothing: the 33rd takes the oldest one's place (and is answered); a silent one is
    closed after 10 s."""
    # One process: each worker holds its own 32 admin connections (README "Worker processes"), and which worker
    # accepts each silent one is the kernel's choice.
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options={**admin_options(), "workers": 1})
    silent = [RawConn(admin_port(gw), timeout=15) for _ in range(32)]
    try:
        time.sleep(0.2)
        assert admin_get(gw, "/healthz").status == 200
        assert silent[0].is_closed_by_peer(2), "the oldest silent connection should have made room"
        started = time.monotonic()
        assert silent[-1].is_closed_by_peer(13)
        assert 8 < time.monotonic() - started < 12.5
    finally:
        for c in silent:
            c.close()


def test_healthz_is_503_while_shutting_down(make_gateway, make_backend):
    """A request in flight keeps a stopping gateway up (shutdown-timeout): meanwhile /healthz says 503 and
    /metrics still answers."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options=admin_options())
    ref = [None]

    def slow(req: Request, send):
        ref[0].call_later(1.5, lambda: respond(send, req.sid, b"late"))

    ref[0] = make_backend(gw, "NODE1", HTTPHandler(slow))
    with RawConn(gw.port) as c:
        c.send(request_bytes("GET", "/", "localhost"))
        ref[0].wait_message(b"uwsgi")
        gw.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: admin_get(gw, "/healthz").status == 503, 3, what="healthz 503")
        assert admin_get(gw, "/healthz").body == b"shutting down\n"
        assert scrape(gw).value("blastbeat_connections_open") == 1
        assert c.read_response().body == b"late"
    assert gw.proc.wait(10) == 0


def test_admin_absent_unless_configured(make_gateway, make_backend):
    """Without `admin` the gateway listens on its public port and the ROUTER only."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]})
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    assert listening_ports(gw.pid) == {gw.port, gw.zmq_port}
    with_admin = make_gateway(vhosts={"localhost": ["NODE1"]}, options=admin_options())
    assert listening_ports(with_admin.pid) == {with_admin.port, with_admin.zmq_port, admin_port(with_admin)}
    assert "admin listener" not in gw.stderr()
    assert f"admin listener (GET /metrics, /healthz) on http://127.0.0.1:{admin_port(with_admin)}" in \
        with_admin.stderr()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the gateway drops to nobody after binding")
def test_admin_listener_survives_the_privilege_drop(make_gateway, make_backend):
    """Started as root, the gateway binds the admin listener, drops to nobody, and the listener serves."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options=admin_options())
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    assert "running as uid 65534" in gw.stderr()
    with open(f"/proc/{gw.pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["65534"] * 4, uids
    http_request(gw.port)
    assert scrape(gw).value("blastbeat_responses_total", vhost="localhost", code="2xx") == 1
    assert admin_get(gw, "/healthz").status == 200


BAD_ADMIN = [
    ("admin = nowhere", "[blastbeat]", "expected ADDRESS:PORT"),
    ("admin = 127.0.0.1:0", "[blastbeat]", "expected ADDRESS:PORT"),
    ("admin = 127.0.0.1:{public}", "[blastbeat]", "expected an address no public listener uses"),
    ("admin = *:{public}", "[blastbeat]", "expected an address no public listener uses"),
    ("admin = 127.0.0.1:9100", "[blastbeat:localhost]", "expected in the [blastbeat] section"),
]


@pytest.mark.parametrize("line, section, message", BAD_ADMIN, ids=["no-port", "port-0", "public", "wildcard",
                                                                    "in-vhost"])
def test_check_rejects_bad_admin_values(blastbeat_bin, tmp_path, line, section, message):
    public = free_port()
    text = (f"[blastbeat]\nbind = 127.0.0.1:{public}\nzmq = tcp://127.0.0.1:{free_port()}\n"
            f"[blastbeat:localhost]\nnode = N\n")
    lines = text.splitlines()
    at = lines.index(section) + 1
    lines.insert(at, line.format(public=public))
    path = tmp_path / "bad.ini"
    path.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([blastbeat_bin, "--check", str(path)], capture_output=True, timeout=10)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert f"{path}:{at + 1}: admin: " in stderr and message in stderr, stderr


def test_admin_port_taken_fails_the_start_at_its_line(blastbeat_bin, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "taken.ini"
        path.write_text(f"[blastbeat]\nbind = 127.0.0.1:{free_port()}\nzmq = tcp://127.0.0.1:{free_port()}\n"
                        f"admin = 127.0.0.1:{port}\n[blastbeat:localhost]\nnode = N\n")
        proc = subprocess.run([blastbeat_bin, str(path)], capture_output=True, timeout=10)
    assert proc.returncode == 1
    assert f"{path}:4: admin: " in proc.stderr.decode() and "Address already in use" in proc.stderr.decode()


# --------------------------------------------------------------------------------------------------------------
# a real Prometheus server

@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.exists("/usr/bin/prometheus"), reason="needs the prometheus Debian package")
def test_prometheus_scrapes_the_admin_listener(make_gateway, make_backend, tmp_path):
    """/usr/bin/prometheus scrapes the admin listener every second; its HTTP API then answers a query for a
    blastbeat series with the value the gateway counted (bounded wait: 20 s)."""
    gw = make_gateway(vhosts={"localhost": ["NODE1"]}, options=admin_options())
    make_backend(gw, "NODE1", HTTPHandler(hello_app()))
    for _ in range(3):
        assert http_request(gw.port).status == 200
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: blastbeat\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{admin_port(gw)}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        query = urllib.parse.urlencode({"query": 'blastbeat_responses_total{vhost="localhost",code="2xx"}'})

        def answer():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?{query}", timeout=2) as r:
                    result = json.load(r)["data"]["result"]
            except OSError:
                return None
            return result or None

        result = wait_until(answer, 20, interval=0.5, what="prometheus to have scraped blastbeat")
        assert len(result) == 1
        assert result[0]["metric"]["job"] == "blastbeat" and result[0]["metric"]["vhost"] == "localhost"
        assert float(result[0]["value"][1]) == 3
        up = urllib.parse.urlencode({"query": "up"})
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?{up}", timeout=2) as r:
            assert json.load(r)["data"]["result"][0]["value"][1] == "1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        print((tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])


def test_a_body_over_max_body_size_on_http2_counts_in_the_streams_vhost(make_gateway, make_backend):
    """413 for an HTTP/2 stream whose Content-Length is over max-body-size: a max-body-size rejection of its
    vhost, as over HTTP/1.1."""
    from h2_helpers import H2Conn
    gw = make_gateway(vhosts={"a.test": {"nodes": ["A"], "options": {"max-body-size": "1k"}}}, options=admin_options())
    make_backend(gw, "A", HTTPHandler(hello_app(b"a")))
    with H2Conn(gw.port) as c:
        r = c.response(c.request("POST", "/big", "a.test", headers=[("content-length", "4096")], end=False))
        assert r.status == 413
    m = scrape(gw)
    assert m.value("blastbeat_rejections_total", vhost="a.test", limit="max-body-size") == 1
