import BlastBeatCore
import Testing

@Suite struct UwsgiEncoderTests {
    typealias Support = UwsgiTestSupport

    // MARK: Layout and order

    @Test func packetLayoutAndVariableOrder() throws {
        // The original's example request, with the new variables (docs/PROTOCOL.md, "The uwsgi environment").
        let request = Support.request(target: "/a?b=1", headers: [("Host", "localhost")])
        let packet = try Support.encode(request)

        let pairs = try #require(Support.pairs(packet))
        #expect(
            pairs.map(\.0) == [
                "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL", "REQUEST_URI", "REMOTE_ADDR", "REMOTE_PORT", "UWSGI_SCHEME", "HTTP_HOST",
            ]
        )
        #expect(
            pairs.map(\.1) == [
                "GET", "", "/a", "b=1", "localhost", "8080", "HTTP/1.1", "/a?b=1", "127.0.0.1", "50000", "http",
                "localhost",
            ]
        )

        // Size field = pairs only (standard convention), modifiers 0.
        #expect(packet[0] == 0)
        #expect(packet[3] == 0)
        #expect(Int(packet[1]) | Int(packet[2]) << 8 == packet.count - 4)
        let start: [UInt8] =
            [0x0e, 0x00] + Array("REQUEST_METHOD".utf8) + [0x03, 0x00] + Array("GET".utf8)
            + [0x0b, 0x00] + Array("SCRIPT_NAME".utf8) + [0x00, 0x00]
        #expect(Array(packet[4..<(4 + start.count)]) == start)
    }

    @Test func tlsAddsSchemeAndHTTPS() throws {
        var context = Support.localContext
        context.isTLS = true
        context.serverName = Array("::1".utf8)
        context.serverPort = Array("8443".utf8)
        context.remoteAddress = Array("::1".utf8)
        let request = Support.request(method: "POST", target: "/", version: .http10, headers: [("Host", "[::1]")])
        let pairs = try #require(Support.pairs(try Support.encode(request, context: context)))
        #expect(
            pairs.map(\.0) == [
                "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL", "REQUEST_URI", "REMOTE_ADDR", "REMOTE_PORT", "UWSGI_SCHEME", "HTTPS", "HTTP_HOST",
            ]
        )
        let values = Dictionary(uniqueKeysWithValues: pairs)
        #expect(values["UWSGI_SCHEME"] == "https")
        #expect(values["HTTPS"] == "on")
        #expect(values["SERVER_NAME"] == "::1")
        #expect(values["SERVER_PORT"] == "8443")
        #expect(values["SERVER_PROTOCOL"] == "HTTP/1.0")
        #expect(values["REQUEST_METHOD"] == "POST")
    }

    @Test func appendsAfterExistingBytes() throws {
        let request = Support.request(target: "/", headers: [("Host", "h")])
        let alone = try Support.encode(request)
        var out: [UInt8] = [1, 2, 3]
        try Support.encode(request, into: &out)
        #expect(Array(out[0..<3]) == [1, 2, 3])
        #expect(Array(out[3...]) == alone)
    }

    // MARK: Target

    struct TargetCase: Sendable, CustomTestStringConvertible {
        var target: String
        var pathInfo: [UInt8]
        var queryString: String
        var testDescription: String { self.target }

        init(_ target: String, _ pathInfo: String, _ queryString: String) {
            self.init(target, Array(pathInfo.utf8), queryString)
        }

        init(_ target: String, _ pathInfo: [UInt8], _ queryString: String) {
            self.target = target
            self.pathInfo = pathInfo
            self.queryString = queryString
        }
    }

    static let targetCases: [TargetCase] = [
        TargetCase("/", "/", ""),
        TargetCase("/a/b", "/a/b", ""),
        TargetCase("/a?b=1", "/a", "b=1"),
        TargetCase("/a?", "/a", ""),
        TargetCase("/a?b?c=%20", "/a", "b?c=%20"),
        TargetCase("/a#frag", "/a", ""),
        TargetCase("/a?b#frag", "/a", "b"),
        TargetCase("/a#f?b", "/a", ""),
        TargetCase("//double", "//double", ""),
        // Percent-decoding of the path only; the query stays raw.
        TargetCase("/a%20b", "/a b", ""),
        TargetCase("/%41%42%43", "/ABC", ""),
        TargetCase("/%e2%82%AC", [0x2F, 0xE2, 0x82, 0xAC], ""),
        TargetCase("/a%2Fb%2fc", "/a/b/c", ""),
        TargetCase("/p%3Fq?x=%20", "/p?q", "x=%20"),
        TargetCase("/a+b", "/a+b", ""),
        TargetCase("/%", "/%", ""),
        TargetCase("/%4", "/%4", ""),
        TargetCase("/%4?x", "/%4", "x"),
        TargetCase("/%zz%4g", "/%zz%4g", ""),
        TargetCase("/%%41", "/%A", ""),
        TargetCase("/%2541", "/%41", ""),
        TargetCase("/%00x", [0x2F, 0x00, 0x78], ""),
        // Absolute-form: the path part only.
        TargetCase("http://host/p?q", "/p", "q"),
        TargetCase("HTTPS://Host:8443/p%20q?x=1#f", "/p q", "x=1"),
        TargetCase("http://host", "/", ""),
        TargetCase("http://host?q=1", "/", "q=1"),
        TargetCase("http://host/", "/", ""),
        TargetCase("http://user@host:1/a/b", "/a/b", ""),
        TargetCase("coap+tcp.x-y://h/z", "/z", ""),
        // Not absolute-form: passed through like origin-form.
        TargetCase("*", "*", ""),
        TargetCase("host.example:443", "host.example:443", ""),
        TargetCase("1http://h/p", "1http://h/p", ""),
        TargetCase("ht tp://h/p", "ht tp://h/p", ""),
    ]

    @Test(arguments: Self.targetCases)
    func pathInfoAndQueryString(_ row: TargetCase) throws {
        let request = Support.request(target: row.target, headers: [("Host", "h")])
        let decoded = try #require(UwsgiDecoder.decode(try Support.encode(request)))
        let values = Dictionary(decoded.map { (String(decoding: $0.key, as: UTF8.self), $0.value) }) { a, _ in a }
        #expect(values["PATH_INFO"] == row.pathInfo)
        #expect(values["QUERY_STRING"] == Array(row.queryString.utf8))
        #expect(values["REQUEST_URI"] == Array(row.target.utf8))
        #expect(values["SCRIPT_NAME"] == [])
    }

    // MARK: Headers

    struct HeaderCase: Sendable, CustomTestStringConvertible {
        var name: String
        var headers: [(String, String)]
        /// The pairs after UWSGI_SCHEME (or HTTPS), in order.
        var expected: [(String, String)]
        var contentType: String?
        var testDescription: String { self.name }
    }

    static let headerCases: [HeaderCase] = [
        HeaderCase(
            name: "name conversion",
            headers: [("Host", "h"), ("x-a.b~c!", "1"), ("Accept-Encoding", "gzip"), ("X-9", "n")],
            expected: [("HTTP_HOST", "h"), ("HTTP_X_A.B~C!", "1"), ("HTTP_ACCEPT_ENCODING", "gzip"), ("HTTP_X_9", "n")]
        ),
        HeaderCase(
            name: "duplicates joined with comma in first-arrival order",
            headers: [("Accept", "a"), ("Host", "h"), ("accept", "b"), ("X", "1"), ("ACCEPT", "c")],
            expected: [("HTTP_ACCEPT", "a, b, c"), ("HTTP_HOST", "h"), ("HTTP_X", "1")]
        ),
        HeaderCase(
            name: "cookie joined with semicolon",
            headers: [("Cookie", "a=1"), ("Host", "h"), ("cookie", "b=2; c=3")],
            expected: [("HTTP_COOKIE", "a=1; b=2; c=3"), ("HTTP_HOST", "h")]
        ),
        HeaderCase(
            name: "empty values left out of a join",
            headers: [("X-E", ""), ("X-E", "a"), ("X-E", ""), ("X-E", "b"), ("X-Only-Empty", "")],
            expected: [("HTTP_X_E", "a, b"), ("HTTP_X_ONLY_EMPTY", "")]
        ),
        HeaderCase(
            name: "underscore names dropped (no spoofing of X-Foo)",
            headers: [("X_Foo", "evil"), ("X-Foo", "good"), ("x_foo", "evil2"), ("_", "u")],
            expected: [("HTTP_X_FOO", "good")]
        ),
        HeaderCase(
            name: "content-type and content-length not repeated",
            headers: [("Content-Type", "text/plain"), ("Content-Length", "3"), ("Host", "h")],
            expected: [("HTTP_HOST", "h")],
            contentType: "text/plain"
        ),
        HeaderCase(
            name: "first content-type wins",
            headers: [("content-type", "a/b"), ("Content-Type", "c/d")],
            expected: [],
            contentType: "a/b"
        ),
        HeaderCase(
            name: "hop-by-hop and websocket headers passed",
            headers: [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "k==")],
            expected: [
                ("HTTP_CONNECTION", "Upgrade"), ("HTTP_UPGRADE", "websocket"), ("HTTP_SEC_WEBSOCKET_KEY", "k=="),
            ]
        ),
        HeaderCase(
            name: "value bytes untouched",
            headers: [("X-V", "a,b ; \"q\"\tz"), ("x-v", "c")],
            expected: [("HTTP_X_V", "a,b ; \"q\"\tz, c")]
        ),
        HeaderCase(name: "no headers", headers: [], expected: []),
    ]

    @Test(arguments: Self.headerCases, [true, false])
    func headerVariables(_ row: HeaderCase, classify: Bool) throws {
        let request = Support.request(target: "/", headers: row.headers, classify: classify)
        let pairs = try #require(Support.pairs(try Support.encode(request)))
        let schemeIndex = try #require(pairs.firstIndex { $0.0 == "UWSGI_SCHEME" })
        let httpPairs = pairs[(schemeIndex + 1)...]
        #expect(httpPairs.map(\.0) == row.expected.map(\.0))
        #expect(httpPairs.map(\.1) == row.expected.map(\.1))
        #expect(pairs.first { $0.0 == "CONTENT_TYPE" }?.1 == row.contentType)
        #expect(!pairs.contains { $0.0 == "CONTENT_LENGTH" })
    }

    struct ContentCase: Sendable, CustomTestStringConvertible {
        var name: String
        var headers: [(String, String)]
        var contentLength: Int?
        var isChunked = false
        var expected: [(String, String)]
        var testDescription: String { self.name }
    }

    static let contentCases: [ContentCase] = [
        ContentCase(name: "no body", headers: [], contentLength: nil, expected: []),
        ContentCase(
            name: "length and type",
            headers: [("Content-Type", "a/b"), ("Content-Length", "12")],
            contentLength: 12,
            expected: [("CONTENT_TYPE", "a/b"), ("CONTENT_LENGTH", "12")]
        ),
        ContentCase(
            name: "zero",
            headers: [("Content-Length", "0")],
            contentLength: 0,
            expected: [("CONTENT_LENGTH", "0")]
        ),
        ContentCase(
            name: "canonical decimal from the parsed value",
            headers: [("Content-Length", "007, 007")],
            contentLength: 7,
            expected: [("CONTENT_LENGTH", "7")]
        ),
        ContentCase(
            name: "large",
            headers: [("Content-Length", "1234567890123")],
            contentLength: 1_234_567_890_123,
            expected: [("CONTENT_LENGTH", "1234567890123")]
        ),
        ContentCase(
            name: "chunked has no CONTENT_LENGTH",
            headers: [("Transfer-Encoding", "chunked")],
            contentLength: nil,
            isChunked: true,
            expected: []
        ),
    ]

    @Test(arguments: Self.contentCases)
    func contentVariables(_ row: ContentCase) throws {
        let request = Support.request(
            method: "POST",
            target: "/",
            headers: row.headers,
            contentLength: row.contentLength,
            isChunked: row.isChunked
        )
        let pairs = try #require(Support.pairs(try Support.encode(request)))
        // CONTENT_* sit between QUERY_STRING and SERVER_NAME.
        let query = try #require(pairs.firstIndex { $0.0 == "QUERY_STRING" })
        let serverName = try #require(pairs.firstIndex { $0.0 == "SERVER_NAME" })
        let content = pairs[(query + 1)..<serverName]
        #expect(content.map(\.0) == row.expected.map(\.0))
        #expect(content.map(\.1) == row.expected.map(\.1))
    }

    // MARK: Decoders

    static let decoderRequests: [UwsgiTestSupport.Request] = [
        Support.request(target: "/", headers: [("Host", "h")]),
        Support.request(target: "/a?b=1", headers: [("Host", "localhost"), ("Accept", "*/*"), ("accept", "x")]),
        Support.request(
            method: "POST",
            target: "/up%20load?x",
            headers: [("Content-Type", "a/b"), ("Content-Length", "5")],
            contentLength: 5
        ),
        Support.request(target: "*", headers: []),
        Support.request(target: "/", headers: [("X-Empty", "")]),
        Support.request(target: "/", headers: [("X-Big", String(repeating: "v", count: 40_000))]),
    ]

    @Test(arguments: Self.decoderRequests.indices)
    func readmeAndStandardDecodersSeeEveryPair(_ index: Int) throws {
        let packet = try Support.encode(Self.decoderRequests[index])

        let standard = try #require(UwsgiDecoder.decode(packet))
        #expect(standard.allSatisfy { !$0.key.isEmpty })
        let keys = Set(standard.map(\.key))
        #expect(keys.count == standard.count, "no duplicate keys")

        let readme = try #require(Support.readmeUwsgiToDict(packet))
        #expect(readme.count == standard.count)
        for pair in standard {
            #expect(readme[pair.key] == pair.value)
        }
    }

    // MARK: Size limit

    /// A request whose pairs take exactly `pairsLength` bytes, padded with one `X-Pad` header.
    static func request(pairsLength: Int) throws -> UwsgiTestSupport.Request {
        let base = try Support.encode(Support.request(target: "/", headers: [("Host", "h")])).count - 4
        // X-Pad adds 2 + len("HTTP_X_PAD") + 2 + value.
        let padding = pairsLength - base - 14
        return Support.request(
            target: "/",
            headers: [("Host", "h"), ("X-Pad", String(repeating: "p", count: padding))]
        )
    }

    @Test func exactly65535BytesOfPairsIsAccepted() throws {
        let packet = try Support.encode(try Self.request(pairsLength: 65535))
        #expect(packet.count == 4 + 65535)
        #expect(packet[1] == 0xFF && packet[2] == 0xFF)
        let pairs = try #require(UwsgiDecoder.decode(packet))
        #expect(pairs.reduce(0) { $0 + 4 + $1.key.count + $1.value.count } == 65535)
        #expect(pairs.last?.key == Array("HTTP_X_PAD".utf8))
        #expect(Support.readmeUwsgiToDict(packet)?.count == pairs.count)
    }

    @Test func oneByteMoreThrowsAndLeavesOutputUntouched() throws {
        let request = try Self.request(pairsLength: 65536)
        var out: [UInt8] = [9, 9]
        #expect(throws: UwsgiError.packetTooLarge(limit: 65535)) {
            try Support.encode(request, into: &out)
        }
        #expect(out == [9, 9])
    }

    @Test func singleValueLongerThan65535IsRejectedNotTruncated() {
        let request = Support.request(target: "/", headers: [("X-Huge", String(repeating: "h", count: 70_000))])
        #expect(throws: UwsgiError.packetTooLarge(limit: 65535)) {
            _ = try Support.encode(request)
        }
    }

    @Test func errorDescriptionNamesTheLimit() {
        #expect(UwsgiError.packetTooLarge(limit: 65535).description.contains("65535"))
    }
}
