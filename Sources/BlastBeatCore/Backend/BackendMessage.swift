/// Message types a backend may send (frame 2 of its 3 frames), matched exactly (no prefix matching as in the
/// original).
///
/// The rules: docs/PROTOCOL.md, "Messages" and "Backend → gateway messages".
///
/// The original compared the type frame with `strncmp` limited to the *received* length, so `"b"` matched
/// `body` and an empty frame matched `pong`. Here a frame is one of these only if its bytes are exactly the
/// lowercase name; anything else (empty, truncated, different case, trailing NUL) makes `init?` return nil,
/// and the caller drops and counts the message. `uwsgi` and `ping` are recognised so that a backend echoing
/// them can be told apart from garbage; the gateway ignores both.
package enum BackendMessageType: Sendable, Equatable, CaseIterable {
    /// A raw HTTP/1.x response head, maybe followed by body bytes (validated by `HTTPResponseHeadParser`;
    /// docs/PROTOCOL.md, "Response framing").
    case headers
    /// Response bytes appended verbatim to the client's output.
    case body
    /// One chunk of a chunked response; the gateway adds the chunk framing. Empty = last chunk.
    case chunk
    /// Close the client connection once pending output has been written.
    case end
    /// One WebSocket message, sent to the client as a single text frame.
    case websocket
    /// One WebSocket message, sent to the client as a binary frame.
    case websocketBinary
    /// Resend this session's `uwsgi` packet to another node.
    case retry
    /// Answer to the gateway's `ping`.
    case pong
    /// Gateway-to-backend types; ignored when a backend sends them.
    case ping
    case uwsgi

    /// Decodes a type frame; nil unless `bytes` is exactly one of the names.
    package init?(_ bytes: UnsafeRawBufferPointer) {
        // Dispatch on the length first so each frame is compared with at most three candidates.
        switch bytes.count {
        case 3:
            if Self.matches(bytes, "end") { self = .end; return }
        case 4:
            if Self.matches(bytes, "body") { self = .body; return }
            if Self.matches(bytes, "pong") { self = .pong; return }
            if Self.matches(bytes, "ping") { self = .ping; return }
        case 5:
            if Self.matches(bytes, "chunk") { self = .chunk; return }
            if Self.matches(bytes, "retry") { self = .retry; return }
            if Self.matches(bytes, "uwsgi") { self = .uwsgi; return }
        case 7:
            if Self.matches(bytes, "headers") { self = .headers; return }
        case 9:
            if Self.matches(bytes, "websocket") { self = .websocket; return }
        case 16:
            if Self.matches(bytes, "websocket-binary") { self = .websocketBinary; return }
        default:
            break
        }
        return nil
    }

    /// The type frame's bytes, for the backend SDK's sending side.
    package var bytes: StaticString {
        switch self {
        case .headers: return "headers"
        case .body: return "body"
        case .chunk: return "chunk"
        case .end: return "end"
        case .websocket: return "websocket"
        case .websocketBinary: return "websocket-binary"
        case .retry: return "retry"
        case .pong: return "pong"
        case .ping: return "ping"
        case .uwsgi: return "uwsgi"
        }
    }

    /// Exact, case-sensitive byte comparison with an ASCII literal.
    fileprivate static func matches(_ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        for index in 0..<expected.count where bytes[index] != expected[index] {
            return false
        }
        return true
    }
}

/// Message types the gateway sends to a backend (frame 2 of its 3 frames); docs/PROTOCOL.md,
/// "Gateway → backend messages".
package enum GatewayMessageType: Sendable, Equatable, CaseIterable {
    /// The request's uwsgi packet (docs/PROTOCOL.md, "The uwsgi environment"); first message of every request,
    /// resent on `retry`.
    case uwsgi
    /// Request-body bytes (de-chunked); message boundaries carry no meaning.
    case body
    /// The session is gone; body empty.
    case end
    /// Health check with an empty sid and empty body (docs/PROTOCOL.md, "Health: ping and pong").
    case ping
    /// One complete text message from the client (fragments joined, decompressed, UTF-8 checked).
    case websocket
    /// One complete binary message from the client.
    case websocketBinary
    /// Credit (docs/PROTOCOL.md, "Credit"): with an empty sid, the gateway grants credit on this connection;
    /// with a session's sid, 4 bytes big-endian: that many more bytes may be sent for it.
    case credit

    /// The type frame's bytes.
    package var bytes: StaticString {
        switch self {
        case .credit: return "credit"
        case .uwsgi: return "uwsgi"
        case .body: return "body"
        case .end: return "end"
        case .ping: return "ping"
        case .websocket: return "websocket"
        case .websocketBinary: return "websocket-binary"
        }
    }

    /// Decodes a type frame exactly, for the backend SDK's receiving side; nil for anything else.
    package init?(_ bytes: UnsafeRawBufferPointer) {
        for candidate in Self.allCases where BackendMessageType.matches(bytes, candidate.bytes) {
            self = candidate
            return
        }
        return nil
    }
}
