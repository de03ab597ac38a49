/// Per-request facts that do not come from the request bytes.
///
/// The caller normalises them; the encoder copies the bytes as given.
package struct UwsgiRequestContext: Sendable, Equatable {
    /// Host part of the matched vhost (or of the Host header), lowercased, without port. An IPv6 literal is
    /// given without brackets (`::1`), which fixes the original's split at the first colon (D21).
    package var serverName: [UInt8]
    /// The port of the listener that accepted the connection, ASCII digits (not the vhost name's port).
    package var serverPort: [UInt8]
    /// The peer address, ASCII (`127.0.0.1`, `::1`).
    package var remoteAddress: [UInt8]
    /// The peer port, ASCII digits.
    package var remotePort: [UInt8]
    /// The connection arrived on a TLS listener: `UWSGI_SCHEME=https` and `HTTPS=on`.
    package var isTLS: Bool
    /// TLS only: the server name the client asked for (SNI), sent as `SSL_TLS_SNI` when present, and
    /// the protocol version (`TLSv1.3`), sent as `SSL_PROTOCOL` (mod_ssl's names).
    package var tlsServerName: [UInt8]
    package var tlsVersion: [UInt8]

    package init(
        serverName: [UInt8], serverPort: [UInt8], remoteAddress: [UInt8], remotePort: [UInt8], isTLS: Bool,
        tlsServerName: [UInt8] = [], tlsVersion: [UInt8] = []
    ) {
        self.serverName = serverName
        self.serverPort = serverPort
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.isTLS = isTLS
        self.tlsServerName = tlsServerName
        self.tlsVersion = tlsVersion
    }
}

/// Why a request could not be encoded as a uwsgi packet.
package enum UwsgiError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The variables need more than `limit` bytes; the 16-bit size field cannot describe them. The gateway
    /// answers 431 (the original closed silently, D20, or wrapped the size to 0, D14).
    case packetTooLarge(limit: Int)

    package var description: String {
        switch self {
        case .packetTooLarge(let limit):
            return "uwsgi packet would exceed \(limit) bytes of variables (request head too large for the backend)"
        }
    }
}

