/// Byte classes and small byte-range helpers shared by the HTTP/1.1 head parser and the body decoder.
///
/// Everything works on raw pointers into a caller-owned buffer and never builds a String. The
/// character sets are the RFC 9110 ones (§5.6.2 tchar, §5.5 field-vchar); they are bit masks rather
/// than lookup arrays so a test needs no lazily initialised global.
package enum HTTPSyntax {
    package static let cr: UInt8 = 0x0D
    package static let lf: UInt8 = 0x0A
    package static let sp: UInt8 = 0x20
    package static let htab: UInt8 = 0x09
    package static let colon: UInt8 = 0x3A
    package static let comma: UInt8 = 0x2C

    /// tchar for bytes 0x00–0x3F: `!#$%&'*+-.` and DIGIT.
    private static let tcharLow: UInt64 = 0x03FF_6CFA_0000_0000
    /// tchar for bytes 0x40–0x7F: ALPHA and `^_`|~`.
    private static let tcharHigh: UInt64 = 0x57FF_FFFF_C7FF_FFFE

    /// RFC 9110 tchar: the bytes of a method, a header name or a transfer coding.
    package static func isTokenByte(_ b: UInt8) -> Bool {
        // One select and one shift instead of a branch per half (names are the parser's hottest loop).
        let mask = b & 0x40 == 0 ? tcharLow : tcharHigh
        return b < 0x80 && (mask >> UInt64(b & 0x3F)) & 1 != 0
    }

    /// field-vchar (VCHAR / obs-text): a header-value byte other than SP and HTAB.
    package static func isFieldVisible(_ b: UInt8) -> Bool { b > 0x20 && b != 0x7F }

    /// SP or HTAB: optional whitespace (OWS/BWS).
    package static func isWhitespace(_ b: UInt8) -> Bool { b == sp || b == htab }

    /// Whether `p[0..<literal.utf8CodeUnitCount]` equals `literal`, ignoring ASCII case.
    ///
    /// `literal` must be lowercase ASCII. Folding with `| 0x20` is exact as long as the compared
    /// bytes hold no control characters (0x0D would fold onto `-`, 0x10–0x19 onto digits); every
    /// caller compares bytes the parser has already validated.
    package static func equalsLowercase(_ p: UnsafePointer<UInt8>, _ literal: StaticString) -> Bool {
        let l = literal.utf8Start
        for k in 0..<literal.utf8CodeUnitCount where p[k] | 0x20 != l[k] {
            return false
        }
        return true
    }

    /// Whether `bytes` equals `literal` (lowercase ASCII), folding only A–Z: exact for any input,
    /// including unvalidated bytes (unlike `equalsLowercase`, which trusts the parser's checks).
    package static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        equalsIgnoringCase(bytes.bytes, literal)
    }

    package static func equalsIgnoringCase(_ bytes: RawSpan, _ literal: StaticString) -> Bool {
        guard bytes.byteCount == literal.utf8CodeUnitCount else { return false }
        let l = literal.utf8Start
        for k in 0..<bytes.byteCount {
            var b = bytes.unsafeLoad(fromByteOffset: k, as: UInt8.self)
            if b >= 0x41 && b <= 0x5A { b |= 0x20 }
            if b != l[k] { return false }
        }
        return true
    }

    /// The value of the first header `name` (lowercase) in a response head, spaces, tabs and a CR around it
    /// trimmed; nil when absent. Lines end at LF.
    package static func headerValue(named name: StaticString, in head: RawSpan) -> [UInt8]? {
        let length = name.utf8CodeUnitCount
        var lineStart = 0
        while lineStart < head.byteCount {
            var lineEnd = lineStart
            while lineEnd < head.byteCount && head.unsafeLoad(fromByteOffset: lineEnd, as: UInt8.self) != 0x0A { lineEnd += 1 }
            if lineEnd - lineStart > length, head.unsafeLoad(fromByteOffset: lineStart + length, as: UInt8.self) == 0x3A,
                equalsIgnoringCase(head.extracting(lineStart..<(lineStart + length)), name)
            {
                return copy(trimmed(head, (lineStart + length + 1)..<lineEnd, alsoCR: true), of: head)
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// The elements of a comma-separated header value (RFC 9110 §5.6.1), spaces and tabs around each trimmed,
    /// empty ones left out.
    package static func listElements(_ value: RawSpan) -> [[UInt8]] {
        var elements: [[UInt8]] = []
        var start = 0
        while start <= value.byteCount {
            var end = start
            while end < value.byteCount && value.unsafeLoad(fromByteOffset: end, as: UInt8.self) != comma { end += 1 }
            let element = trimmed(value, start..<end, alsoCR: false)
            if !element.isEmpty { elements.append(copy(element, of: value)) }
            start = end + 1
        }
        return elements
    }

    /// `range` of `bytes` without the spaces and tabs (and, `alsoCR`, carriage returns) at its ends.
    private static func trimmed(_ bytes: RawSpan, _ range: Range<Int>, alsoCR: Bool) -> Range<Int> {
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || (alsoCR && byte == 0x0D) }
        var first = range.lowerBound, last = range.upperBound
        while first < last && isBlank(bytes.unsafeLoad(fromByteOffset: first, as: UInt8.self)) { first += 1 }
        while last > first && isBlank(bytes.unsafeLoad(fromByteOffset: last - 1, as: UInt8.self)) { last -= 1 }
        return first..<last
    }

    private static func copy(_ range: Range<Int>, of bytes: RawSpan) -> [UInt8] {
        var copy: [UInt8] = []
        copy.appendBytes(bytes.extracting(range))
        return copy
    }

    /// Whether the bytes at `range` equal `literal` (lowercase ASCII), ignoring ASCII case.
    package static func rangeEqualsLowercase(
        _ base: UnsafePointer<UInt8>,
        _ range: Range<Int>,
        _ literal: StaticString
    ) -> Bool {
        range.count == literal.utf8CodeUnitCount && equalsLowercase(base + range.lowerBound, literal)
    }

    /// Whether any byte of the word is below 0x20 (a control byte, HTAB included) or is DEL.
    ///
    /// Same trick as `mayContainLineBreak`, plus a zero test of `word ^ 0x7F…` for DEL.
    package static func mayContainControl(_ word: UInt64) -> Bool {
        let del = word ^ 0x7F7F_7F7F_7F7F_7F7F
        let below20 = (word &- 0x2020_2020_2020_2020) & ~word
        let isDEL = (del &- 0x0101_0101_0101_0101) & ~del
        return (below20 | isDEL) & 0x8080_8080_8080_8080 != 0
    }

    /// Whether any byte of the little- or big-endian word is below 0x0E (so possibly CR or LF).
    ///
    /// The classic "haszero" bit trick: it never misses such a byte, and a false positive only
    /// sends the caller to its byte-by-byte path.
    package static func mayContainLineBreak(_ word: UInt64) -> Bool {
        (word &- 0x0E0E_0E0E_0E0E_0E0E) & ~word & 0x8080_8080_8080_8080 != 0
    }
}

/// Walks the elements of a comma-separated field value (RFC 9110 §5.6.1), trimmed of OWS.
///
/// Empty elements are returned as empty ranges so each caller decides whether they are allowed.
/// Quoted strings are not special: a comma inside quotes splits the element, which only makes
/// strict callers reject more.
package struct HTTPListElements {
    private let base: UnsafePointer<UInt8>
    private var position: Int
    private let end: Int
    private var exhausted = false

    package init(_ base: UnsafePointer<UInt8>, _ range: Range<Int>) {
        self.base = base
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    package mutating func next() -> Range<Int>? {
        if exhausted { return nil }
        var start = position
        var stop = start
        while stop < end, base[stop] != HTTPSyntax.comma { stop += 1 }
        if stop == end { exhausted = true } else { position = stop + 1 }
        var last = stop
        while start < last, HTTPSyntax.isWhitespace(base[start]) { start += 1 }
        while last > start, HTTPSyntax.isWhitespace(base[last - 1]) { last -= 1 }
        return start..<last
    }
}

extension KnownHeader {
    /// Matches a header name (already validated as a token) against the known names, ignoring case.
    ///
    /// Switches on the length first, then on the first byte, so at most one full comparison runs.
    package init?(name p: UnsafePointer<UInt8>, count: Int) {
        typealias S = HTTPSyntax
        let known: KnownHeader?
        switch count {
        case 2: known = S.equalsLowercase(p, "te") ? .te : nil
        case 4: known = S.equalsLowercase(p, "host") ? .host : nil
        case 6:
            switch p[0] | 0x20 {
            case UInt8(ascii: "e"): known = S.equalsLowercase(p, "expect") ? .expect : nil
            case UInt8(ascii: "c"): known = S.equalsLowercase(p, "cookie") ? .cookie : nil
            default: known = nil
            }
        case 7:
            switch p[0] | 0x20 {
            case UInt8(ascii: "u"): known = S.equalsLowercase(p, "upgrade") ? .upgrade : nil
            case UInt8(ascii: "t"): known = S.equalsLowercase(p, "trailer") ? .trailer : nil
            default: known = nil
            }
        case 10:
            switch p[0] | 0x20 {
            case UInt8(ascii: "c"): known = S.equalsLowercase(p, "connection") ? .connection : nil
            case UInt8(ascii: "k"): known = S.equalsLowercase(p, "keep-alive") ? .keepAlive : nil
            default: known = nil
            }
        case 12: known = S.equalsLowercase(p, "content-type") ? .contentType : nil
        case 14: known = S.equalsLowercase(p, "content-length") ? .contentLength : nil
        case 16: known = S.equalsLowercase(p, "proxy-connection") ? .proxyConnection : nil
        case 17:
            switch p[0] | 0x20 {
            case UInt8(ascii: "t"): known = S.equalsLowercase(p, "transfer-encoding") ? .transferEncoding : nil
            case UInt8(ascii: "s"): known = S.equalsLowercase(p, "sec-websocket-key") ? .secWebSocketKey : nil
            default: known = nil
            }
        case 21: known = S.equalsLowercase(p, "sec-websocket-version") ? .secWebSocketVersion : nil
        case 22: known = S.equalsLowercase(p, "sec-websocket-protocol") ? .secWebSocketProtocol : nil
        case 24: known = S.equalsLowercase(p, "sec-websocket-extensions") ? .secWebSocketExtensions : nil
        default: known = nil
        }
        guard let known else { return nil }
        self = known
    }
}
