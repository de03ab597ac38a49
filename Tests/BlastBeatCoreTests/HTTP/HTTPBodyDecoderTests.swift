import Testing

@testable import BlastBeatCore

// MARK: - Table support

enum BodyFraming: Sendable {
    case contentLength(Int)
    case chunked
}

enum BodyOutcome: Equatable, Sendable {
    /// The body ended; `payload` is the decoded data and `rest` the bytes after the body.
    case finished(payload: String, rest: String)
    /// All input consumed, body not finished yet.
    case incomplete(payload: String)
    case error(HTTPParseError)
}

struct BodyCase: Sendable, CustomTestStringConvertible {
    var name: String
    var framing: BodyFraming
    var limits: HTTPLimits
    var input: [UInt8]
    var expected: BodyOutcome
    var testDescription: String { name }

    init(
        _ name: String,
        framing: BodyFraming = .chunked,
        limits: HTTPLimits = HTTPLimits(),
        _ input: String,
        _ expected: BodyOutcome
    ) {
        self.name = name
        self.framing = framing
        self.limits = limits
        self.input = Array(input.utf8)
        self.expected = expected
    }
}

func bodyLimits(body: Int = 1 << 30, chunkLine: Int = 4 * 1024, trailer: Int = 16 * 1024) -> HTTPLimits {
    var l = HTTPLimits()
    l.maxBodySize = body
    l.maxChunkLine = chunkLine
    l.maxTrailerBytes = trailer
    return l
}

/// Feeds `input` in pieces of `pieceSize` bytes the way a connection does: unconsumed bytes stay
/// in front of the next piece, and `decode` is called until it consumes nothing or finishes.
func decodeBody(_ input: [UInt8], framing: BodyFraming, limits: HTTPLimits, pieceSize: Int) -> BodyOutcome {
    var decoder: HTTPBodyDecoder
    switch framing {
    case .contentLength(let n): decoder = .contentLength(n)
    case .chunked: decoder = .chunked(limits: limits)
    }
    var pending: [UInt8] = []
    var payload: [UInt8] = []
    var fed = 0
    while true {
        while !decoder.isFinished {
            let step: (consumed: Int, payload: Range<Int>?)
            do {
                step = try pending.withUnsafeBytes { try decoder.decode($0.bytes) }
            } catch let error as HTTPParseError {
                return .error(error)
            } catch {
                preconditionFailure("untyped error \(error)")
            }
            if let range = step.payload {
                #expect(range.upperBound <= step.consumed && !range.isEmpty)
                payload += pending[range]
            }
            pending.removeFirst(step.consumed)
            if step.consumed == 0 { break }
        }
        #expect(decoder.payloadBytes == payload.count)
        if decoder.isFinished {
            return .finished(
                payload: String(decoding: payload, as: UTF8.self),
                rest: String(decoding: pending + input[fed...], as: UTF8.self)
            )
        }
        if fed == input.count { return .incomplete(payload: String(decoding: payload, as: UTF8.self)) }
        let next = min(fed + pieceSize, input.count)
        pending += input[fed..<next]
        fed = next
    }
}

// MARK: - Rows