/// Encodes a parsed request head as the uwsgi packet sent to the backend (PROTOCOL.md §4).
///
/// Layout: byte 0 `modifier1` = 0, bytes 1–2 size (uint16 LE), byte 3 `modifier2` = 0, then pairs of
/// (uint16 LE key length, key, uint16 LE value length, value).
///
/// **Size convention (decided once):** the size field is the length of the pairs only, *not* counting the
/// 4-byte header, as standard uWSGI defines it. The original wrote 4 + pairs, which made standard parsers
/// read 4 bytes past the end. The README's Python/Ruby decoders (`pos = 4; while pos < ulen`) still decode
/// every pair: the last pair starts at most at `ulen - 1` because every key we write is non-empty.
///
/// Variables, in this order:
/// `REQUEST_METHOD`, `SCRIPT_NAME` (empty), `PATH_INFO`, `QUERY_STRING`, `CONTENT_TYPE` (if the header is
/// present), `CONTENT_LENGTH` (if the head has one), `SERVER_NAME`, `SERVER_PORT`, `SERVER_PROTOCOL`,
/// `REQUEST_URI`, `REMOTE_ADDR`, `REMOTE_PORT`, `UWSGI_SCHEME`, `HTTPS=on` (TLS only), then one
/// `HTTP_<NAME>` per distinct header name in first-arrival order.
///
/// * `PATH_INFO` is the path of the target (origin-form; for absolute-form `http://h/p?q` the `/p`, or `/`
///   when the path is empty; `*` and authority-form pass through), ending at the first `?` or `#`,
///   percent-decoded: `%XX` with two hex digits becomes one byte (also `%2F` and `%00`, as CGI servers do),
///   any other `%` stays as is. `QUERY_STRING` is raw, from after the first `?` up to a `#`.
///   `REQUEST_URI` is the raw target.
/// * `CONTENT_TYPE` is the first Content-Type value; `CONTENT_LENGTH` is `head.contentLength` in canonical
///   decimal (the parser has already checked that all Content-Length values agree).
/// * Fixes of D27: a header whose name contains `_` is dropped (else `X_Foo` could spoof `X-Foo`; nginx
///   does the same); Content-Type and Content-Length are not repeated as `HTTP_*`; repeated names are
///   joined into one value with `, ` (RFC 9110 §5.3), Cookie with `; ` (RFC 6265 §5.4). Empty values are
///   left out of a join. Names compare ASCII case-insensitively.
///
/// No String is built and nothing is allocated per header: the packet is written straight into `out`.
/// Finding duplicates is O(n²) in the header count, which the parser caps at 100.
package enum UwsgiEncoder {
    /// The most bytes of pairs the 16-bit size field can describe.
    package static var maxPairsLength: Int { 65535 }

    /// Appends one uwsgi packet for `head` (whose ranges index `request`) to `out`.
    ///
    /// `out` is usually an emptied, reused buffer; its capacity is reserved once for the whole packet. On
    /// error `out` is left with its previous contents. `request` is only read during the call.
    package static func encode(
        head: HTTPRequestHead,
        request: UnsafeRawBufferPointer,
        context: UwsgiRequestContext,
        into out: inout [UInt8]
    ) throws(UwsgiError) {
        let start = out.count
        let bound = self.sizeBound(head: head, context: context)
        out.reserveCapacity(start + min(bound, 4 + self.maxPairsLength + 1))

        // Header; bytes 1–2 are patched once the pairs are written.
        out.append(0)
        out.append(0)
        out.append(0)
        out.append(0)

        self.appendPair("REQUEST_METHOD", self.bytes(head.method, in: request), into: &out)
        self.appendPair("SCRIPT_NAME", "", into: &out)

        let target = self.splitTarget(head.target, in: request)
        self.appendKey("PATH_INFO", into: &out)
        if target.emptyAbsolutePath {
            self.appendValue("/", into: &out)
        } else {
            let lengthAt = self.beginValue(into: &out)
            self.appendPercentDecoded(self.bytes(target.path, in: request), into: &out)
            self.endValue(lengthAt: lengthAt, into: &out)
        }
        self.appendPair("QUERY_STRING", self.bytes(target.query, in: request), into: &out)

        for field in head.headers where self.isHeader(field, .contentType, "content-type", in: request) {
            self.appendPair("CONTENT_TYPE", self.bytes(field.value, in: request), into: &out)
            break
        }
        if let contentLength = head.contentLength {
            precondition(contentLength >= 0, "negative Content-Length from the parser")
            self.appendKey("CONTENT_LENGTH", into: &out)
            let lengthAt = self.beginValue(into: &out)
            self.appendDecimal(contentLength, into: &out)
            self.endValue(lengthAt: lengthAt, into: &out)
        }

        self.appendKey("SERVER_NAME", into: &out)
        self.appendValue(context.serverName, into: &out)
        self.appendKey("SERVER_PORT", into: &out)
        self.appendValue(context.serverPort, into: &out)
        self.appendPair("SERVER_PROTOCOL", head.version.text, into: &out)
        self.appendPair("REQUEST_URI", self.bytes(head.target, in: request), into: &out)
        self.appendKey("REMOTE_ADDR", into: &out)
        self.appendValue(context.remoteAddress, into: &out)
        self.appendKey("REMOTE_PORT", into: &out)
        self.appendValue(context.remotePort, into: &out)
        self.appendPair("UWSGI_SCHEME", context.isTLS ? "https" : "http", into: &out)
        if context.isTLS {
            self.appendPair("HTTPS", "on", into: &out)
            if !context.tlsServerName.isEmpty {
                self.appendKey("SSL_TLS_SNI", into: &out)
                self.appendValue(context.tlsServerName, into: &out)
            }
            if !context.tlsVersion.isEmpty {
                self.appendKey("SSL_PROTOCOL", into: &out)
                self.appendValue(context.tlsVersion, into: &out)
            }
        }

        self.appendHeaders(head.headers, in: request, into: &out)

        let pairsLength = out.count - start - 4
        guard pairsLength <= self.maxPairsLength else {
            out.removeSubrange(start...)
            throw .packetTooLarge(limit: self.maxPairsLength)
        }
        out[start + 1] = UInt8(truncatingIfNeeded: pairsLength)
        out[start + 2] = UInt8(truncatingIfNeeded: pairsLength >> 8)
    }

    // MARK: - Headers

    /// One `HTTP_<NAME>` pair per distinct name, in first-arrival order, duplicates joined.
    private static func appendHeaders(
        _ headers: [HeaderField],
        in request: UnsafeRawBufferPointer,
        into out: inout [UInt8]
    ) {
        for index in headers.indices {
            let field = headers[index]
            if self.isHeader(field, .contentType, "content-type", in: request)
                || self.isHeader(field, .contentLength, "content-length", in: request)
            {
                continue
            }
            let name = self.bytes(field.name, in: request)
            if name.contains(UInt8(ascii: "_")) {
                continue
            }
            var seenBefore = false
            for earlier in 0..<index where self.sameName(headers[earlier].name, field.name, in: request) {
                seenBefore = true
                break
            }
            if seenBefore {
                continue
            }

            // Key: HTTP_ + name, a–z uppercased and `-` turned into `_`; other token bytes unchanged.
            self.appendLength(5 + name.count, into: &out)
            self.appendStatic("HTTP_", into: &out)
            for byte in name {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"): out.append(byte - 0x20)
                case UInt8(ascii: "-"): out.append(UInt8(ascii: "_"))
                default: out.append(byte)
                }
            }

            let separator: StaticString =
                self.isHeader(field, .cookie, "cookie", in: request) ? "; " : ", "
            let lengthAt = self.beginValue(into: &out)
            var wroteValue = false
            for later in index..<headers.count
            where later == index
                || self.sameName(headers[later].name, field.name, in: request)
            {
                let value = self.bytes(headers[later].value, in: request)
                if value.isEmpty {
                    continue
                }
                if wroteValue {
                    self.appendStatic(separator, into: &out)
                }
                out.appendBytes(value)
                wroteValue = true
            }
            self.endValue(lengthAt: lengthAt, into: &out)
        }
    }

    /// Whether `field` is the header `kind`. Trusts the parser's classification and falls back to comparing
    /// the name only when the field was not classified (hand-built heads).
    private static func isHeader(
        _ field: HeaderField,
        _ kind: KnownHeader,
        _ lowercaseName: StaticString,
        in request: UnsafeRawBufferPointer
    ) -> Bool {
        if let known = field.known {
            return known == kind
        }
        let name = self.bytes(field.name, in: request)
        guard name.count == lowercaseName.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: lowercaseName.utf8Start, count: lowercaseName.utf8CodeUnitCount)
        for offset in 0..<name.count where self.lowercased(name[offset]) != expected[offset] {
            return false
        }
        return true
    }

    private static func sameName(_ a: Range<Int>, _ b: Range<Int>, in request: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        let left = self.bytes(a, in: request)
        let right = self.bytes(b, in: request)
        for offset in 0..<left.count where self.lowercased(left[offset]) != self.lowercased(right[offset]) {
            return false
        }
        return true
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 0x20 : byte
    }

    // MARK: - Writing

    /// Bytes of `range` in the request buffer. A range outside it is a parser bug, not bad input.
    static func bytes(_ range: Range<Int>, in request: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= request.count, "header range outside the request")
        return UnsafeRawBufferPointer(rebasing: request[range])
    }

    /// A length prefix. Values above 65535 are truncated here, but they also push the pairs past
    /// `maxPairsLength`, so `encode` throws and discards the packet before anyone sees it.
    private static func appendLength(_ length: Int, into out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: length))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
    }

    private static func appendStatic(_ text: StaticString, into out: inout [UInt8]) {
        out.appendBytes(text)
    }

    /// A length-prefixed constant: a key, or a fixed value such as `on`.
    private static func appendField(_ text: StaticString, into out: inout [UInt8]) {
        self.appendLength(text.utf8CodeUnitCount, into: &out)
        self.appendStatic(text, into: &out)
    }

    private static func appendKey(_ key: StaticString, into out: inout [UInt8]) {
        self.appendField(key, into: &out)
    }

    private static func appendValue(_ value: StaticString, into out: inout [UInt8]) {
        self.appendField(value, into: &out)
    }

    private static func appendValue(_ value: [UInt8], into out: inout [UInt8]) {
        self.appendLength(value.count, into: &out)
        out.append(contentsOf: value)
    }

    private static func appendPair(_ key: StaticString, _ value: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        self.appendKey(key, into: &out)
        self.appendLength(value.count, into: &out)
        out.appendBytes(value)
    }

    private static func appendPair(_ key: StaticString, _ value: StaticString, into out: inout [UInt8]) {
        self.appendField(key, into: &out)
        self.appendField(value, into: &out)
    }

    /// Reserves a value's length prefix when the length is known only after writing; see `endValue`.
    private static func beginValue(into out: inout [UInt8]) -> Int {
        out.append(0)
        out.append(0)
        return out.count - 2
    }

    private static func endValue(lengthAt position: Int, into out: inout [UInt8]) {
        let length = out.count - position - 2
        out[position] = UInt8(truncatingIfNeeded: length)
        out[position + 1] = UInt8(truncatingIfNeeded: length >> 8)
    }

    private static func appendDecimal(_ value: Int, into out: inout [UInt8]) {
        let first = out.count
        var rest = value
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        out[first...].reverse()
    }

    /// An upper bound of the packet size, so `encode` reserves once. Each variable's value comes from the
    /// target (at most three times: PATH_INFO, QUERY_STRING, REQUEST_URI), a header, the context or a
    /// constant; joining adds at most two separator bytes per header.
    private static func sizeBound(head: HTTPRequestHead, context: UwsgiRequestContext) -> Int {
        // 14 fixed keys (159 bytes) + their 28 length prefixes + constant values + decimal Content-Length.
        var bound = 4 + 159 + 56 + 8 + 5 + 2 + 1 + 20
        bound += head.method.count + 3 * head.target.count
        bound += context.serverName.count + context.serverPort.count
        bound += context.remoteAddress.count + context.remotePort.count
        bound += 4 + 11 + context.tlsServerName.count + 4 + 12 + context.tlsVersion.count
        for field in head.headers {
            // 4 prefix bytes + "HTTP_" + name + value + separator; Content-Type's value may appear twice.
            bound += 4 + 5 + field.name.count + 2 * field.value.count + 2
        }
        return bound
    }
}
