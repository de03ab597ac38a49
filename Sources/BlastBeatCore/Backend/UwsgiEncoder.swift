/// Per-request facts that do not come from the request bytes.
///
/// The caller normalises them; the encoder copies the bytes as given.
package struct UwsgiRequestContext: Sendable, Equatable {
    /// Host part of the matched vhost (or of the Host header), lowercased, without port. An IPv6 literal is
    /// given without brackets (`::1`), which fixes the original's split at the first colon.
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
    /// answers 431 (the original closed silently, or wrapped the size to 0).
    case packetTooLarge(limit: Int)

    package var description: String {
        switch self {
        case .packetTooLarge(let limit):
            return "uwsgi packet would exceed \(limit) bytes of variables (request head too large for the backend)"
        }
    }
}

/// Encodes a parsed request head as the uwsgi packet sent to the backend (docs/PROTOCOL.md, "The uwsgi
/// environment").
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
/// * Fixes of the original's header mapping: a header whose name contains `_` is dropped (else `X_Foo` could
///   spoof `X-Foo`; nginx does the same); Content-Type and Content-Length are not repeated as `HTTP_*`;
///   repeated names are joined into one value with `, ` (RFC 9110 §5.3), Cookie with `; ` (RFC 6265 §5.4).
///   Empty values are left out of a join. Names compare ASCII case-insensitively.
///
/// No String is built and nothing is allocated: the packet is written straight into room for `sizeBound`
/// bytes at the end of an array (`UwsgiWriter`), the session's packet, which keeps its capacity. Finding duplicates is O(n²) in the header count, which the parser caps at 100.
package enum UwsgiEncoder {
    /// The most bytes of pairs the 16-bit size field can describe.
    package static var maxPairsLength: Int { 65535 }

    /// Appends one uwsgi packet for `head` (whose ranges index `request`) to `out`, written in place after
    /// its last byte: room for `sizeBound` bytes is made (kept across requests by an array that keeps its
    /// capacity), nothing is zeroed or copied.
    ///
    /// On error `out` is left with its previous contents. `request` is only read during the call.
    ///
    /// The closures below see `head` and `context` through pointers: captured as values, both were copied and
    /// destroyed again (seven retains and releases, 700 instructions per request in callgrind).
    package static func encode(
        head: HTTPRequestHead,
        request: RawSpan,
        context: UwsgiRequestContext,
        into out: inout [UInt8]
    ) throws(UwsgiError) {
        let bound = self.sizeBound(head: head, context: context)
        try withUnsafePointer(to: head) { (head) throws(UwsgiError) in
            try withUnsafePointer(to: context) { (context) throws(UwsgiError) in
                try out.append(addingCapacity: bound) { (packet: inout OutputSpan<UInt8>) throws(UwsgiError) in
                    try packet.withUnsafeMutableBufferPointer { (room, initialized) throws(UwsgiError) in
                        try request.withUnsafeBytes { (request) throws(UwsgiError) in
                            initialized = try self.encode(
                                head: head, request: request, context: context, into: UnsafeMutableRawBufferPointer(room))
                        }
                    }
                }
            }
        }
    }

    /// Writes one uwsgi packet for `head` (whose ranges index `request`) at the start of `buffer`,
    /// which must hold at least `sizeBound(head:context:)` bytes; returns the packet's length.
    private static func encode(
        head: UnsafePointer<HTTPRequestHead>,
        request: UnsafeRawBufferPointer,
        context: UnsafePointer<UwsgiRequestContext>,
        into buffer: UnsafeMutableRawBufferPointer
    ) throws(UwsgiError) -> Int {
        var out = UwsgiWriter(buffer)
        // Header; bytes 1–2 are patched once the pairs are written.
        out.byte(0)
        out.length(0)
        out.byte(0)

        self.pair("REQUEST_METHOD", self.bytes(head.pointee.method, in: request), into: &out)
        out.field("SCRIPT_NAME")
        out.length(0)

        let target = self.splitTarget(head.pointee.target, in: request)
        out.field("PATH_INFO")
        if target.emptyAbsolutePath {
            out.field("/")
        } else {
            let lengthAt = out.beginValue()
            self.appendPercentDecoded(self.bytes(target.path, in: request), into: &out)
            out.endValue(lengthAt: lengthAt)
        }
        self.pair("QUERY_STRING", self.bytes(target.query, in: request), into: &out)

        for field in head.pointee.headers where self.isHeader(field, .contentType, "content-type", in: request) {
            self.pair("CONTENT_TYPE", self.bytes(field.value, in: request), into: &out)
            break
        }
        if let contentLength = head.pointee.contentLength {
            precondition(contentLength >= 0, "negative Content-Length from the parser")
            out.field("CONTENT_LENGTH")
            let lengthAt = out.beginValue()
            out.decimal(contentLength)
            out.endValue(lengthAt: lengthAt)
        }

        out.field("SERVER_NAME")
        out.field(context.pointee.serverName)
        out.field("SERVER_PORT")
        out.field(context.pointee.serverPort)
        out.field("SERVER_PROTOCOL")
        out.field(head.pointee.version.text)
        self.pair("REQUEST_URI", self.bytes(head.pointee.target, in: request), into: &out)
        out.field("REMOTE_ADDR")
        out.field(context.pointee.remoteAddress)
        out.field("REMOTE_PORT")
        out.field(context.pointee.remotePort)
        out.field("UWSGI_SCHEME")
        out.field(context.pointee.isTLS ? "https" : "http")
        if context.pointee.isTLS {
            out.field("HTTPS")
            out.field("on")
            if !context.pointee.tlsServerName.isEmpty {
                out.field("SSL_TLS_SNI")
                out.field(context.pointee.tlsServerName)
            }
            if !context.pointee.tlsVersion.isEmpty {
                out.field("SSL_PROTOCOL")
                out.field(context.pointee.tlsVersion)
            }
        }

        self.appendHeaders(head.pointee.headers, in: request, into: &out)

        let pairsLength = out.count - 4
        guard pairsLength <= self.maxPairsLength else {
            throw .packetTooLarge(limit: self.maxPairsLength)
        }
        out.patchLength(at: 1, pairsLength)
        return out.count
    }

    // MARK: - Headers

    /// One `HTTP_<NAME>` pair per distinct name, in first-arrival order, duplicates joined.
    private static func appendHeaders(
        _ headers: [HeaderField],
        in request: UnsafeRawBufferPointer,
        into out: inout UwsgiWriter
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
            out.length(5 + name.count)
            out.bytes("HTTP_")
            for byte in name {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"): out.byte(byte - 0x20)
                case UInt8(ascii: "-"): out.byte(UInt8(ascii: "_"))
                default: out.byte(byte)
                }
            }

            let separator: StaticString =
                self.isHeader(field, .cookie, "cookie", in: request) ? "; " : ", "
            let lengthAt = out.beginValue()
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
                    out.bytes(separator)
                }
                out.bytes(value)
                wroteValue = true
            }
            out.endValue(lengthAt: lengthAt)
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

    private static func pair(_ key: StaticString, _ value: UnsafeRawBufferPointer, into out: inout UwsgiWriter) {
        out.field(key)
        out.field(value)
    }

    /// An upper bound of the packet size: the buffer `encode` needs. Each variable's value comes from the
    /// target (at most three times: PATH_INFO, QUERY_STRING, REQUEST_URI), a header, the context or a
    /// constant; joining adds at most two separator bytes per header.
    package static func sizeBound(head: HTTPRequestHead, context: UwsgiRequestContext) -> Int {
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
