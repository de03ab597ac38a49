/// The facts the gateway needs from a backend's response head (a `headers` message; docs/PROTOCOL.md,
/// "Response framing").
///
/// Offsets are relative to the start of the message the head was parsed from. The head itself is forwarded
/// verbatim; `blankLineStart` is where the gateway could insert header lines if it ever has to.
package struct HTTPResponseHead: Sendable, Equatable {
    package var version: HTTPVersion
    /// 100...999.
    package var status: Int
    /// Bytes up to and including the blank line, counting skipped leading CR/LF; body bytes start here.
    package var length: Int
    /// Offset of the final empty line's CRLF (or LF), i.e. where extra header lines may be inserted.
    package var blankLineStart: Int
    /// The Content-Length value; several lines or a list of equal values count as one.
    package var contentLength: Int?
    /// The final transfer coding (over all Transfer-Encoding lines) is `chunked`.
    package var isChunked: Bool
    /// A Transfer-Encoding header is present (never together with `contentLength`).
    package var hasTransferEncoding: Bool
    /// Connection has the `close` token.
    package var connectionClose: Bool
    /// Connection has the `keep-alive` token.
    package var connectionKeepAlive: Bool

    package init(
        version: HTTPVersion,
        status: Int,
        length: Int,
        blankLineStart: Int,
        contentLength: Int? = nil,
        isChunked: Bool = false,
        hasTransferEncoding: Bool = false,
        connectionClose: Bool = false,
        connectionKeepAlive: Bool = false
    ) {
        self.version = version
        self.status = status
        self.length = length
        self.blankLineStart = blankLineStart
        self.contentLength = contentLength
        self.isChunked = isChunked
        self.hasTransferEncoding = hasTransferEncoding
        self.connectionClose = connectionClose
        self.connectionKeepAlive = connectionKeepAlive
    }

    /// 1xx: another head follows for the same request (101 ends HTTP on the connection).
    package var isInformational: Bool { self.status < 200 }

    /// How the body after this head ends, by RFC 9112 §6.3 (CONNECT tunnels are not served).
    ///
    /// - Parameter requestIsHEAD: the request was HEAD, so no body follows whatever the head declares.
    package func bodyFraming(requestIsHEAD: Bool) -> HTTPResponseBodyFraming {
        if requestIsHEAD || self.isInformational || self.status == 204 || self.status == 304 {
            return .none
        }
        if self.hasTransferEncoding {
            return self.isChunked ? .chunked : .untilClose
        }
        if let contentLength = self.contentLength {
            return .contentLength(contentLength)
        }
        return .untilClose
    }
}

/// Where a response body ends; see `HTTPResponseHead.bodyFraming(requestIsHEAD:)`.
package enum HTTPResponseBodyFraming: Sendable, Equatable {
    /// No body: HEAD request, 1xx, 204 or 304.
    case none
    /// Exactly this many bytes.
    case contentLength(Int)
    /// Chunked framing up to the last chunk and trailers.
    case chunked
    /// Everything until the connection closes, so the connection cannot be kept alive.
    case untilClose
}

/// Why a backend's `headers` message was refused. The gateway then answers the client 502 and closes the
/// connection, which sends `end` to the node (docs/PROTOCOL.md, "Response framing").
package enum BackendHeadError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The message ends before the blank line; the whole head must be in one message.
    case incomplete
    /// The first line is not `HTTP/1.0` or `HTTP/1.1`, one space, a status 100–999, and an optional
    /// space plus reason phrase without control bytes.
    case invalidStatusLine
    /// A header line is malformed at byte `offset` of the message: empty name or non-token byte in the name,
    /// whitespace before the colon, a leading space or tab (obs-fold), or a control byte (NUL, bare CR, ...)
    /// in the value. Bare CR is the response-splitting vector this guards against.
    case invalidHeader(offset: Int)
    /// Content-Length is not a decimal number, or the values differ.
    case invalidContentLength
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.1: the framing would be ambiguous).
    case contentLengthWithTransferEncoding
    /// The blank line was not found within `limit` bytes.
    case tooLarge(limit: Int)

    package var description: String {
        switch self {
        case .incomplete:
            return "backend response head is incomplete (no blank line in the headers message)"
        case .invalidStatusLine:
            return "backend response has an invalid status line (expected HTTP/1.x NNN reason)"
        case .invalidHeader(let offset):
            return "backend response has an invalid header line at byte \(offset)"
        case .invalidContentLength:
            return "backend response has an invalid or conflicting Content-Length"
        case .contentLengthWithTransferEncoding:
            return "backend response has both Content-Length and Transfer-Encoding"
        case .tooLarge(let limit):
            return "backend response head is larger than \(limit) bytes"
        }
    }
}
