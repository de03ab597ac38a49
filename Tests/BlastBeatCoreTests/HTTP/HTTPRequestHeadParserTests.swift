import Testing

@testable import BlastBeatCore

// MARK: - Table support

/// What a parsed head says, as Strings, so a table row reads like the request it describes.
/// Defaults describe `GET / HTTP/1.1` with `Host: a`.
struct ParsedHead: Equatable, Sendable {
    var method = "GET"
    var methodKind: HTTPMethodKind = .get
    var target = "/"
    var version: HTTPVersion = .http11
    /// `name: value` per header line; nil skips the comparison.
    var headers: [String]?
    /// nil: the whole input is the head.
    var length: Int?
    var contentLength: Int?
    var isChunked = false
    var keepAlive = true
    var expectContinue = false
    var host: String? = "a"
    var isWebSocketUpgrade = false
}

extension ParsedHead {
    init(_ head: HTTPRequestHead, in bytes: [UInt8]) {
        func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        self.init(
            method: text(head.method),
            methodKind: head.methodKind,
            target: text(head.target),
            version: head.version,
            headers: head.headers.map { "\(text($0.name)): \(text($0.value))" },
            length: head.length,
            contentLength: head.contentLength,
            isChunked: head.isChunked,
            keepAlive: head.keepAlive,
            expectContinue: head.expectContinue,
            host: head.host.map(text),
            isWebSocketUpgrade: head.isWebSocketUpgrade
        )
    }
}

enum HeadOutcome: Equatable, Sendable {
    case head(ParsedHead)
    case error(HTTPParseError)
    /// Every prefix, and the whole input, needs more bytes.
    case incomplete

    /// Drops what `expected` does not check (its headers, when nil).
    func compared(to expected: HeadOutcome) -> HeadOutcome {
        guard case .head(var actual) = self, case .head(let wanted) = expected, wanted.headers == nil else {
            return self
        }
        actual.headers = nil
        return .head(actual)
    }
}

struct HeadCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var limits: HTTPLimits
    var expected: HeadOutcome
    var testDescription: String { name }

    init(_ name: String, _ input: String, limits: HTTPLimits = HTTPLimits(), _ expected: HeadOutcome) {
        self.init(name, Array(input.utf8), limits: limits, expected)
    }

    init(_ name: String, _ input: [UInt8], limits: HTTPLimits = HTTPLimits(), _ expected: HeadOutcome) {
        self.name = name
        self.input = input
        self.limits = limits
        if case .head(var head) = expected, head.length == nil {
            head.length = input.count
            self.expected = .head(head)
        } else {
            self.expected = expected
        }
    }
}

/// A head from lines: joined with CRLF and ended by the blank line.
func crlfHead(_ lines: String...) -> String { lines.joined(separator: "\r\n") + "\r\n\r\n" }

/// The byte offset of `needle` in `text` (plus `plus`); traps if absent, which only a broken row can cause.
func byteOffset(of needle: String, in text: String, plus: Int = 0) -> Int {
    let hay = Array(text.utf8)
    let pin = Array(needle.utf8)
    for i in 0...(hay.count - pin.count) where Array(hay[i..<(i + pin.count)]) == pin { return i + plus }
    preconditionFailure("\(needle) not in row")
}

func headLimits(
    requestLine: Int = 8 * 1024,
    head: Int = 64 * 1024,
    headers: Int = 100,
    body: Int = 1 << 30
) -> HTTPLimits {
    var l = HTTPLimits()
    l.maxRequestLine = requestLine
    l.maxHeadBytes = head
    l.maxHeaderCount = headers
    l.maxBodySize = body
    return l
}

/// Parses `bytes` in one call.
func parseHeadWhole(_ bytes: [UInt8], limits: HTTPLimits) -> HeadOutcome {
    var parser = HTTPRequestHeadParser(limits: limits)
    var head = HTTPRequestHead()
    do {
        let done = try bytes.withUnsafeBytes { try parser.parse($0.bytes, into: &head) }
        return done ? .head(ParsedHead(head, in: bytes)) : .incomplete
    } catch let error as HTTPParseError {
        return .error(error)
    } catch {
        preconditionFailure("untyped error \(error)")
    }
}

/// Feeds a growing prefix of `bytes` (one more byte per call) to one parser and one head, as a
/// connection does; checks that a head completes exactly when its last byte arrives.
func parseHeadGrowing(_ bytes: [UInt8], limits: HTTPLimits) -> HeadOutcome {
    var parser = HTTPRequestHeadParser(limits: limits)
    var head = HTTPRequestHead()
    for n in 0...bytes.count {
        do {
            let done = try bytes.withUnsafeBytes {
                try parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]).bytes, into: &head)
            }
            if done {
                #expect(head.length == n, "completed at \(n) bytes but the head is \(head.length)")
                return .head(ParsedHead(head, in: bytes))
            }
        } catch let error as HTTPParseError {
            return .error(error)
        } catch {
            preconditionFailure("untyped error \(error)")
        }
    }
    return .incomplete
}

