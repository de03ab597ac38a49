import BlastBeatCore

/// Builds request heads by hand (as the request parser would) and decodes uwsgi packets for the uwsgi tests.
enum UwsgiTestSupport {
    /// A request head plus the bytes its ranges index.
    struct Request: Sendable {
        var bytes: [UInt8]
        var head: HTTPRequestHead
    }

    /// Lays out `METHOD SP target SP version CRLF (name: value CRLF)* CRLF` and records the ranges.
    ///
    /// - Parameter classify: set `HeaderField.known` like the parser does; false leaves every field unclassified.
    static func request(
        method: String = "GET",
        target: String,
        version: HTTPVersion = .http11,
        headers: [(String, String)] = [],
        contentLength: Int? = nil,
        isChunked: Bool = false,
        classify: Bool = true
    ) -> Request {
        var bytes: [UInt8] = []
        var head = HTTPRequestHead()
        head.method = self.append(method, to: &bytes)
        bytes.append(UInt8(ascii: " "))
        head.target = self.append(target, to: &bytes)
        bytes.append(UInt8(ascii: " "))
        _ = self.append(version == .http10 ? "HTTP/1.0" : "HTTP/1.1", to: &bytes)
        head.version = version
        bytes += [13, 10]
        for (name, value) in headers {
            let nameRange = self.append(name, to: &bytes)
            bytes += Array(": ".utf8)
            let valueRange = self.append(value, to: &bytes)
            bytes += [13, 10]
            let known = classify ? self.known(name) : nil
            head.headers.append(HeaderField(name: nameRange, value: valueRange, known: known))
            if known == .host && head.host == nil {
                head.host = valueRange
            }
        }
        bytes += [13, 10]
        head.length = bytes.count
        head.contentLength = contentLength
        head.isChunked = isChunked
        return Request(bytes: bytes, head: head)
    }

    static let localContext = UwsgiRequestContext(
        serverName: Array("localhost".utf8),
        serverPort: Array("8080".utf8),
        remoteAddress: Array("127.0.0.1".utf8),
        remotePort: Array("50000".utf8),
        isTLS: false
    )

    /// Encodes `request` into a fresh buffer.
    static func encode(
        _ request: Request,
        context: UwsgiRequestContext = UwsgiTestSupport.localContext
    ) throws(UwsgiError) -> [UInt8] {
        var out: [UInt8] = []
        try self.encode(request, context: context, into: &out)
        return out
    }

    static func encode(
        _ request: Request,
        context: UwsgiRequestContext = UwsgiTestSupport.localContext,
        into out: inout [UInt8]
    ) throws(UwsgiError) {
        try UwsgiEncoder.encode(head: request.head, request: request.bytes.span.bytes, context: context, into: &out)
    }

    /// The packet's pairs as strings, via the strict (standard-size) decoder; nil if it rejects the packet.
    static func pairs(_ packet: [UInt8]) -> [(String, String)]? {
        UwsgiDecoder.decode(packet)?.map {
            (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self))
        }
    }

    /// A straight port of the README's Python `uwsgi_to_dict`:
    ///
    ///     (ulen, ) = struct.unpack('<H', msg[1:3]); pos = 4; env = {}
    ///     while pos < ulen:
    ///         (klen,) = struct.unpack('<H', msg[pos:pos+2]); k = msg[pos+2:pos+2+klen]; pos += 2+klen
    ///         (vlen,) = struct.unpack('<H', msg[pos:pos+2]); v = msg[pos+2:pos+2+vlen]; pos += 2+vlen
    ///         env[k] = v
    ///
    /// Slices clamp like Python's; nil where `struct.unpack` would raise (fewer than 2 bytes).
    static func readmeUwsgiToDict(_ msg: [UInt8]) -> [[UInt8]: [UInt8]]? {
        func unpackUInt16(_ from: Int) -> Int? {
            guard from >= 0, from + 2 <= msg.count else { return nil }
            return Int(msg[from]) | Int(msg[from + 1]) << 8
        }
        func slice(_ from: Int, _ to: Int) -> [UInt8] {
            let lower = min(from, msg.count)
            return Array(msg[lower..<max(lower, min(to, msg.count))])
        }
        guard let ulen = unpackUInt16(1) else { return nil }
        var pos = 4
        var env: [[UInt8]: [UInt8]] = [:]
        while pos < ulen {
            guard let klen = unpackUInt16(pos) else { return nil }
            let k = slice(pos + 2, pos + 2 + klen)
            pos += 2 + klen
            guard let vlen = unpackUInt16(pos) else { return nil }
            let v = slice(pos + 2, pos + 2 + vlen)
            pos += 2 + vlen
            env[k] = v
        }
        return env
    }

    private static func append(_ text: String, to bytes: inout [UInt8]) -> Range<Int> {
        let start = bytes.count
        bytes += Array(text.utf8)
        return start..<bytes.count
    }

    private static func known(_ name: String) -> KnownHeader? {
        switch name.lowercased() {
        case "host": return .host
        case "content-length": return .contentLength
        case "content-type": return .contentType
        case "transfer-encoding": return .transferEncoding
        case "connection": return .connection
        case "expect": return .expect
        case "upgrade": return .upgrade
        case "te": return .te
        case "keep-alive": return .keepAlive
        case "proxy-connection": return .proxyConnection
        case "trailer": return .trailer
        case "cookie": return .cookie
        case "sec-websocket-key": return .secWebSocketKey
        case "sec-websocket-version": return .secWebSocketVersion
        case "sec-websocket-protocol": return .secWebSocketProtocol
        case "sec-websocket-extensions": return .secWebSocketExtensions
        default: return nil
        }
    }
}
