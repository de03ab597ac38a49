/// The second half of parsing a head: what the known header fields mean for framing, persistence,
/// routing and upgrades, decided once the whole head has been read.
extension HTTPRequestHeadParser {
    /// Fills the derived fields of `head` from its header lines (RFC 9112 §6.1–6.3, §9.3; RFC 9110 §7.2).
    ///
    /// Checks run in this order, so a head with several faults always reports the same one: value
    /// syntax while walking the headers (Content-Length, Transfer-Encoding), then Host count,
    /// framing conflicts, transfer codings, missing Host, body size, and absolute-form vs Host.
    ///
    /// Choices where the RFCs leave room:
    /// - `Transfer-Encoding` in an HTTP/1.0 request is faulty framing (RFC 9112 §6.1) → `.invalidChunkFraming`
    ///   (400); with Content-Length as well it is `.contentLengthWithTransferEncoding`.
    /// - Empty list elements (`chunked,` or `, close`) are ignored as RFC 9110 §5.6.1 asks, except in
    ///   Content-Length, which must be `1*DIGIT` per element. A Transfer-Encoding line with no coding
    ///   at all is `.invalidHeaderValue`.
    /// - `Expect: 100-continue` and `Upgrade` count only in HTTP/1.1 (RFC 9110 §10.1.1, §7.8).
    ///   The WebSocket flag does not look at the method or Sec-WebSocket-*; the handshake does.
    /// - An absolute-form target must name the same authority as Host (RFC 9112 §3.2: the client
    ///   MUST send them identical); otherwise Host routing and the target would disagree → `.invalidTarget`.
    func interpretHeaders(_ base: UnsafePointer<UInt8>, into head: inout HTTPRequestHead) throws(HTTPParseError) {
        typealias S = HTTPSyntax
        let isHTTP11 = head.version == .http11
        var host: Range<Int>?
        var hostCount = 0
        var contentLength: Int?
        var hasTransferEncoding = false
        var transferCodings = 0
        var everyCodingIsChunked = true
        var connectionClose = false
        var connectionKeepAlive = false
        var connectionUpgrade = false
        var expectContinue = false
        var upgradeWebSocket = false

        for field in head.headers {
            guard let known = field.known else { continue }
            switch known {
            case .host:
                hostCount += 1
                if host == nil { host = field.value }

            case .contentLength:
                // A list of identical values ("5, 5") or repeated identical lines is one length (RFC 9110 §8.6).
                var elements = HTTPListElements(base, field.value)
                while let element = elements.next() {
                    let length = try Self.decimal(base, element)
                    if let previous = contentLength, previous != length { throw .invalidContentLength }
                    contentLength = length
                }

            case .transferEncoding:
                hasTransferEncoding = true
                var codingsOnLine = 0
                var elements = HTTPListElements(base, field.value)
                while let element = elements.next() {
                    if element.isEmpty { continue }
                    codingsOnLine += 1
                    if !S.rangeEqualsLowercase(base, element, "chunked") { everyCodingIsChunked = false }
                }
                guard codingsOnLine > 0 else { throw .invalidHeaderValue(offset: field.value.lowerBound) }
                transferCodings += codingsOnLine

            case .connection:
                var elements = HTTPListElements(base, field.value)
                while let element = elements.next() {
                    if S.rangeEqualsLowercase(base, element, "close") {
                        connectionClose = true
                    } else if S.rangeEqualsLowercase(base, element, "keep-alive") {
                        connectionKeepAlive = true
                    } else if S.rangeEqualsLowercase(base, element, "upgrade") {
                        connectionUpgrade = true
                    }
                }

            case .expect:
                if S.rangeEqualsLowercase(base, field.value, "100-continue") { expectContinue = true }

            case .upgrade:
                // protocol-name ["/" protocol-version] (RFC 9110 §7.8).
                var elements = HTTPListElements(base, field.value)
                while let element = elements.next() {
                    if element.count >= 9, S.equalsLowercase(base + element.lowerBound, "websocket"),
                        element.count == 9 || base[element.lowerBound + 9] == UInt8(ascii: "/")
                    {
                        upgradeWebSocket = true
                    }
                }

            case .contentType, .te, .keepAlive, .proxyConnection, .trailer, .cookie, .secWebSocketKey,
                .secWebSocketVersion, .secWebSocketProtocol, .secWebSocketExtensions:
                break
            }
        }

        if hostCount > 1 { throw .multipleHosts }
        if hasTransferEncoding {
            if contentLength != nil { throw .contentLengthWithTransferEncoding }
            if !isHTTP11 { throw .invalidChunkFraming }
            // Only a single `chunked` is supported: anything else (other codings, chunked twice or
            // not last) would need decoding we do not do, and is a smuggling shape besides.
            if transferCodings != 1 || !everyCodingIsChunked { throw .unsupportedTransferEncoding }
        }
        if isHTTP11, hostCount == 0 { throw .missingHost }
        if let contentLength, contentLength > limits.maxBodySize { throw .bodyTooLarge(limit: limits.maxBodySize) }
        if head.methodKind != .connect, let host, let authority = Self.absoluteFormAuthority(base, head.target),
            !Self.equalIgnoringASCIICase(base, authority, host)
        {
            throw .invalidTarget
        }

        head.contentLength = contentLength
        head.isChunked = hasTransferEncoding
        head.keepAlive = !connectionClose && (isHTTP11 || connectionKeepAlive)
        head.expectContinue = isHTTP11 && expectContinue
        head.host = host
        head.isWebSocketUpgrade = isHTTP11 && connectionUpgrade && upgradeWebSocket
    }

    /// `1*DIGIT` as an Int; empty, any other byte (`+`, `-`, space) or overflow is `.invalidContentLength`.
    private static func decimal(_ base: UnsafePointer<UInt8>, _ range: Range<Int>) throws(HTTPParseError) -> Int {
        guard !range.isEmpty else { throw .invalidContentLength }
        var value = 0
        for i in range {
            let digit = base[i] &- 0x30
            guard digit < 10 else { throw .invalidContentLength }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(digit))
            guard !o1, !o2 else { throw .invalidContentLength }
            value = sum
        }
        return value
    }

    private static func equalIgnoringASCIICase(_ base: UnsafePointer<UInt8>, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        func lower(_ x: UInt8) -> UInt8 { x &- 0x41 < 26 ? x | 0x20 : x }
        for k in 0..<a.count where lower(base[a.lowerBound + k]) != lower(base[b.lowerBound + k]) {
            return false
        }
        return true
    }
}
