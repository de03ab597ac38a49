#!/usr/bin/env python3
"""Writes the hand-made seeds of Tests/Fuzz/Corpus/<driver>/seed-*: valid inputs for each driver's format
(see the input layout in each check's doc comment, Sources/BlastBeatFuzzChecks/). Re-run after changing a
format; the inputs libFuzzer found and `make fuzz-merge` kept sit beside them under other names."""
import os
import shutil
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "Corpus"


def write(driver, name, data):
    folder = CORPUS / driver
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def request_heads():
    heads = {p.stem: p.read_bytes() for p in sorted((ROOT / "Tests/BlastBeatCoreTests/Corpus").glob("*.http"))}
    heads["absolute-form"] = b"GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n"
    heads["options-star"] = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"
    heads["connect"] = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    heads["duplicates"] = (b"POST /p%2Fq%zz?x#f HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\ncookie: b=2\r\nX-A: 1\r\n"
                           b"x-a: 2\r\nX_B: 3\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
                           b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\nabc")
    heads["leading-crlf"] = b"\r\n\r\nGET / HTTP/1.0\r\n\r\n"
    return heads


def chunked(*chunks, trailer=b""):
    out = b""
    for c in chunks:
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    return out + b"0\r\n" + trailer + b"\r\n"


def ws_frame(opcode, payload, fin=True, rsv1=False, mask=b"\x37\xfa\x21\x3d"):
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def deflate_messages(messages, wbits=15):
    comp = zlib.compressobj(wbits=-wbits)
    out = []
    for m in messages:
        data = comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


Z85 = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(fields):
    """An HPACK block of literal fields without indexing and without Huffman (RFC 7541 §6.2.2)."""
    out = b""
    for name, value in fields:
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return out


def h2_requests():
    """Client frames after the preface: SETTINGS first, then requests (the http2-server driver's input)."""
    settings = h2_frame(4, 0, 0, struct.pack(">HI", 4, 65535))
    get = hpack_literal([(b":method", b"GET"), (b":path", b"/a?b"), (b":scheme", b"https"),
                         (b":authority", b"h.test"), (b"cookie", b"a=1"), (b"cookie", b"b=2")])
    post = hpack_literal([(b":method", b"POST"), (b":path", b"/up"), (b":scheme", b"http"), (b":authority", b"h")])
    ws = hpack_literal([(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                        (b":path", b"/ws"), (b":authority", b"h"), (b"sec-websocket-version", b"13")])
    return {
        "get": settings + h2_frame(1, 0x05, 1, get),
        "post-data": settings + h2_frame(1, 0x04, 1, post) + h2_frame(0, 0, 1, b"x" * 100)
        + h2_frame(0, 0x01, 1, b"y" * 10),
        "continuation": settings + h2_frame(1, 0x01, 1, get[:20]) + h2_frame(9, 0x04, 1, get[20:]),
        "reset-ping-window": settings + h2_frame(1, 0x05, 1, get) + h2_frame(3, 0, 1, struct.pack(">I", 8))
        + h2_frame(6, 0, 0, b"12345678") + h2_frame(8, 0, 0, struct.pack(">I", 1 << 20)),
        "websocket": settings + h2_frame(1, 0x04, 1, ws) + h2_frame(0, 0, 1, b"\x81\x85\x01\x02\x03\x04ignored"),
        "many-streams": settings + b"".join(h2_frame(1, 0x05, 1 + 2 * i, get) for i in range(10)),
    }


def z85(data):
    out = b""
    for i in range(0, len(data), 4):
        v = struct.unpack(">I", data[i:i + 4])[0]
        out += bytes(Z85[(v // 85 ** k) % 85] for k in range(4, -1, -1))
    return out


def main():
    if CORPUS.exists():
        for folder in CORPUS.iterdir():
            for f in folder.glob("seed-*"):
                f.unlink()

    for name, head in request_heads().items():
        write("http-request-head", name, head)
        write("uwsgi", name, head)

    body = {
        "cl": b"\x00\x00\x05hello",
        "cl-more": b"\x00\x00\x03abcdef",
        "chunked": b"\x01" + chunked(b"hello", b" world"),
        "chunked-ext": b"\x01" + b"5 ; a=b;c=\"d\\\"e\" ;f\r\nhello\r\n0\r\n\r\n",
        "chunked-trailer": b"\x01" + chunked(b"x" * 40, trailer=b"Expires: never\r\nX-T: 1\r\n"),
        "chunked-empty": b"\x01" + chunked(),
    }
    for k, v in body.items():
        write("http-body", k, v)

    responses = {
        "200": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        "204": b"HTTP/1.0 204 No Content\r\nConnection: close\r\n\r\n",
        "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "lf": b"\nHTTP/1.1 404\nContent-Length: 0, 0\n\n",
    }
    for k, v in responses.items():
        write("http-response-head", k, v)

    streams = {
        "text": ws_frame(1, b"Hello"),
        "fragments-ping": ws_frame(1, "héllo".encode()[:3], fin=False) + ws_frame(9, b"ping")
        + ws_frame(0, "héllo".encode()[3:]) + ws_frame(2, bytes(range(200))),
        "close": ws_frame(10, b"") + ws_frame(8, b"\x03\xe8bye"),
        "compressed": ws_frame(1, deflate_messages([b"Hello"])[0], rsv1=True),
        "long": ws_frame(2, b"z" * 1000),
    }
    for k, v in streams.items():
        write("websocket-frames", k, b"\x03\x80" + v)
        write("websocket-messages", k, b"\x03\x80\x80" + v)

    texts = [b"Hello", b"Hello", b"a" * 3000, "ünïcödé".encode() * 10, b""]
    for wbits, ctx in [(15, 0), (9, 8), (12, 0)]:
        msgs = deflate_messages(texts, wbits=wbits)
        if ctx:  # no context takeover: every message on a fresh window
            msgs = [deflate_messages([t], wbits=wbits)[0] for t in texts]
        data = bytes([(wbits - 8) | ctx, 0x3F]) + b"".join(struct.pack(">H", len(m)) + m for m in msgs)
        write("inflate", f"w{wbits}-{'noctx' if ctx else 'ctx'}", data)
    write("inflate", "bfinal", b"\x07\x10" + struct.pack(">H", 7) + zlib.compress(b"abc", wbits=-15)[:7])

    for k, v in h2_requests().items():
        write("http2-server", k, v)

    for name in ["headers", "body", "chunk", "end", "websocket", "websocket-binary", "retry", "pong", "ping",
                 "uwsgi", "credit"]:
        write("backend-message", name, name)

    greeting_null = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
    greeting_curve = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x01" + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER" + b"\x08Identity" \
        + struct.pack(">I", 5) + b"alpha"
    zmtp = {
        "greeting-null": b"\x00" + greeting_null,
        "greeting-curve": b"\x00" + greeting_curve,
        "greeting-zmtp2": b"\x00" + greeting_null[:10] + b"\x01",
        "header-short": b"\x01\x01\x05",
        "header-long": b"\x01\x06" + struct.pack(">Q", 70000),
        "ready": b"\x02" + ready,
        "ping": b"\x02\x04PING\x00\x10ctx",
    }
    for k, v in zmtp.items():
        write("zmtp", k, v)

    # curve-server operations: 1 = a valid command (operand length, operand, flags), 2 = altered, 0 = raw.
    hello = b"\x01\x00\x00"
    initiate = b"\x01\x05alpha\x00"
    messages = b"\x01\x03sid\x01" + b"\x01\x00\x00" + b"\x01\x05hello\x00"
    curve = {
        "handshake": hello + initiate + messages,
        "altered-hello": b"\x02\x00\x00\x00\x00\x50\x07" + initiate,
        "altered-initiate": hello + b"\x02\x05alpha\x00\x01\x00\x30\x01\x00\x31\x80",
        "altered-message": hello + initiate + b"\x02\x03abc\x01\x00\x00\x20\x04",
        "cut-message": hello + initiate + b"\x02\x03abc\x00\x04\x05",
        "raw-hello": b"\x00\x00\x06\x05HELLO",
        "raw-message": hello + initiate + b"\x00\x00\x30\x07MESSAGE" + b"\0" * 40,
    }
    for k, v in curve.items():
        write("curve-server", k, v)

    key = bytes(range(32))
    secret = bytes(range(32, 64))
    write("curve-keys", "z85", z85(key))
    write("curve-keys", "hello", b"HelloWorld")
    write("curve-keys", "public-cert",
          b"#   ****  Generated by blastbeat keygen  ****\n#   ZeroMQ CURVE Public Certificate\n\nmetadata\ncurve\n"
          b"    public-key = \"" + z85(key) + b"\"\n")
    write("curve-keys", "secret-cert",
          b"metadata\n    name = 'x'\ncurve\n    public-key = '" + z85(key) + b"'\r\n    secret-key = "
          + z85(secret) + b"\n")

    # FileBundle (Sources/BlastBeatCore/Config/FileBundle.swift): version 1, records F/G/L, end E.
    def u32(n):
        return struct.pack("<I", n)

    def text(t):
        return u32(len(t)) + t

    bundle = (b"\x01" + b"F" + text(b"/etc/blastbeat/blastbeat.ini") + u32(0) + text(b"[blastbeat]\n")
              + b"F" + text(b"/etc/blastbeat/key.pem") + u32(13) + u32(0)
              + b"G" + text(b"/etc/blastbeat/sites.d/*.ini") + u32(0) + u32(2) + text(b"/a.ini") + text(b"/b.ini")
              + b"L" + text(b"bind 0.0.0.0:80") + u32(0) + u32(2)
              + b"L" + text(b"bind-ssl [::]:443") + u32(98) + u32(0) + b"E")
    write("file-bundle", "reload", bundle)
    write("file-bundle", "empty", b"\x01E")

    # worker-message: WorkerMessage frames, several per input (Sources/BlastBeatCore/Workers/WorkerMessage.swift).
    def worker(kind, identity=b"", sid=b"", mtype=b"", body=b""):
        fields = bytes([kind]) + bytes([len(identity)]) + identity + bytes([len(sid)]) + sid + bytes([len(mtype)]) + mtype
        return struct.pack("<I", len(fields) + len(body)) + fields + body
    sid = bytes(range(16))
    write("worker-message", "joined-send-received", worker(74, b"app#1") + worker(83, b"app", sid, b"uwsgi", b"\x00\x05\x00")
          + worker(82, b"app", b"", b"pong") + worker(76, b"app#1") + worker(68))
    write("worker-message", "partial", worker(83, b"app", sid, b"body", b"x" * 100)[:50])
    # H: a backend connection handed to another worker (Sources/BlastBeatCore/Workers/BackendHandover.swift).
    def handover(curve, address, unsent, pending):
        state = (b"\x01" + bytes(range(32)) + bytes(range(32, 64)) + struct.pack("<QQ", 7, 1)) if curve else b"\x00"
        return (state + bytes([len(address)]) + address + struct.pack("<H", len(unsent)) + unsent
                + struct.pack("<I", len(pending)) + pending)
    write("worker-message", "handover", worker(72, b"app#1", body=handover(False, b"127.0.0.2:4000", b"", b"\x01\x00"))
          + worker(72, b"app", body=handover(True, b"127.0.0.3:4001", b"\x04\x05READY", b"")))
    # worker-reports: a serving process's reports to the parent (Sources/BlastBeatCore/Workers/WorkerReports.swift);
    # the first byte picks how the rest is cut into reads.
    def failure(text):
        return b"F" + struct.pack("<H", len(text)) + text
    write("worker-reports", "requests-serving-failure",
          b"\x05" + b"RSU" + failure(b"/etc/blastbeat/blastbeat.ini:3: key: does not match") + b"S")
    write("worker-reports", "byte-by-byte-overlong", b"\x00" + b"xS" + b"F\xff\xff" + failure(b"") + b"R")
    write("config", "blastbeat-ini", (ROOT / "blastbeat.ini").read_bytes())
    write("config", "full", """[blastbeat]
bind = 0.0.0.0:8080 ; public
bind-ssl = [::1]:8443
certificate = cert.pem
key = key.pem
zmq = tcp://127.0.0.1:5000
zmq-engine = libzmq
ping-freq = 2.5
ping-timeout = 10
max-hops = 3
max-request-line = 8k
max-header-size = 64K
max-headers = 50
max-body-size = 10M
websocket-max-message = 1m
websocket-compression = false
header-timeout = 5
access-log = /tmp/access.log
log-level = debug

[blastbeat:example.com]
node = a
node = b
bind = 127.0.0.1:9090

[blastbeat:*.example.org:8080]
node = c
default = true
""")


if __name__ == "__main__":
    main()
