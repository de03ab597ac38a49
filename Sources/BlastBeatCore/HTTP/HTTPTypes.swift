/// Shared vocabulary of the HTTP/1.1 parsers: versions, methods, known header names and limits.
///
/// Everything here is a value type with offsets into a caller-owned byte buffer, so parsing a
/// request allocates nothing but the (reused) header array.

/// The protocol version of a request or response line. 1.0 and 1.1 are parsed; `http2` marks a request
/// that came on an HTTP/2 stream (its head is built by `HTTP2RequestHeadBuilder`).
package enum HTTPVersion: Sendable, Equatable {
    case http10
    case http11
    case http2

    /// `HTTP/1.0` or `HTTP/1.1`, as bytes for encoding.
    package var text: StaticString {
        switch self {
        case .http10: return "HTTP/1.0"
        case .http11: return "HTTP/1.1"
        case .http2: return "HTTP/2"
        }
    }
}

/// The request methods the gateway treats specially; everything else is `.other` and forwarded as is.
package enum HTTPMethodKind: Sendable, Equatable {
    case get
    case head
    case post
    case put
    case connect
    case options
    case other

    /// GET, HEAD, OPTIONS and PUT may be sent twice with the same effect (RFC 9110 §9.2.2), so a request
    /// whose node went away may go to another one.
    package var isRepeatable: Bool {
        switch self {
        case .get, .head, .options, .put: true
        case .post, .connect, .other: false
        }
    }
}

/// Header names the gateway looks at, matched case-insensitively as bytes (no String per header).
package enum KnownHeader: UInt8, Sendable, Equatable {
    case host
    case contentLength
    case contentType
    case transferEncoding
    case connection
    case expect
    case upgrade
    case te
    case keepAlive
    case proxyConnection
    case trailer
    case cookie
    case secWebSocketKey
    case secWebSocketVersion
    case secWebSocketProtocol
    case secWebSocketExtensions
}

/// One header line: byte ranges of its name and (trimmed) value in the parsed buffer.
package struct HeaderField: Sendable, Equatable {
    package var name: Range<Int>
    package var value: Range<Int>
    /// Set when the name is one of `KnownHeader`.
    package var known: KnownHeader?

    package init(name: Range<Int>, value: Range<Int>, known: KnownHeader?) {
        self.name = name
        self.value = value
        self.known = known
    }
}

/// Size limits of the request parser; each one maps to its own status code.
package struct HTTPLimits: Sendable, Equatable {
    /// Longest request line (method, target, version) in bytes → 414.
    package var maxRequestLine: Int = 8 * 1024
    /// Longest head (request line + all header lines + the blank line) in bytes → 431.
    package var maxHeadBytes: Int = 64 * 1024
    /// Most header lines → 431.
    package var maxHeaderCount: Int = 100
    /// Largest request body in bytes, for Content-Length and chunked alike → 413.
    package var maxBodySize: Int = 1 << 30
    /// Longest chunk-size line (size + extensions) and the whole trailer section → 400.
    package var maxChunkLine: Int = 4 * 1024
    package var maxTrailerBytes: Int = 16 * 1024

    package init() {}
}
