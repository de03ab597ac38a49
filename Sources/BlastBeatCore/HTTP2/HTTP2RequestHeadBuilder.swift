/// The HTTP/1.1 form of an HTTP/2 request's header block (RFC 9113 §8.3.1): `METHOD path HTTP/1.1`, a
/// `host` line from `:authority`, then the regular fields as they came.
///
/// Written out this way, a stream's request goes through the same head parser (field syntax, Content-Length,
/// header count limits), vhost routing and uwsgi encoder as an HTTP/1.1 request, so backends see one
/// environment for both protocols (`SERVER_PROTOCOL` is set from the head's version, `HTTP/2`). A body
/// without `content-length` (HTTP/2 ends it with END_STREAM) is announced as `transfer-encoding: chunked`,
/// the sign backends already know for a body of unknown length (docs/PROTOCOL.md, "Request bodies"); its
/// bytes reach them de-chunked, as for HTTP/1.1. Repeated
/// `cookie` fields (RFC 9113 §8.2.3 lets clients split them) are joined with `; ` by the encoder.
///
/// nghttp2 has already checked the block (pseudo-headers present, once, before the regular fields; no
/// connection-specific field; lowercase names; no CR, LF or NUL in values): a stream that breaks those
/// rules never reaches the builder.
package struct HTTP2RequestHeadBuilder: Sendable {
    package private(set) var method: [UInt8] = []
    package private(set) var path: [UInt8] = []
    package private(set) var authority: [UInt8] = []
    /// `:protocol` of an extended CONNECT (RFC 8441), `websocket` for a WebSocket.
    package private(set) var extendedProtocol: [UInt8] = []
    /// `name: value\r\n` lines of the regular fields, in arrival order.
    private var fields: [UInt8] = []
    private var host: [UInt8]? = nil
    /// The header list size as RFC 9113 §6.5.2 counts it: name + value + 32 per field.
    package private(set) var listSize = 0
    package private(set) var fieldCount = 0
    package private(set) var hasContentLength = false

    package init() {}

    package mutating func reset() {
        method.removeAll(keepingCapacity: true)
        path.removeAll(keepingCapacity: true)
        authority.removeAll(keepingCapacity: true)
        extendedProtocol.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        host = nil
        hasContentLength = false
        listSize = 0
        fieldCount = 0
    }

    /// Adds one field. Fields past `maxListSize` are counted but not kept (the stream is answered 431).
    package mutating func add(name: RawSpan, value: RawSpan, maxListSize: Int) {
        name.withUnsafeBytes { name in value.withUnsafeBytes { value in add(name: name, value: value, maxListSize: maxListSize) } }
    }

    private mutating func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, maxListSize: Int) {
        listSize += name.count + value.count + 32
        fieldCount += 1
        if listSize > maxListSize { return }
        if name.first == 0x3A {  // ':'
            if name.elementsEqual(":method".utf8) {
                method = Array(value)
            } else if name.elementsEqual(":path".utf8) {
                path = Array(value)
            } else if name.elementsEqual(":authority".utf8) {
                authority = Array(value)
            } else if name.elementsEqual(":protocol".utf8) {
                extendedProtocol = Array(value)
            }
            // :scheme needs no line: the listener says whether the connection is TLS.
            return
        }
        if name.elementsEqual("content-length".utf8) { hasContentLength = true }
        if name.elementsEqual("host".utf8) {
            host = Array(value)
            return
        }
        fields.append(contentsOf: name)
        fields.append(0x3A)
        fields.append(0x20)
        fields.append(contentsOf: value)
        fields.append(0x0D)
        fields.append(0x0A)
    }

    /// An extended CONNECT for a WebSocket (RFC 8441 §4).
    package var isWebSocketConnect: Bool {
        method.elementsEqual("CONNECT".utf8) && extendedProtocol.elementsEqual("websocket".utf8)
    }

    /// Writes the HTTP/1.1 head (ending with the blank line) to `out`, replacing its contents.
    /// `:authority` wins over a `host` field (RFC 9113 §8.3.1); a CONNECT request's target is its authority.
    /// `hasBody`: DATA frames follow the header block (no END_STREAM on it).
    ///
    /// A WebSocket over HTTP/2 (RFC 8441: CONNECT with `:protocol websocket`) is written as the HTTP/1.1
    /// upgrade backends know: `GET`, `upgrade: websocket`, `connection: upgrade` and `webSocketKey` (HTTP/2
    /// has no key; the gateway makes one up so the request is a valid RFC 6455 handshake).
    package func build(into out: inout [UInt8], hasBody: Bool, webSocketKey: [UInt8]? = nil) {
        out.removeAll(keepingCapacity: true)
        let webSocket = isWebSocketConnect && webSocketKey != nil
        if webSocket { out.append(contentsOf: "GET".utf8) } else { out.append(contentsOf: method) }
        out.append(0x20)
        if path.isEmpty { out.append(contentsOf: authority) } else { out.append(contentsOf: path) }
        out.append(contentsOf: " HTTP/1.1\r\n".utf8)
        if let hostValue = authority.isEmpty ? host : authority {
            out.append(contentsOf: "host: ".utf8)
            out.append(contentsOf: hostValue)
            out.append(0x0D)
            out.append(0x0A)
        }
        out.append(contentsOf: fields)
        if let webSocketKey, webSocket {
            out.append(contentsOf: "upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: ".utf8)
            out.append(contentsOf: webSocketKey)
            out.append(contentsOf: "\r\n".utf8)
        } else if hasBody && !hasContentLength {
            out.append(contentsOf: "transfer-encoding: chunked\r\n".utf8)
        }
        out.append(0x0D)
        out.append(0x0A)
    }
}
