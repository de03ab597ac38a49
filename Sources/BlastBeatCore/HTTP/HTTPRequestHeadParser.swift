/// Strict RFC 9112 parser for HTTP/1.1 and HTTP/1.0 request heads, over bytes in a caller-owned buffer.
///
/// The parser records byte ranges into `HTTPRequestHead` and never builds a String. It rejects every
/// ambiguity that lets two HTTP implementations frame the same bytes differently (request
/// smuggling): bare CR or LF, obs-fold, whitespace before the colon, control bytes, Content-Length
/// together with Transfer-Encoding, differing Content-Lengths, and any transfer coding but a single
/// `chunked`.
///
/// Resuming (picohttpparser's `last_len`): when the head is incomplete, the parser keeps where it
/// stopped: lines already parsed stay in `head`, and the scan for the end of the unfinished line
/// resumes where it left off. A re-call with a longer buffer (same start, same `head`) therefore
/// costs only the new bytes. Every decision depends only on the bytes before it, so a head fed one
/// byte at a time gives the same result, or the same error, as the whole head at once.
///
/// Limits, all checked as soon as the buffer proves them exceeded:
/// - the request line (method SP target SP version, without CRLF) is at most `maxRequestLine` bytes → 414;
/// - the head, from the first byte of the request line through the blank line, is at most
///   `maxHeadBytes` bytes → 431 (empty lines before the request line are not counted);
/// - at most `maxHeaderCount` header lines → 431;
/// - at most `maxLeadingEmptyLineBytes` bytes of empty lines before the request line → 400.
package struct HTTPRequestHeadParser: Sendable {
    package var limits: HTTPLimits
    private var resumePoint: ResumePoint = .start

    /// RFC 9112 §2.2 lets a server skip empty lines before the request line; this bounds how many
    /// (2,047 CRLFs). 4 KiB of them ends the connection with `.invalidLineEnding` (400).
    package static let maxLeadingEmptyLineBytes = 4096

    /// Where the next call continues. Offsets are from the start of the buffer.
    private enum ResumePoint: Sendable {
        /// Nothing scanned yet: `head` is reset on the next call.
        case start
        /// Skipping empty lines; `next` is the first byte not yet looked at.
        case leadingEmptyLines(next: Int)
        /// Looking for the CRLF that ends the request line starting at `start`; bytes before
        /// `scanned` hold no CR or LF.
        case requestLine(start: Int, scanned: Int)
        /// Request line and `headerCount` header lines are in `head`; looking for the end of the
        /// line (a header, or the blank line) that starts at `lineStart`.
        case headerLine(requestStart: Int, lineStart: Int, scanned: Int, headerCount: Int)
    }

    package init(limits: HTTPLimits) {
        self.limits = limits
    }

    /// Forgets a partly scanned head; needed when the buffer's start moves (the connection
    /// compacted or consumed bytes) before `parse` returned true or threw. After `parse` returns
    /// true or throws the parser has already reset itself.
    package mutating func reset() {
        resumePoint = .start
    }

    /// Parses a complete head at the start of `bytes` into `head`.
    ///
    /// Returns true when the head is complete: `head` then describes it and `head.length` bytes
    /// were used. Returns false when more bytes are needed; `head` then holds partial state that
    /// the next call continues from, so pass the same `head` again with the same buffer start,
    /// grown. (If `head` or the buffer does not match what the parser left, it starts over from
    /// byte 0 instead of trusting them.) Throws the first error in byte order.
    package mutating func parse(_ bytes: RawSpan, into head: inout HTTPRequestHead) throws(HTTPParseError) -> Bool {
        try bytes.withUnsafeBytes { (raw) throws(HTTPParseError) in try parse(buffer: raw, into: &head) }
    }

    private mutating func parse(
        buffer bytes: UnsafeRawBufferPointer,
        into head: inout HTTPRequestHead
    ) throws(HTTPParseError) -> Bool {
        var point = resumePoint
        // From here on an error leaves the parser at `.start`.
        resumePoint = .start
        switch point {
        case .start:
            break
        case .leadingEmptyLines(let next):
            // Nothing of this head is in `head` yet; drop whatever another head left there.
            head.headers.removeAll(keepingCapacity: true)
            if bytes.count < next { point = .start }
        case .requestLine(_, let scanned):
            head.headers.removeAll(keepingCapacity: true)
            if bytes.count < scanned { point = .start }
        case .headerLine(let requestStart, _, let scanned, let headerCount):
            if bytes.count < scanned || head.headers.count != headerCount || head.method.lowerBound != requestStart {
                point = .start
            }
        }
        if case .start = point {
            head.reset()
            point = .leadingEmptyLines(next: 0)
        }
        guard let raw = bytes.baseAddress, !bytes.isEmpty else {
            resumePoint = point
            return false
        }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        if try scan(base, count: bytes.count, from: &point, into: &head) {
            return true
        }
        resumePoint = point
        return false
    }

    /// Advances `point` over complete lines; returns true when the blank line was reached.
    private func scan(
        _ base: UnsafePointer<UInt8>,
        count: Int,
        from point: inout ResumePoint,
        into head: inout HTTPRequestHead
    ) throws(HTTPParseError) -> Bool {
        typealias S = HTTPSyntax
        while true {
            switch point {
            case .start:
                preconditionFailure("parse(_:into:) replaces .start before scanning")

            case .leadingEmptyLines(let next):
                guard next < count else { return false }
                switch base[next] {
                case S.cr:
                    guard next + 1 < count else { return false }
                    guard base[next + 1] == S.lf else { throw .invalidLineEnding(offset: next) }
                    guard next + 2 < Self.maxLeadingEmptyLineBytes else {
                        throw .invalidLineEnding(offset: next + 2)
                    }
                    point = .leadingEmptyLines(next: next + 2)
                case S.lf:
                    throw .invalidLineEnding(offset: next)
                default:
                    point = .requestLine(start: next, scanned: next)
                }

            case .requestLine(let start, let scanned):
                let lineMaxCR = start + Self.clamped(limits.maxRequestLine)
                let headMaxCR = start + Self.clamped(limits.maxHeadBytes) - 4
                switch try Self.findLineEnd(base, count: count, from: scanned, maxCR: min(lineMaxCR, headMaxCR)) {
                case .needMore(let scanned):
                    point = .requestLine(start: start, scanned: scanned)
                    return false
                case .tooLong:
                    if lineMaxCR <= headMaxCR { throw .requestLineTooLong(limit: limits.maxRequestLine) }
                    throw .headTooLarge(limit: limits.maxHeadBytes)
                case .found(let cr):
                    try parseRequestLine(base, start..<cr, into: &head)
                    point = .headerLine(requestStart: start, lineStart: cr + 2, scanned: cr + 2, headerCount: 0)
                }

            case .headerLine(let requestStart, let lineStart, let scanned, let headerCount):
                guard lineStart < count else { return false }
                if scanned == lineStart {
                    // Decided on the line's first byte, before its end is known.
                    switch base[lineStart] {
                    case S.cr, S.lf:
                        break
                    case S.sp, S.htab:
                        throw .obsoleteLineFolding(offset: lineStart)
                    default:
                        if headerCount >= limits.maxHeaderCount {
                            throw .tooManyHeaders(limit: limits.maxHeaderCount)
                        }
                    }
                }
                let maxCR = requestStart + Self.clamped(limits.maxHeadBytes) - 2
                switch try Self.findLineEnd(base, count: count, from: scanned, maxCR: maxCR) {
                case .needMore(let scanned):
                    point = .headerLine(
                        requestStart: requestStart,
                        lineStart: lineStart,
                        scanned: scanned,
                        headerCount: headerCount
                    )
                    return false
                case .tooLong:
                    throw .headTooLarge(limit: limits.maxHeadBytes)
                case .found(let cr) where cr == lineStart:
                    head.length = cr + 2
                    try interpretHeaders(base, into: &head)
                    return true
                case .found(let cr):
                    try Self.parseHeaderLine(base, lineStart..<cr, into: &head)
                    point = .headerLine(
                        requestStart: requestStart,
                        lineStart: cr + 2,
                        scanned: cr + 2,
                        headerCount: headerCount + 1
                    )
                }
            }
        }
    }

    /// A limit small enough that offset arithmetic cannot overflow (`Int.max` means "no limit").
    private static func clamped(_ limit: Int) -> Int { min(limit, Int.max >> 2) }

    private enum LineEnd {
        /// The line's CR is at `cr` (and an LF follows it).
        case found(cr: Int)
        /// No line end in the buffer yet; resume the search at `scanned`.
        case needMore(scanned: Int)
        /// The byte at `maxCR` is present and no line end starts at or before it.
        case tooLong
    }

    /// Looks for the CRLF ending a line, starting at `from`; a CR may sit at `maxCR` at the latest.
    ///
    /// Bare LF and CR-not-followed-by-LF are errors wherever they are. The common case (no CR/LF in
    /// the next 8 bytes) is checked a word at a time.
    private static func findLineEnd(
        _ base: UnsafePointer<UInt8>,
        count: Int,
        from: Int,
        maxCR: Int
    ) throws(HTTPParseError) -> LineEnd {
        typealias S = HTTPSyntax
        let end = min(count, maxCR + 1)
        var i = from
        while i < end {
            if i + 8 <= end,
                !S.mayContainLineBreak(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
            {
                i += 8
                continue
            }
            switch base[i] {
            case S.cr:
                guard i + 1 < count else { return .needMore(scanned: i) }
                guard base[i + 1] == S.lf else { throw .invalidLineEnding(offset: i) }
                return .found(cr: i)
            case S.lf:
                throw .invalidLineEnding(offset: i)
            default:
                i += 1
            }
        }
        // Every byte up to `maxCR` is present and none of them starts the line end.
        return i > maxCR ? .tooLong : .needMore(scanned: i)
    }

    /// `method SP request-target SP HTTP-version`, exactly single spaces (RFC 9112 §3).
    private func parseRequestLine(
        _ base: UnsafePointer<UInt8>,
        _ line: Range<Int>,
        into head: inout HTTPRequestHead
    ) throws(HTTPParseError) {
        typealias S = HTTPSyntax
        let cr = line.upperBound
        var i = line.lowerBound
        while i < cr, S.isTokenByte(base[i]) { i += 1 }
        guard i > line.lowerBound else { throw .invalidMethod }
        guard i < cr else { throw .invalidLineEnding(offset: cr) }
        guard base[i] == S.sp else { throw .invalidMethod }
        let method = line.lowerBound..<i

        i += 1
        let targetStart = i
        while i < cr, base[i] > 0x20, base[i] < 0x7F { i += 1 }
        guard i > targetStart else { throw .invalidTarget }
        guard i < cr else { throw .invalidLineEnding(offset: cr) }
        guard base[i] == S.sp else { throw .invalidTarget }
        let target = targetStart..<i

        let version = try Self.parseVersion(base, i + 1..<cr)
        let methodKind = Self.methodKind(base, method)
        try Self.checkTargetForm(base, target, methodKind: methodKind)

        head.method = method
        head.methodKind = methodKind
        head.target = target
        head.version = version
    }

    /// `HTTP/1.1` or `HTTP/1.0`; any other `HTTP/DIGIT.DIGIT` is unsupported (505), the rest invalid.
    private static func parseVersion(
        _ base: UnsafePointer<UInt8>,
        _ range: Range<Int>
    ) throws(HTTPParseError) -> HTTPVersion {
        let p = base + range.lowerBound
        // HTTP-name is case-sensitive (RFC 9112 §2.3).
        guard range.count == 8, p[0] == 0x48, p[1] == 0x54, p[2] == 0x54, p[3] == 0x50, p[4] == 0x2F,
            p[6] == 0x2E, (0x30...0x39).contains(p[5]), (0x30...0x39).contains(p[7])
        else { throw .invalidVersion }
        switch (p[5], p[7]) {
        case (0x31, 0x31): return .http11
        case (0x31, 0x30): return .http10
        default: throw .unsupportedVersion
        }
    }

    /// Methods are case-sensitive (RFC 9110 §9.1); length first, then the bytes.
    private static func methodKind(_ base: UnsafePointer<UInt8>, _ method: Range<Int>) -> HTTPMethodKind {
        let p = base + method.lowerBound
        func matches(_ literal: StaticString) -> Bool {
            let l = literal.utf8Start
            for k in 0..<literal.utf8CodeUnitCount where p[k] != l[k] { return false }
            return true
        }
        switch method.count {
        case 3: return matches("GET") ? .get : matches("PUT") ? .put : .other
        case 4: return matches("POST") ? .post : matches("HEAD") ? .head : .other
        case 7: return matches("OPTIONS") ? .options : matches("CONNECT") ? .connect : .other
        default: return .other
        }
    }

    /// RFC 9112 §3.2: origin-form (`/…`), `*` only for OPTIONS, absolute-form only with the `http`
    /// or `https` scheme, a non-empty authority and no userinfo. CONNECT targets (authority-form) are
    /// not checked further. The Host comparison for absolute-form happens once Host is known.
    private static func checkTargetForm(
        _ base: UnsafePointer<UInt8>,
        _ target: Range<Int>,
        methodKind: HTTPMethodKind
    ) throws(HTTPParseError) {
        if methodKind == .connect || base[target.lowerBound] == UInt8(ascii: "/") { return }
        if target.count == 1, base[target.lowerBound] == UInt8(ascii: "*") {
            guard methodKind == .options else { throw .invalidTarget }
            return
        }
        guard let authority = absoluteFormAuthority(base, target), !authority.isEmpty else { throw .invalidTarget }
        for i in authority where base[i] == UInt8(ascii: "@") { throw .invalidTarget }
    }

    /// The authority of an `http://` or `https://` target (scheme case-insensitive), or nil for other forms.
    static func absoluteFormAuthority(_ base: UnsafePointer<UInt8>, _ target: Range<Int>) -> Range<Int>? {
        let start: Int
        if target.count >= 7, HTTPSyntax.equalsLowercase(base + target.lowerBound, "http://") {
            start = target.lowerBound + 7
        } else if target.count >= 8, HTTPSyntax.equalsLowercase(base + target.lowerBound, "https://") {
            start = target.lowerBound + 8
        } else {
            return nil
        }
        var end = start
        while end < target.upperBound {
            let b = base[end]
            if b == UInt8(ascii: "/") || b == UInt8(ascii: "?") || b == UInt8(ascii: "#") { break }
            end += 1
        }
        return start..<end
    }

    /// `field-name ":" OWS field-value OWS` (RFC 9112 §5); obs-fold was rejected by the caller.
    private static func parseHeaderLine(
        _ base: UnsafePointer<UInt8>,
        _ line: Range<Int>,
        into head: inout HTTPRequestHead
    ) throws(HTTPParseError) {
        typealias S = HTTPSyntax
        let cr = line.upperBound
        var i = line.lowerBound
        while i < cr, S.isTokenByte(base[i]) { i += 1 }
        // Also rejects an empty name, a missing colon and whitespace before the colon.
        guard i > line.lowerBound, i < cr, base[i] == S.colon else { throw .invalidHeaderName(offset: i) }
        let name = line.lowerBound..<i

        i += 1
        while i < cr, S.isWhitespace(base[i]) { i += 1 }
        let valueStart = i
        while i < cr {
            if i + 8 <= cr, !S.mayContainControl(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)) {
                i += 8
                continue
            }
            let b = base[i]
            guard S.isFieldVisible(b) || S.isWhitespace(b) else { throw .invalidHeaderValue(offset: i) }
            i += 1
        }
        var valueEnd = cr
        while valueEnd > valueStart, S.isWhitespace(base[valueEnd - 1]) { valueEnd -= 1 }
        let known = KnownHeader(name: base + name.lowerBound, count: name.count)
        // Room for a few headers at once instead of growing 1, 2, 4 (kept between requests).
        if head.headers.capacity == 0 { head.headers.reserveCapacity(4) }
        head.headers.append(HeaderField(name: name, value: valueStart..<valueEnd, known: known))
    }
}
