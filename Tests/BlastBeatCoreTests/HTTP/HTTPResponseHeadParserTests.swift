import BlastBeatCore
import Testing

@Suite struct HTTPResponseHeadParserTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var input: [UInt8]
        var maxLength: Int
        var expected: Result<HTTPResponseHead, BackendHeadError>
        var testDescription: String { self.name }

        init(_ name: String, _ input: String, maxLength: Int = 64 * 1024, _ expected: HTTPResponseHead) {
            self.init(name, Array(input.utf8), maxLength: maxLength, .success(expected))
        }

        init(_ name: String, _ input: String, maxLength: Int = 64 * 1024, _ expected: BackendHeadError) {
            self.init(name, Array(input.utf8), maxLength: maxLength, .failure(expected))
        }

        init(
            _ name: String,
            _ input: [UInt8],
            maxLength: Int = 64 * 1024,
            _ expected: Result<HTTPResponseHead, BackendHeadError>
        ) {
            self.name = name
            self.input = input
            self.maxLength = maxLength
            self.expected = expected
        }
    }

    static func head(
        _ version: HTTPVersion = .http11,
        status: Int = 200,
        length: Int,
        blank: Int,
        contentLength: Int? = nil,
        chunked: Bool = false,
        transferEncoding: Bool = false,
        close: Bool = false,
        keepAlive: Bool = false
    ) -> HTTPResponseHead {
        HTTPResponseHead(
            version: version,
            status: status,
            length: length,
            blankLineStart: blank,
            contentLength: contentLength,
            isChunked: chunked,
            hasTransferEncoding: transferEncoding,
            connectionClose: close,
            connectionKeepAlive: keepAlive
        )
    }

    static let ok = "HTTP/1.1 200 OK\r\n"  // 17 bytes: header lines start at offset 17.

    static let validRows: [Row] = [
        Row("minimal", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", head(length: 44, blank: 42)),
        Row("HTTP/1.0, no headers", "HTTP/1.0 200 OK\r\n\r\n", head(.http10, length: 19, blank: 17)),
        Row("no reason phrase", "HTTP/1.1 204\r\n\r\n", head(status: 204, length: 16, blank: 14)),
        Row("empty reason phrase", "HTTP/1.1 204 \r\n\r\n", head(status: 204, length: 17, blank: 15)),
        Row(
            "reason with spaces, tab, obs-text",
            "HTTP/1.1 404 Not\tFound \u{e9}t\u{e9}\r\n\r\n",
            head(status: 404, length: 32, blank: 30)
        ),
        Row("status 999", "HTTP/1.1 999 X\r\n\r\n", head(status: 999, length: 18, blank: 16)),
        Row(
            "status 100, final head not consumed",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            head(status: 100, length: 25, blank: 23)
        ),
        Row(
            "101 upgrade",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            head(status: 101, length: 77, blank: 75)
        ),
        Row("204 no content", "HTTP/1.1 204 No Content\r\n\r\n", head(status: 204, length: 27, blank: 25)),
        Row(
            "304 with length kept",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            head(status: 304, length: 49, blank: 47, contentLength: 10)
        ),
        Row(
            "content-length with body bytes after",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            head(length: 38, blank: 36, contentLength: 5)
        ),
        Row(
            "content-length OWS and case",
            "HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: \t 7 \t\r\n\r\n",
            head(length: 42, blank: 40, contentLength: 7)
        ),
        Row(
            "content-length zero, leading zeros",
            "HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n",
            head(length: 40, blank: 38, contentLength: 0)
        ),
        Row(
            "equal duplicate content-length lines",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            head(length: 57, blank: 55, contentLength: 5)
        ),
        Row(
            "equal content-length list",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            head(length: 41, blank: 39, contentLength: 5)
        ),
        Row(
            "chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            head(length: 47, blank: 45, chunked: true, transferEncoding: true)
        ),
        Row(
            "chunked is final coding",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            head(length: 53, blank: 51, chunked: true, transferEncoding: true)
        ),
        Row(
            "chunked not final",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            head(length: 53, blank: 51, transferEncoding: true)
        ),
        Row(
            "chunked over two lines",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            head(length: 72, blank: 70, chunked: true, transferEncoding: true)
        ),
        Row(
            "trailing empty list element",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked , \r\n\r\n",
            head(length: 50, blank: 48, chunked: true, transferEncoding: true)
        ),
        Row(
            "connection close",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            head(length: 38, blank: 36, close: true)
        ),
        Row(
            "connection keep-alive list",
            "HTTP/1.0 200 OK\r\nConnection: Upgrade, Keep-Alive\r\n\r\n",
            head(.http10, length: 52, blank: 50, keepAlive: true)
        ),
        Row(
            "connection over two lines",
            "HTTP/1.1 200 OK\r\nConnection: x,close\r\nconnection: keep-alive\r\n\r\n",
            head(length: 64, blank: 62, close: true, keepAlive: true)
        ),
        Row(
            "close must be a whole token",
            "HTTP/1.1 200 OK\r\nConnection: closed, xclose\r\n\r\n",
            head(length: 47, blank: 45)
        ),
        Row(
            "LF-only line endings",
            "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
            head(length: 35, blank: 34, contentLength: 2)
        ),
        Row("mixed CRLF and LF", "HTTP/1.1 200 OK\r\nA: b\n\r\n", head(length: 24, blank: 22)),
        Row("leading CRLF and LF skipped", "\r\n\nHTTP/1.1 200 OK\r\n\r\n", head(length: 22, blank: 20)),
        Row(
            "empty value and token punctuation",
            "HTTP/1.1 200 OK\r\nX-Empty:\r\n!#$%&'*+-.^_`|~09aZ: v\r\n\r\n",
            head(length: 53, blank: 51)
        ),
        Row("obs-text in value", "HTTP/1.1 200 OK\r\nX: caf\u{e9}\r\n\r\n", head(length: 29, blank: 27)),
        Row("exactly maxLength", "HTTP/1.1 200 OK\r\nX: aaaaaaaaa\r\n\r\n", maxLength: 33, head(length: 33, blank: 31)),
        Row(
            "body may go past maxLength",
            "HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "b", count: 100),
            maxLength: 19,
            head(length: 19, blank: 17)
        ),
    ]

    static let invalidRows: [Row] = [
        // Incomplete: the whole head must be in one message.
        Row("empty message", "", .incomplete),
        Row("status line only", "HTTP/1.1 200 OK\r\n", .incomplete),
        Row("no blank line", "HTTP/1.1 200 OK\r\nA: b\r\n", .incomplete),
        Row("blank line cut after CR", "HTTP/1.1 200 OK\r\n\r", .incomplete),
        Row("only leading CRLF", "\r\n\r\n", .incomplete),
        // Status line. ("D26": the original forwarded a body sent before the head to the client raw.)
        Row("body before headers (D26)", "hello world\r\n\r\n", .invalidStatusLine),
        Row("continuation of a split head", "Content-Length: 5\r\n\r\n", .invalidStatusLine),
        Row("lowercase http", "http/1.1 200 OK\r\n\r\n", .invalidStatusLine),
        Row("HTTP/2", "HTTP/2 200 OK\r\n\r\n", .invalidStatusLine),
        Row("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", .invalidStatusLine),
        Row("HTTP/1.10", "HTTP/1.10 200 OK\r\n\r\n", .invalidStatusLine),
        Row("two spaces", "HTTP/1.1  200 OK\r\n\r\n", .invalidStatusLine),
        Row("tab separator", "HTTP/1.1\t200 OK\r\n\r\n", .invalidStatusLine),
        Row("two-digit status", "HTTP/1.1 20 OK\r\n\r\n", .invalidStatusLine),
        Row("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", .invalidStatusLine),
        Row("status below 100", "HTTP/1.1 099 Low\r\n\r\n", .invalidStatusLine),
        Row("status not digits", "HTTP/1.1 2x0 OK\r\n\r\n", .invalidStatusLine),
        Row("tab instead of SP before reason", "HTTP/1.1 200\tOK\r\n\r\n", .invalidStatusLine),
        Row("bare CR in status line", "HTTP/1.1 200 OK\rX: y\r\n\r\n", .invalidStatusLine),
        Row("NUL in reason", "HTTP/1.1 200 O\u{0}K\r\n\r\n", .invalidStatusLine),
        Row("bare CR after status", "HTTP/1.1 200\rOK\r\n\r\n", .invalidStatusLine),
        Row("leading bare CR", "\rHTTP/1.1 200 OK\r\n\r\n", .invalidStatusLine),
        Row("leading space", " HTTP/1.1 200 OK\r\n\r\n", .invalidStatusLine),
        // Header lines (offsets into the message; the status line is 17 bytes).
        Row(
            "injection: bare CR in value",
            "HTTP/1.1 200 OK\r\nX: a\rSet-Cookie: evil\r\n\r\n",
            .invalidHeader(offset: 21)
        ),
        Row("injection: CR CR LF", "HTTP/1.1 200 OK\r\nX: a\r\r\n\r\n", .invalidHeader(offset: 21)),
        Row("injection: bare CR as blank line", "HTTP/1.1 200 OK\r\n\rX\r\n", .invalidHeader(offset: 17)),
        Row("injection: CR before body", "HTTP/1.1 200 OK\r\nX: a\r\n\r<html>", .invalidHeader(offset: 23)),
        Row("NUL in value", "HTTP/1.1 200 OK\r\nX: a\u{0}b\r\n\r\n", .invalidHeader(offset: 21)),
        Row("DEL in value", "HTTP/1.1 200 OK\r\nX: a\u{7f}\r\n\r\n", .invalidHeader(offset: 21)),
        Row("escape sequence in value", "HTTP/1.1 200 OK\r\nA: 1\r\nX: \u{1b}[31m\r\n\r\n", .invalidHeader(offset: 26)),
        Row("vertical tab in value", "HTTP/1.1 200 OK\r\nX: a\u{0b}b\r\n\r\n", .invalidHeader(offset: 21)),
        Row("space before colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", .invalidHeader(offset: 18)),
        Row("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", .invalidHeader(offset: 23)),
        Row("obs-fold with tab", "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", .invalidHeader(offset: 23)),
        Row("empty name", "HTTP/1.1 200 OK\r\n: a\r\n\r\n", .invalidHeader(offset: 17)),
        Row("non-token in name", "HTTP/1.1 200 OK\r\nX(y): a\r\n\r\n", .invalidHeader(offset: 18)),
        Row("non-ASCII in name", "HTTP/1.1 200 OK\r\nX\u{e9}: a\r\n\r\n", .invalidHeader(offset: 18)),
        Row("no colon", "HTTP/1.1 200 OK\r\nXy\r\n\r\n", .invalidHeader(offset: 19)),
        Row("no colon, LF only", "HTTP/1.1 200 OK\nXy\n\n", .invalidHeader(offset: 18)),
        // Framing.
        Row("content-length not a number", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", .invalidContentLength),
        Row("content-length empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", .invalidContentLength),
        Row("content-length negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", .invalidContentLength),
        Row("content-length plus sign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", .invalidContentLength),
        Row("content-length inner space", "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", .invalidContentLength),
        Row("content-length hex", "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", .invalidContentLength),
        Row(
            "content-length overflow",
            "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
            .invalidContentLength
        ),
        Row(
            "content-length empty list element",
            "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n",
            .invalidContentLength
        ),
        Row("differing content-length list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", .invalidContentLength),
        Row(
            "differing content-length lines",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            .invalidContentLength
        ),
        Row(
            "content-length then transfer-encoding",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            .contentLengthWithTransferEncoding
        ),
        Row(
            "transfer-encoding then content-length",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ncontent-length: 5\r\n\r\n",
            .contentLengthWithTransferEncoding
        ),
        // Size.
        Row(
            "head one byte over maxLength",
            "HTTP/1.1 200 OK\r\nX: aaaaaaaaa\r\n\r\n",
            maxLength: 32,
            .tooLarge(limit: 32)
        ),
        Row("incomplete and over maxLength", "HTTP/1.1 200 OK\r\nX: a", maxLength: 10, .tooLarge(limit: 10)),
        Row("incomplete within maxLength", "HTTP/1.1 200 OK\r\nX: a", maxLength: 100, .incomplete),
    ]

    @Test(arguments: Self.validRows + Self.invalidRows)
    func parse(_ row: Row) {
        let result = row.input.withUnsafeBytes { bytes in
            Result { () throws(BackendHeadError) in try HTTPResponseHeadParser.parse(bytes.bytes, maxLength: row.maxLength) }
        }
        switch (result, row.expected) {
        case (.success(let head), .success(let expected)):
            #expect(head == expected)
        case (.failure(let error), .failure(let expected)):
            #expect(error == expected)
        default:
            Issue.record("got \(result), expected \(row.expected)")
        }
    }

    /// The parser sees one whole message; every message cut before the blank line's end must say
    /// `.incomplete` (never accept a prefix or blame a byte that is merely missing), and every longer one
    /// must give the same head.
    @Test(arguments: Self.validRows.filter { $0.maxLength == 64 * 1024 })
    func everyPrefixIsIncomplete(_ row: Row) throws {
        let expected = try row.expected.get()
        for cut in 0...row.input.count {
            let result = Array(row.input[0..<cut]).withUnsafeBytes { bytes in
                Result { () throws(BackendHeadError) in try HTTPResponseHeadParser.parse(bytes.bytes) }
            }
            if cut < expected.length {
                #expect(result == .failure(.incomplete), "cut at \(cut)")
            } else {
                #expect(result == .success(expected), "cut at \(cut)")
            }
        }
    }

    @Test func parsesAtAnOffsetIndependentBase() throws {
        // Offsets are relative to the buffer handed in, whatever its base address.
        let message = Array("xxHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz".utf8)
        let head = try message.withUnsafeBytes { bytes in
            try HTTPResponseHeadParser.parse(UnsafeRawBufferPointer(rebasing: bytes[2...]).bytes)
        }
        #expect(head == Self.head(length: 38, blank: 36, contentLength: 1))
    }

    struct FramingRow: Sendable, CustomTestStringConvertible {
        var name: String
        var head: String
        var requestIsHEAD: Bool
        var expected: HTTPResponseBodyFraming
        var testDescription: String { self.name }
    }

    static let framingRows: [FramingRow] = [
        FramingRow(
            name: "length",
            head: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            requestIsHEAD: false,
            expected: .contentLength(5)
        ),
        FramingRow(
            name: "HEAD request",
            head: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            requestIsHEAD: true,
            expected: .none
        ),
        FramingRow(
            name: "chunked",
            head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            requestIsHEAD: false,
            expected: .chunked
        ),
        FramingRow(
            name: "other coding",
            head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            requestIsHEAD: false,
            expected: .untilClose
        ),
        FramingRow(name: "no framing", head: "HTTP/1.1 200 OK\r\n\r\n", requestIsHEAD: false, expected: .untilClose),
        FramingRow(name: "100", head: "HTTP/1.1 100 Continue\r\n\r\n", requestIsHEAD: false, expected: .none),
        FramingRow(
            name: "101",
            head: "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            requestIsHEAD: false,
            expected: .none
        ),
        FramingRow(
            name: "204",
            head: "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
            requestIsHEAD: false,
            expected: .none
        ),
        FramingRow(
            name: "304",
            head: "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            requestIsHEAD: false,
            expected: .none
        ),
    ]

    @Test(arguments: Self.framingRows)
    func bodyFraming(_ row: FramingRow) throws {
        let head = try Array(row.head.utf8).withUnsafeBytes { bytes in
            try HTTPResponseHeadParser.parse(bytes.bytes)
        }
        #expect(head.bodyFraming(requestIsHEAD: row.requestIsHEAD) == row.expected)
        #expect(head.isInformational == (head.status < 200))
    }

    @Test(arguments: [
        BackendHeadError.incomplete, .invalidStatusLine, .invalidHeader(offset: 42), .invalidContentLength,
        .contentLengthWithTransferEncoding, .tooLarge(limit: 65536),
    ])
    func errorDescriptionsAreSpecific(_ error: BackendHeadError) {
        #expect(error.description.hasPrefix("backend response"))
        if case .invalidHeader = error { #expect(error.description.contains("42")) }
        if case .tooLarge = error { #expect(error.description.contains("65536")) }
    }
}
