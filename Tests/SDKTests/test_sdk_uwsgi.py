"""The uwsgi codec and the small pure helpers of the SDK (no gateway needed)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from blastbeat import request_has_body, uwsgi
from blastbeat import _http

REPO = Path(__file__).resolve().parent.parent.parent


def protocol_doc_decoder():
    """The standalone decoder docs/PROTOCOL.md gives backend authors ("The uwsgi environment"), run as written."""
    text = (REPO / "docs" / "PROTOCOL.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [b for b in blocks if "def uwsgi_to_dict" in b]
    namespace: dict = {}
    exec(code, namespace)
    return namespace["uwsgi_to_dict"]


ENV = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/a b/\xff",
    "QUERY_STRING": "b=1&c=%20",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "8080",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "localhost:8080",
}


def test_roundtrip_standard_size():
    packet = uwsgi.encode(ENV)
    assert packet[0] == 0 and packet[3] == 0
    assert struct.unpack("<H", packet[1:3])[0] == len(packet) - 4
    assert uwsgi.decode(packet) == ENV


def test_decode_original_size_convention():
    packet = uwsgi.encode(ENV, original_size=True)
    assert struct.unpack("<H", packet[1:3])[0] == len(packet)
    assert uwsgi.decode(packet) == ENV


def test_protocol_example_packet():
    """docs/PROTOCOL.md, "The uwsgi environment": the original's example request, GET /a?b=1 with Host localhost:
    160 bytes of pairs (a0 00), 164 with the header (a4 00, the original's size convention)."""
    pairs = [("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", ""), ("PATH_INFO", "/a"), ("QUERY_STRING", "b=1"),
             ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80"), ("SERVER_PROTOCOL", "HTTP/1.1"),
             ("HTTP_HOST", "localhost")]
    standard = uwsgi.encode(pairs)
    assert len(standard) == 164 and standard[:6] == b"\x00\xa0\x00\x00\x0e\x00"
    assert standard[6:20] == b"REQUEST_METHOD"
    original = uwsgi.encode(pairs, original_size=True)
    assert original[:4] == b"\x00\xa4\x00\x00"
    for packet in (standard, original):
        assert uwsgi.decode_pairs(packet) == [(k.encode(), v.encode()) for k, v in pairs]


def test_bytes_survive_as_latin1():
    raw = bytes(range(256))
    env = uwsgi.decode(uwsgi.encode([(b"PATH_INFO", raw)]))
    assert env["PATH_INFO"].encode("latin-1") == raw


@pytest.mark.parametrize("original_size", [False, True])
def test_agrees_with_the_protocol_doc_decoder(original_size):
    decoder = protocol_doc_decoder()
    for env in (ENV, {"K": ""}, {"A" * 300: "\xff" * 5000, "B": "b"}):
        packet = uwsgi.encode(env, original_size=original_size)
        assert decoder(packet) == uwsgi.decode_bytes(packet)
        assert {k.decode("latin-1"): v.decode("latin-1") for k, v in decoder(packet).items()} == uwsgi.decode(packet)


def test_standard_size_refuses_the_original_convention():
    with pytest.raises(uwsgi.UwsgiError):
        uwsgi.decode_pairs(uwsgi.encode(ENV, original_size=True), standard_size=True)
    assert uwsgi.decode_pairs(uwsgi.encode(ENV), standard_size=True) == uwsgi.decode_pairs(uwsgi.encode(ENV))


def test_duplicates_kept_in_pairs_last_wins_in_dict():
    packet = uwsgi.encode([("HTTP_X", "1"), ("HTTP_X", "2")])
    assert uwsgi.decode_pairs(packet) == [(b"HTTP_X", b"1"), (b"HTTP_X", b"2")]
    assert uwsgi.decode(packet) == {"HTTP_X": "2"}


def test_empty_values_and_empty_packet():
    assert uwsgi.decode(uwsgi.encode({"SCRIPT_NAME": "", "QUERY_STRING": ""})) == {"SCRIPT_NAME": "",
                                                                                    "QUERY_STRING": ""}
    assert uwsgi.decode(b"\x00\x00\x00\x00") == {}


def test_largest_packet():
    value = "v" * (uwsgi.MAX_PAIRS_LENGTH - 2 - 1 - 2)
    packet = uwsgi.encode({"K": value})
    assert len(packet) == 4 + uwsgi.MAX_PAIRS_LENGTH
    assert uwsgi.decode(packet) == {"K": value}
    with pytest.raises(uwsgi.UwsgiError):
        uwsgi.encode({"K": value + "x"})


@pytest.mark.parametrize("packet, why", [
    (b"", "shorter than its 4-byte header"),
    (b"\x00\x01", "shorter than its 4-byte header"),
    (b"\x05\x00\x00\x00", "modifiers"),
    (b"\x00\x00\x00\x07", "modifiers"),
    (b"\x00\x03\x00\x00\x05\x00K", "key of"),                       # key length past the end
    (b"\x00\x07\x00\x00\x01\x00K\x05\x00ab", "value of"),          # value length past the end
    (b"\x00\x03\x00\x00\x01\x00K", "runs past"),                   # no value length at all
    (b"\x00\x63\x00\x00\x01\x00K\x00\x00", "size field"),          # size matches neither convention
])
def test_malformed_packets(packet, why):
    with pytest.raises(uwsgi.UwsgiError, match=why):
        uwsgi.decode_pairs(packet)


def test_encode_rejects_empty_key_and_long_value():
    with pytest.raises(uwsgi.UwsgiError):
        uwsgi.encode({"": "x"})
    with pytest.raises(uwsgi.UwsgiError):
        uwsgi.encode({"K": "x" * 70000})


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"CONTENT_LENGTH": "0"}, False),
    ({"CONTENT_LENGTH": ""}, False),
    ({"CONTENT_LENGTH": "12"}, True),
    ({"CONTENT_LENGTH": "junk"}, False),
    ({"HTTP_TRANSFER_ENCODING": "chunked"}, True),
    ({"HTTP_TRANSFER_ENCODING": "Chunked"}, True),
])
def test_request_has_body(env, expected):
    assert request_has_body(env) is expected