let bodyRows: [BodyCase] = [
    // Content-Length.
    BodyCase("content-length", framing: .contentLength(5), "hello", .finished(payload: "hello", rest: "")),
    BodyCase(
        "content-length leaves the next request",
        framing: .contentLength(5),
        "helloGET /",
        .finished(payload: "hello", rest: "GET /")
    ),
    BodyCase("content-length 0", framing: .contentLength(0), "GET /", .finished(payload: "", rest: "GET /")),
    BodyCase("content-length short", framing: .contentLength(5), "hel", .incomplete(payload: "hel")),
    // Chunked, valid.
    BodyCase("one chunk", "5\r\nhello\r\n0\r\n\r\n", .finished(payload: "hello", rest: "")),
    BodyCase(
        "several chunks",
        "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
        .finished(payload: "hello world", rest: "")
    ),
    BodyCase(
        "hex sizes, both cases",
        "a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n",
        .finished(payload: "0123456789abcdefghijk", rest: "")
    ),
    BodyCase(
        "leading zeros, 16 digits",
        "0000000000000005\r\nhello\r\n0000\r\n\r\n",
        .finished(payload: "hello", rest: "")
    ),
    BodyCase("data with CR and LF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", .finished(payload: "\r\n\r\n", rest: "")),
    BodyCase("empty body", "0\r\n\r\n", .finished(payload: "", rest: "")),
    BodyCase(
        "next request after the body",
        "0\r\n\r\nGET / HTTP/1.1\r\n",
        .finished(payload: "", rest: "GET / HTTP/1.1\r\n")
    ),
    BodyCase("extension without value", "5;foo\r\nhello\r\n0;bar\r\n\r\n", .finished(payload: "hello", rest: "")),
    BodyCase("extensions with values", "5;a=1;b=two\r\nhello\r\n0\r\n\r\n", .finished(payload: "hello", rest: "")),
    BodyCase("extension BWS", "5 ; a = 1 ;b\t=\tx\r\nhello\r\n0\r\n\r\n", .finished(payload: "hello", rest: "")),
    BodyCase(
        "quoted extension with escapes",
        "5;a=\"x;y=\\\"z\\\\\";b=\"\"\r\nhello\r\n0\r\n\r\n",
        .finished(payload: "hello", rest: "")
    ),
    BodyCase(
        "trailers",
        "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nExpires:  never \t\r\nX-Empty:\r\n\r\n",
        .finished(payload: "hello", rest: "")
    ),
    BodyCase("incomplete in data", "5\r\nhel", .incomplete(payload: "hel")),
    BodyCase("incomplete in trailers", "0\r\nX: y\r\n", .incomplete(payload: "")),
    // Chunk size.
    BodyCase("no size", "\r\nhello\r\n", .error(.invalidChunkSize)),
    BodyCase("not hex", "g\r\n", .error(.invalidChunkSize)),
    BodyCase("junk after size", "5x\r\nhello\r\n", .error(.invalidChunkSize)),
    BodyCase("negative size", "-5\r\n", .error(.invalidChunkSize)),
    BodyCase("plus sign", "+5\r\n", .error(.invalidChunkSize)),
    BodyCase("0x prefix", "0x5\r\n", .error(.invalidChunkSize)),
    BodyCase("17 digits", "00000000000000005\r\n", .error(.invalidChunkSize)),
    BodyCase("16 digits overflow", "8000000000000000\r\n", .error(.invalidChunkSize)),
    BodyCase("all ones", "FFFFFFFFFFFFFFFF\r\n", .error(.invalidChunkSize)),
    BodyCase("leading space", " 5\r\nhello\r\n", .error(.invalidChunkSize)),
    // Line endings and data framing.
    BodyCase("bare LF after size", "5\nhello\r\n0\r\n\r\n", .error(.invalidChunkFraming)),
    BodyCase("bare CR after size", "5\rhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", .error(.invalidChunkFraming)),
    BodyCase("data longer than the size", "5\r\nhello!\r\n0\r\n\r\n", .error(.invalidChunkFraming)),
    BodyCase("bare LF after data", "5\r\nhello\n0\r\n\r\n", .error(.invalidChunkFraming)),
    BodyCase("CR CR after data", "5\r\nhello\r\r\n", .error(.invalidChunkFraming)),
    BodyCase("bare LF ends the body", "0\r\n\n", .error(.invalidChunkFraming)),
    BodyCase("CR CR ends the body", "0\r\n\r\r", .error(.invalidChunkFraming)),
    // Extensions.
    BodyCase("whitespace then CRLF", "5 \r\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("empty extension name", "5;\r\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("empty extension value", "5;a=\r\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("space inside a name", "5;a b\r\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("unterminated quote", "5;a=\"x\r\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("control byte in quotes", "5;a=\"\u{1}\"\r\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("bare LF in extension", "5;a\nhello\r\n", .error(.invalidChunkFraming)),
    BodyCase("whitespace before CRLF after a value", "5;a=b \r\nhello\r\n", .error(.invalidChunkFraming)),
    // Trailers (offsets count from the first byte of the body).
    BodyCase("obs-fold in trailers", "0\r\nX: a\r\n b\r\n\r\n", .error(.obsoleteLineFolding(offset: 9))),
    BodyCase("space before colon in a trailer", "0\r\nX : a\r\n\r\n", .error(.invalidHeaderName(offset: 4))),
    BodyCase("empty trailer name", "0\r\n: a\r\n\r\n", .error(.invalidHeaderName(offset: 3))),
    BodyCase("trailer without colon", "0\r\nX\r\n\r\n", .error(.invalidHeaderName(offset: 4))),
    BodyCase("NUL in a trailer value", "0\r\nX: a\0b\r\n\r\n", .error(.invalidHeaderValue(offset: 7))),
    BodyCase("bare LF in a trailer", "0\r\nX: a\nY: b\r\n\r\n", .error(.invalidChunkFraming)),
    BodyCase("bare CR ends a trailer", "0\r\nX: a\rY\r\n\r\n", .error(.invalidChunkFraming)),
    // Limits.
    BodyCase(
        "payload at maxBodySize",
        limits: bodyLimits(body: 10),
        "6\r\nhello \r\n4\r\nworl\r\n0\r\n\r\n",
        .finished(payload: "hello worl", rest: "")
    ),
    BodyCase(
        "payload one over maxBodySize",
        limits: bodyLimits(body: 10),
        "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
        .error(.bodyTooLarge(limit: 10))
    ),
    BodyCase("one chunk over maxBodySize", limits: bodyLimits(body: 10), "b\r\n", .error(.bodyTooLarge(limit: 10))),
    BodyCase(
        "chunk line at the limit",
        limits: bodyLimits(chunkLine: 8),
        "5;abcdef\r\nhello\r\n0\r\n\r\n",
        .finished(payload: "hello", rest: "")
    ),
    BodyCase(
        "chunk line one over",
        limits: bodyLimits(chunkLine: 8),
        "5;abcdefg\r\nhello\r\n0\r\n\r\n",
        .error(.chunkLineTooLong(limit: 8))
    ),
    BodyCase(
        "chunk line over, no CRLF yet",
        limits: bodyLimits(chunkLine: 8),
        "5;abcdefghij",
        .error(.chunkLineTooLong(limit: 8))
    ),
    BodyCase(
        "trailers at the limit",
        limits: bodyLimits(trailer: 10),
        "0\r\nA: 12345\r\n\r\n",
        .finished(payload: "", rest: "")
    ),
    BodyCase(
        "trailers one over",
        limits: bodyLimits(trailer: 10),
        "0\r\nA: 123456\r\n\r\n",
        .error(.trailerTooLarge(limit: 10))
    ),
    BodyCase(
        "trailers over across lines",
        limits: bodyLimits(trailer: 10),
        "0\r\nA: 1\r\nB: 2\r\n\r\n",
        .error(.trailerTooLarge(limit: 10))
    ),
    BodyCase(
        "no limits at all",
        limits: bodyLimits(body: .max, chunkLine: .max, trailer: .max),
        "5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n",
        .finished(payload: "hello", rest: "")
    ),
    BodyCase(
        "no trailers with a zero trailer limit",
        limits: bodyLimits(trailer: 0),
        "0\r\n\r\n",
        .finished(payload: "", rest: "")
    ),
]

// MARK: - Tests

@Suite("HTTPBodyDecoder")
struct HTTPBodyDecoderTests {
    @Test(arguments: bodyRows, [1, 2, 3, 7, 1_000_000])
    func decodeInPieces(_ row: BodyCase, pieceSize: Int) {
        #expect(decodeBody(row.input, framing: row.framing, limits: row.limits, pieceSize: pieceSize) == row.expected)
    }

    /// Each call sees exactly one new byte and nothing else: the decoder keeps no buffer, so every
    /// byte must be consumed at once.
    @Test(arguments: bodyRows)
    func oneByteBuffers(_ row: BodyCase) throws {
        guard case .finished(let payload, let rest) = row.expected else { return }
        var decoder: HTTPBodyDecoder
        switch row.framing {
        case .contentLength(let n): decoder = .contentLength(n)
        case .chunked: decoder = .chunked(limits: row.limits)
        }
        var output: [UInt8] = []
        var index = 0
        while !decoder.isFinished {
            let byte = [row.input[index]]
            let step = try byte.withUnsafeBytes { try decoder.decode($0.bytes) }
            #expect(step.consumed == 1)
            if let range = step.payload { output += byte[range] }
            index += 1
        }
        #expect(String(decoding: output, as: UTF8.self) == payload)
        #expect(String(decoding: row.input[index...], as: UTF8.self) == rest)
    }

    @Test func payloadRunEndsTheCall() throws {
        var decoder = HTTPBodyDecoder.chunked(limits: HTTPLimits())
        let bytes = Array("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT".utf8)
        try bytes.withUnsafeBytes { raw in
            let first = try decoder.decode(raw.bytes)
            #expect(first.consumed == 6 && first.payload == 3..<6)
            let second = try decoder.decode(UnsafeRawBufferPointer(rebasing: raw[6...]).bytes)
            #expect(second.consumed == 7 && second.payload == 5..<7)
            let third = try decoder.decode(UnsafeRawBufferPointer(rebasing: raw[13...]).bytes)
            #expect(third.consumed == 7 && third.payload == nil && decoder.isFinished)
            let after = try decoder.decode(UnsafeRawBufferPointer(rebasing: raw[20...]).bytes)
            #expect(after.consumed == 0 && after.payload == nil)
        }
        #expect(decoder.payloadBytes == 5)
    }

    @Test func emptyInputConsumesNothing() throws {
        var decoder = HTTPBodyDecoder.chunked(limits: HTTPLimits())
        let step = try decoder.decode(RawSpan())
        #expect(step.consumed == 0 && step.payload == nil && !decoder.isFinished)
        #expect(HTTPBodyDecoder.contentLength(0).isFinished)
    }

    /// A large chunk arriving in pieces is returned as it comes, never buffered.
    @Test func splitPayload() throws {
        var decoder = HTTPBodyDecoder.chunked(limits: HTTPLimits())
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let framed = Array("3e8\r\n".utf8) + data + Array("\r\n0\r\n\r\n".utf8)
        var output: [UInt8] = []
        var offset = 0
        for end in stride(from: 100, through: framed.count, by: 100) + [framed.count] {
            while offset < end, !decoder.isFinished {
                let step = try framed.withUnsafeBytes {
                    try decoder.decode(UnsafeRawBufferPointer(rebasing: $0[offset..<end]).bytes)
                }
                if let range = step.payload {
                    output += framed[(offset + range.lowerBound)..<(offset + range.upperBound)]
                }
                offset += step.consumed
                if step.consumed == 0 { break }
            }
        }
        #expect(decoder.isFinished)
        #expect(output == data)
        #expect(offset == framed.count)
    }
}
