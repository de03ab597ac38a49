/// Why a client's request was refused; `status` is the response the gateway sends before closing.
package enum HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The request line is longer than `limit` bytes.
    case requestLineTooLong(limit: Int)
    /// The head (request line plus headers) is longer than `limit` bytes.
    case headTooLarge(limit: Int)
    /// More than `limit` header lines.
    case tooManyHeaders(limit: Int)
    /// The declared or received body is longer than `limit` bytes.
    case bodyTooLarge(limit: Int)
    /// The method is not an RFC 9110 token.
    case invalidMethod
    /// The request-target is empty or has bytes outside the allowed set (controls, space, DEL, non-ASCII).
    case invalidTarget
    /// The version is not `HTTP/x.y`.
    case invalidVersion
    /// A well-formed version other than 1.0 and 1.1.
    case unsupportedVersion
    /// A line ends in a bare CR or bare LF, or the request line has the wrong number of single spaces.
    case invalidLineEnding(offset: Int)
    /// A header name is empty or has a byte that is not a token character (also: space before the colon).
    case invalidHeaderName(offset: Int)
    /// A header value has a control byte (NUL, bare CR, ...) other than HTAB.
    case invalidHeaderValue(offset: Int)
    /// A header line starts with space or tab (obs-fold), which is a smuggling vector.
    case obsoleteLineFolding(offset: Int)
    /// HTTP/1.1 request without Host, or more than one Host.
    case missingHost
    case multipleHosts
    /// Content-Length and Transfer-Encoding together.
    case contentLengthWithTransferEncoding
    /// Content-Length is not a decimal number, or several differing values.
    case invalidContentLength
    /// A transfer coding other than a final `chunked`.
    case unsupportedTransferEncoding
    /// Chunked body framing errors.
    case invalidChunkSize
    case invalidChunkFraming
    case chunkLineTooLong(limit: Int)
    case trailerTooLarge(limit: Int)

    /// The status code sent to the client for this error.
    package var status: Int {
        switch self {
        case .requestLineTooLong: return 414
        case .headTooLarge, .tooManyHeaders: return 431
        case .bodyTooLarge: return 413
        case .unsupportedVersion: return 505
        case .unsupportedTransferEncoding: return 501
        case .invalidMethod, .invalidTarget, .invalidVersion, .invalidLineEnding, .invalidHeaderName,
            .invalidHeaderValue, .obsoleteLineFolding, .missingHost, .multipleHosts,
            .contentLengthWithTransferEncoding, .invalidContentLength, .invalidChunkSize, .invalidChunkFraming,
            .chunkLineTooLong, .trailerTooLarge:
            return 400
        }
    }

    package var description: String {
        switch self {
        case .requestLineTooLong(let limit): return "request line longer than \(limit) bytes"
        case .headTooLarge(let limit): return "request head larger than \(limit) bytes"
        case .tooManyHeaders(let limit): return "more than \(limit) header lines"
        case .bodyTooLarge(let limit): return "request body larger than \(limit) bytes"
        case .invalidMethod: return "invalid method"
        case .invalidTarget: return "invalid request-target"
        case .invalidVersion: return "invalid HTTP version"
        case .unsupportedVersion: return "unsupported HTTP version"
        case .invalidLineEnding(let offset): return "bare CR/LF or malformed line at byte \(offset)"
        case .invalidHeaderName(let offset): return "invalid header name at byte \(offset)"
        case .invalidHeaderValue(let offset): return "invalid byte in header value at byte \(offset)"
        case .obsoleteLineFolding(let offset): return "obsolete line folding at byte \(offset)"
        case .missingHost: return "missing Host header"
        case .multipleHosts: return "more than one Host header"
        case .contentLengthWithTransferEncoding: return "both Content-Length and Transfer-Encoding"
        case .invalidContentLength: return "invalid or conflicting Content-Length"
        case .unsupportedTransferEncoding: return "unsupported Transfer-Encoding"
        case .invalidChunkSize: return "invalid chunk size"
        case .invalidChunkFraming: return "invalid chunk framing"
        case .chunkLineTooLong(let limit): return "chunk size line longer than \(limit) bytes"
        case .trailerTooLarge(let limit): return "trailer section larger than \(limit) bytes"
        }
    }
}