@pytest.mark.parametrize("status, expected", [
    (200, (200, "200 OK")),
    ("404", (404, "404 Not Found")),
    ("418 I'm a teapot", (418, "418 I'm a teapot")),
    ("299 Custom", (299, "299 Custom")),
    (599, (599, "599 Unknown")),
])
def test_status_line(status, expected):
    assert _http.status_line_text(status) == expected


@pytest.mark.parametrize("status", ["OK", "20", "2000 x", "200 bad\r\nX: y", 42])
def test_bad_status(status):
    with pytest.raises(ValueError):
        _http.status_line_text(status)


def test_header_validation_and_head_encoding():
    headers = _http.normalize_headers({"Content-Type": "text/plain", "X-Bytes": b"\xe9", "Content-Length": 3})
    assert headers == [("Content-Type", "text/plain"), ("X-Bytes", "\xe9"), ("Content-Length", "3")]
    assert _http.encode_head("200 OK", headers) == \
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Bytes: \xe9\r\nContent-Length: 3\r\n\r\n"
    for bad in ([("X", "a\r\nInjected: 1")], [("Bad Name", "x")], [("X", "a\nb")], [("", "x")]):
        with pytest.raises(ValueError):
            _http.normalize_headers(bad)
    assert _http.content_length([("content-length", "5"), ("Content-Length", "5")]) == 5
    with pytest.raises(ValueError):
        _http.content_length([("Content-Length", "5"), ("Content-Length", "6")])
    assert _http.is_chunked([("Transfer-Encoding", "gzip, chunked")])
    assert not _http.is_chunked([("Transfer-Encoding", "chunked, gzip")])
