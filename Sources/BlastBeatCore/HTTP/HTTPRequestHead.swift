/// A parsed request head: byte ranges into the buffer it was parsed from, plus the facts the
/// gateway needs for framing, keep-alive and routing.
///
/// The ranges are only meaningful together with that buffer; the connection keeps the bytes
/// until the request has been forwarded. The struct is reused between requests (`reset()` keeps
/// the header array's capacity), so a request costs no allocation once the connection is warm.
package struct HTTPRequestHead: Sendable {
    package var method: Range<Int> = 0..<0
    package var methodKind: HTTPMethodKind = .other
    /// The request-target as sent (origin-form, absolute-form, authority-form or `*`).
    package var target: Range<Int> = 0..<0
    package var version: HTTPVersion = .http11
    /// Header lines in arrival order.
    package var headers: [HeaderField] = []
    /// Bytes from the start of the parsed buffer to just after the blank line that ends the head
    /// (leading empty lines that were skipped are included).
    package var length: Int = 0

    /// Declared body length; nil when absent. Never set together with `isChunked`.
    package var contentLength: Int?
    /// `Transfer-Encoding: chunked` (the only coding accepted).
    package var isChunked: Bool = false
    /// Whether the connection may carry another request after this one (RFC 9112 §9.3:
    /// HTTP/1.1 unless a `close` token; HTTP/1.0 only with a `keep-alive` token).
    package var keepAlive: Bool = true
    /// `Expect: 100-continue` was sent.
    package var expectContinue: Bool = false
    /// The Host header's value (absent only for HTTP/1.0 requests without one).
    package var host: Range<Int>?
    /// The `Connection` header lists `upgrade` and `Upgrade` lists `websocket`.
    package var isWebSocketUpgrade: Bool = false

    package init() {}

    /// Whether a body follows the head.
    package var hasBody: Bool { isChunked || (contentLength ?? 0) > 0 }

    /// Clears every field for the next request, keeping the header array's storage.
    package mutating func reset() {
        method = 0..<0
        methodKind = .other
        target = 0..<0
        version = .http11
        headers.removeAll(keepingCapacity: true)
        length = 0
        contentLength = nil
        isChunked = false
        keepAlive = true
        expectContinue = false
        host = nil
        isWebSocketUpgrade = false
    }
}
