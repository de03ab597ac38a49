"""HTTP/2 clients for the integration tests: ``H2Conn`` drives the Python ``h2`` package over a plain
(prior knowledge) or TLS (ALPN h2) socket, so tests can send well-formed requests as well as hand-made
frames (floods, resets, forbidden headers). Every read has a deadline."""

from __future__ import annotations

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class StreamResult:
    def __init__(self, stream_id: int):
        self.id = stream_id
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.ended = False
        self.reset: int | None = None  # RST_STREAM error code

    @property
    def status(self) -> int | None:
        for name, value in self.headers:
            if name == b":status":
                return int(value)
        return None

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class _ClientSocket:
    """What both clients share: `sock`, `closed`, and `_pump(timeout)` reading what arrives."""

    def wait_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._pump(0.2)
        assert self.closed, "connection still open"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class H2Conn(_ClientSocket):
    """One HTTP/2 client connection. ``tls_port`` + ``server_name`` for h2 over TLS, else h2c on ``port``."""

    def __init__(self, port: int, *, tls: bool = False, server_name: str = "localhost", cafile=None,
                 source: str = "127.0.0.1", timeout: float = 10.0, validate: bool = True):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        if tls:
            ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl._create_unverified_context()
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
            self.alpn = self.sock.selected_alpn_protocol()
        else:
            self.sock = raw
            self.alpn = None
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=validate, normalize_outbound_headers=validate,
                                           validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        self.streams: dict[int, StreamResult] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.remote_settings_seen = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", path: str = "/", authority: str = "localhost", headers=(),
                body: bytes | None = None, end: bool = True, scheme: str = "http") -> int:
        sid = self.h2.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", scheme), (":authority", authority)] + list(headers)
        self.streams[sid] = StreamResult(sid)
        self.h2.send_headers(sid, hdrs, end_stream=end and not body)
        if body:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """Sends as much as the windows allow now (the rest with ``pump_body``)."""
        self._pending = getattr(self, "_pending", {})
        self._pending[sid] = (bytearray(body), end)
        self.pump_body()

    def pump_body(self) -> None:
        for sid, (rest, end) in list(getattr(self, "_pending", {}).items()):
            while rest:
                window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = bytes(rest[:window])
                del rest[:window]
                self.h2.send_data(sid, piece, end_stream=end and not rest)
            if not rest:
                if end and not self.h2._get_stream_by_id(sid).closed and not self.streams[sid].done:
                    pass
                del self._pending[sid]
        self.flush()

    def _pump(self, timeout: float) -> None:
        self.read_events(timeout)

    def read_events(self, timeout: float = 1.0) -> list:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError):
            return []
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return []
        if not data:
            self.closed = True
            return []
        events = self.h2.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) or isinstance(event, h2.events.InformationalResponseReceived):
                self.streams.setdefault(event.stream_id, StreamResult(event.stream_id)).headers = list(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.streams.setdefault(event.stream_id, StreamResult(event.stream_id)).body += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.streams.setdefault(event.stream_id, StreamResult(event.stream_id)).ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.streams.setdefault(event.stream_id, StreamResult(event.stream_id)).reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self.remote_settings_seen = True
            elif isinstance(event, h2.events.WindowUpdated):
                pass
        try:
            self.flush()
        except OSError:
            self.closed = True
        if getattr(self, "_pending", None):
            try:
                self.pump_body()
            except (h2.exceptions.ProtocolError, OSError):
                pass
        return events

    def wait(self, pred, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            if self.closed:
                value = pred()
                if value:
                    return value
                raise AssertionError(f"connection closed while waiting for {what}")
            self.read_events(min(0.2, max(0.01, deadline - time.monotonic())))
        raise AssertionError(f"timed out waiting for {what}")

    def response(self, sid: int, timeout: float = 10.0) -> StreamResult:
        self.wait(lambda: self.streams[sid].done, timeout, f"stream {sid}")
        return self.streams[sid]

    def get(self, path: str = "/", authority: str = "localhost", **kw) -> StreamResult:
        return self.response(self.request("GET", path, authority, **kw))



class RawH2(_ClientSocket):
    """An HTTP/2 client that writes frames by hand (hyperframe + hpack): for frames a correct client never
    sends (floods, forbidden fields, a reset right after each request). Reads frames the gateway sends."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, port: int, *, settings: dict | None = None, timeout: float = 10.0, source: str = "127.0.0.1"):
        import hpack
        from hyperframe.frame import SettingsFrame

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.buffer = b""
        self.frames: list = []
        self.closed = False
        first = SettingsFrame(0)
        for key, value in (settings or {}).items():
            first.settings[key] = value
        self.sock.sendall(self.PREFACE + first.serialize())

    def send(self, *frames) -> None:
        self.sock.sendall(b"".join(f.serialize() for f in frames))

    def block(self, headers) -> bytes:
        return self.encoder.encode(headers)

    @staticmethod
    def request_headers(path: str = "/", authority: str = "localhost", method: str = "GET", extra=()):
        return [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)] + list(extra)

    def headers_frame(self, stream_id: int, headers=None, *, block: bytes | None = None, end_stream: bool = True,
                      end_headers: bool = True):
        from hyperframe.frame import HeadersFrame

        f = HeadersFrame(stream_id)
        f.data = block if block is not None else self.block(headers or self.request_headers())
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    def _pump(self, timeout: float) -> None:
        self.read(timeout)

    def read(self, timeout: float = 1.0) -> list:
        """Frames that arrive within `timeout`; acknowledges the gateway's SETTINGS."""
        from hyperframe.frame import Frame, HeadersFrame, SettingsFrame

        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 16)
            except (socket.timeout, TimeoutError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.buffer += data
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                if isinstance(frame, HeadersFrame):
                    frame.decoded = self.decoder.decode(frame.data, raw=True)
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    ack = SettingsFrame(0)
                    ack.flags.add("ACK")
                    try:
                        self.sock.sendall(ack.serialize())
                    except OSError:
                        self.closed = True
                got.append(frame)
        self.frames += got
        return got

    def read_until(self, pred, timeout: float = 10.0, what: str = "frame"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in self.frames:
                if pred(f):
                    return f
            if self.closed:
                break
            self.read(0.2)
        for f in self.frames:
            if pred(f):
                return f
        raise AssertionError(f"no {what} (closed={self.closed}); got {[type(f).__name__ for f in self.frames][-20:]}")