// MARK: - Tests

@Suite("HTTPRequestHeadParser")
struct HTTPRequestHeadParserTests {
    @Test(arguments: validHeads + smugglingAndSyntaxErrors + incompleteHeads + headLimitRows)
    func wholeAndOneByteAtATime(_ row: HeadCase) {
        #expect(parseHeadWhole(row.input, limits: row.limits).compared(to: row.expected) == row.expected, "whole")
        #expect(
            parseHeadGrowing(row.input, limits: row.limits).compared(to: row.expected) == row.expected,
            "one byte at a time"
        )
    }

    /// Without the resume state, no prefix of a valid head may already count as complete.
    @Test(arguments: validHeads)
    func everyPrefixIsIncompleteForAFreshParser(_ row: HeadCase) throws {
        guard case .head(let expected) = row.expected, let length = expected.length else { return }
        for n in 0..<length {
            #expect(parseHeadWhole(Array(row.input[0..<n]), limits: row.limits) == .incomplete, "prefix \(n)")
        }
    }

    @Test func pipelinedRequestsInOneBuffer() throws {
        let first = crlfHead("GET /1 HTTP/1.1", "Host: a")
        let second = crlfHead("POST /2 HTTP/1.1", "Host: a", "Content-Length: 5") + "hello"
        let third = crlfHead("GET /3 HTTP/1.1", "Host: a", "Connection: close")
        let bytes = Array((first + second + third).utf8)
        var parser = HTTPRequestHeadParser(limits: HTTPLimits())
        var head = HTTPRequestHead()
        var offset = 0
        var seen: [(String, Int?, Bool)] = []
        while offset < bytes.count {
            let done = try bytes.withUnsafeBytes { raw in
                try parser.parse(UnsafeRawBufferPointer(rebasing: raw[offset...]).bytes, into: &head)
            }
            #expect(done)
            let rest = Array(bytes[offset...])
            seen.append((String(decoding: rest[head.target], as: UTF8.self), head.contentLength, head.keepAlive))
            offset += head.length + (head.contentLength ?? 0)
        }
        #expect(offset == bytes.count)
        #expect(seen.map(\.0) == ["/1", "/2", "/3"])
        #expect(seen.map(\.1) == [nil, 5, nil])
        #expect(seen.map(\.2) == [true, true, false])
    }

    @Test func reusedHeadIsClearedBetweenRequests() throws {
        var parser = HTTPRequestHeadParser(limits: HTTPLimits())
        var head = HTTPRequestHead()
        let chunked = Array(
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Expect: 100-continue").utf8
        )
        let plain = Array(crlfHead("GET / HTTP/1.0").utf8)
        #expect(try chunked.withUnsafeBytes { try parser.parse($0.bytes, into: &head) })
        #expect(head.isChunked && head.expectContinue && head.headers.count == 3)
        let capacity = head.headers.capacity
        #expect(try plain.withUnsafeBytes { try parser.parse($0.bytes, into: &head) })
        #expect(
            ParsedHead(head, in: plain)
                == ParsedHead(version: .http10, headers: [], length: plain.count, keepAlive: false, host: nil)
        )
        #expect(head.headers.capacity == capacity)
    }

    /// A different `head`, or a shorter buffer, than the parser left makes it start over instead of
    /// trusting stale state.
    @Test func resumeStateIsNotTrustedBlindly() throws {
        let bytes = Array(crlfHead("GET /x HTTP/1.1", "Host: a", "X: 1", "Y: 2").utf8)
        let expected = ParsedHead(target: "/x", headers: ["Host: a", "X: 1", "Y: 2"], length: bytes.count)
        var parser = HTTPRequestHeadParser(limits: HTTPLimits())
        var head = HTTPRequestHead()
        #expect(
            try !bytes.withUnsafeBytes { try parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<30]).bytes, into: &head) }
        )
        var other = HTTPRequestHead()
        #expect(try bytes.withUnsafeBytes { try parser.parse($0.bytes, into: &other) })
        #expect(ParsedHead(other, in: bytes) == expected)

        #expect(
            try !bytes.withUnsafeBytes { try parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<30]).bytes, into: &head) }
        )
        #expect(
            try !bytes.withUnsafeBytes { try parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<20]).bytes, into: &head) }
        )
        #expect(try bytes.withUnsafeBytes { try parser.parse($0.bytes, into: &head) })
        #expect(ParsedHead(head, in: bytes) == expected)

        // reset() after a partial head, then a different buffer.
        #expect(
            try !bytes.withUnsafeBytes { try parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<30]).bytes, into: &head) }
        )
        parser.reset()
        let next = Array(crlfHead("HEAD / HTTP/1.1", "Host: b").utf8)
        #expect(try next.withUnsafeBytes { try parser.parse($0.bytes, into: &head) })
        #expect(
            ParsedHead(head, in: next)
                == ParsedHead(method: "HEAD", methodKind: .head, headers: ["Host: b"], length: next.count, host: "b")
        )
    }

    @Test func parserStartsOverAfterAnError() throws {
        var parser = HTTPRequestHeadParser(limits: HTTPLimits())
        var head = HTTPRequestHead()
        let bad = Array("GET / HTTP/1.1\nHost: a\r\n\r\n".utf8)
        #expect(throws: HTTPParseError.invalidLineEnding(offset: 14)) {
            try bad.withUnsafeBytes { try parser.parse($0.bytes, into: &head) }
        }
        let good = Array(crlfHead("GET / HTTP/1.1", "Host: a").utf8)
        #expect(try good.withUnsafeBytes { try parser.parse($0.bytes, into: &head) })
    }

    /// A CR, LF, NUL, DEL or HTAB at every position of a long value, so each lane of the
    /// word-at-a-time scans is checked.
    @Test(arguments: 0..<40)
    func specialByteAtEveryPositionOfAValue(_ position: Int) {
        let prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: "
        let at = prefix.utf8.count + position
        let cases: [(UInt8, HeadOutcome)] = [
            (0x0D, .error(.invalidLineEnding(offset: at))),
            (0x0A, .error(.invalidLineEnding(offset: at))),
            (0x00, .error(.invalidHeaderValue(offset: at))),
            (0x7F, .error(.invalidHeaderValue(offset: at))),
            (0x1F, .error(.invalidHeaderValue(offset: at))),
        ]
        for (byte, expected) in cases {
            var value = Array(String(repeating: "v", count: 40).utf8)
            value[position] = byte
            let bytes = Array(prefix.utf8) + value + Array("\r\n\r\n".utf8)
            #expect(parseHeadWhole(bytes, limits: HTTPLimits()) == expected, "byte \(byte)")
            #expect(parseHeadGrowing(bytes, limits: HTTPLimits()) == expected, "byte \(byte)")
        }
        var value = String(repeating: "v", count: 40)
        value.insert("\t", at: value.index(value.startIndex, offsetBy: position))
        let bytes = Array((prefix + value + "\r\n\r\n").utf8)
        guard case .head(let parsed) = parseHeadWhole(bytes, limits: HTTPLimits()) else {
            Issue.record("HTAB inside a value rejected")
            return
        }
        #expect(parsed.headers == ["Host: a", "X: " + (position == 0 ? String(value.dropFirst()) : value)])
    }

    @Test(arguments: [
        ("Host", KnownHeader.host), ("host", .host), ("HOST", .host), ("Content-Length", .contentLength),
        ("content-type", .contentType), ("Transfer-Encoding", .transferEncoding), ("CONNECTION", .connection),
        ("Expect", .expect), ("Upgrade", .upgrade), ("TE", .te), ("Keep-Alive", .keepAlive),
        ("Proxy-Connection", .proxyConnection), ("Trailer", .trailer), ("Cookie", .cookie),
        ("Sec-WebSocket-Key", .secWebSocketKey), ("sec-websocket-version", .secWebSocketVersion),
        ("Sec-WebSocket-Protocol", .secWebSocketProtocol), ("Sec-WebSocket-Extensions", .secWebSocketExtensions),
    ])
    func knownHeaderNames(_ name: String, _ known: KnownHeader) {
        let bytes = Array(name.utf8)
        #expect(bytes.withUnsafeBufferPointer { KnownHeader(name: $0.baseAddress!, count: $0.count) } == known)
    }

    @Test(arguments: [
        "Hosts", "Hos", "Content-Lengths", "Content_Length", "Transfer-Encodinq", "X-Host", "Tf", "Cookie2",
        "Set-Cookie", "Sec-WebSocket-Accept", "Upgrade-Insecure-Requests",
    ])
    func unknownHeaderNames(_ name: String) {
        let bytes = Array(name.utf8)
        #expect(bytes.withUnsafeBufferPointer { KnownHeader(name: $0.baseAddress!, count: $0.count) } == nil)
    }

    @Test func tokenBytesMatchRFC9110() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for b in 0...255 {
            #expect(HTTPSyntax.isTokenByte(UInt8(b)) == tchar.contains(UInt8(b)), "byte \(b)")
        }
    }

    @Test func errorStatuses() {
        #expect(HTTPParseError.requestLineTooLong(limit: 1).status == 414)
        #expect(HTTPParseError.unsupportedTransferEncoding.status == 501)
        #expect(HTTPParseError.unsupportedVersion.status == 505)
        #expect(HTTPParseError.tooManyHeaders(limit: 1).status == 431)
        #expect(HTTPParseError.contentLengthWithTransferEncoding.status == 400)
    }
}
