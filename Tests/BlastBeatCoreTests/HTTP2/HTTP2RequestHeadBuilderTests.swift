import BlastBeatCore
import Testing

struct HTTP2RequestHeadBuilderTests {
    static func build(_ fields: [(String, String)], hasBody: Bool = false, limit: Int = 1 << 16) -> (String, HTTP2RequestHeadBuilder) {
        var builder = HTTP2RequestHeadBuilder()
        for (name, value) in fields {
            builder.add(name: Array(name.utf8).span.bytes, value: Array(value.utf8).span.bytes, maxListSize: limit)
        }
        var out: [UInt8] = []
        builder.build(into: &out, hasBody: hasBody)
        return (String(decoding: out, as: UTF8.self), builder)
    }

    static let pseudo = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com:8443"), (":path", "/a?b=1")]

    @Test func requestLineHostFromAuthorityAndFieldsInOrder() {
        let (text, builder) = Self.build(Self.pseudo + [("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")])
        #expect(text == "GET /a?b=1 HTTP/1.1\r\nhost: example.com:8443\r\ncookie: a=1\r\naccept: */*\r\ncookie: b=2\r\n\r\n")
        #expect(builder.fieldCount == 7)
    }

    @Test func authorityWinsOverHostAndHostIsUsedWithoutIt() {
        let (withBoth, _) = Self.build(Self.pseudo + [("host", "other")])
        #expect(withBoth.contains("host: example.com:8443\r\n") && !withBoth.contains("other"))
        let (hostOnly, _) = Self.build([(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h.test")])
        #expect(hostOnly == "GET / HTTP/1.1\r\nhost: h.test\r\n\r\n")
    }

    @Test func bodyWithoutContentLengthIsAnnouncedChunked() {
        let (chunked, _) = Self.build(Self.pseudo, hasBody: true)
        #expect(chunked.hasSuffix("transfer-encoding: chunked\r\n\r\n"))
        let (sized, builder) = Self.build(Self.pseudo + [("content-length", "5")], hasBody: true)
        #expect(!sized.contains("transfer-encoding") && builder.hasContentLength)
        let (none, _) = Self.build(Self.pseudo, hasBody: false)
        #expect(!none.contains("transfer-encoding"))
    }

    @Test func extendedConnectForAWebSocketBecomesAnUpgrade() {
        let fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/chat"),
                      (":authority", "h.test"), ("sec-websocket-version", "13")]
        var builder = HTTP2RequestHeadBuilder()
        for (name, value) in fields {
            builder.add(name: Array(name.utf8).span.bytes, value: Array(value.utf8).span.bytes, maxListSize: 1 << 16)
        }
        #expect(builder.isWebSocketConnect)
        var out: [UInt8] = []
        builder.build(into: &out, hasBody: true, webSocketKey: Array("dGhlIHNhbXBsZSBub25jZQ==".utf8))
        #expect(
            String(decoding: out, as: UTF8.self)
                == "GET /chat HTTP/1.1\r\nhost: h.test\r\nsec-websocket-version: 13\r\nupgrade: websocket\r\n"
                + "connection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    }

    @Test func connectUsesTheAuthorityAsTarget() {
        let (text, _) = Self.build([(":method", "CONNECT"), (":authority", "example.com:443")])
        #expect(text.hasPrefix("CONNECT example.com:443 HTTP/1.1\r\n"))
    }

    @Test func listSizeCountsEveryFieldAndStopsKeepingPastTheLimit() {
        let (text, builder) = Self.build(Self.pseudo + [("x-big", String(repeating: "a", count: 100)), ("x-after", "1")], limit: 150)
        // :method GET = 7+3+32, :scheme https = 7+5+32 ... all counted (RFC 9113 §6.5.2).
        let expected = Self.pseudo.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 32 } + (5 + 100 + 32) + (7 + 1 + 32)
        #expect(builder.listSize == expected)
        #expect(!text.contains("x-big") && !text.contains("x-after"))
    }

    @Test func resetKeepsNothing() {
        var (_, builder) = Self.build(Self.pseudo + [("content-length", "1")])
        builder.reset()
        var out: [UInt8] = []
        builder.build(into: &out, hasBody: false)
        #expect(String(decoding: out, as: UTF8.self) == "  HTTP/1.1\r\n\r\n")
        #expect(builder.listSize == 0 && builder.fieldCount == 0 && !builder.hasContentLength)
    }

    @Test func theHeadParsesAsHTTP11() throws {
        let (text, _) = Self.build(Self.pseudo + [("content-length", "3"), ("x-a", "b")], hasBody: true)
        var parser = HTTPRequestHeadParser(limits: HTTPLimits())
        var head = HTTPRequestHead()
        let bytes = Array(text.utf8)
        let complete = try bytes.withUnsafeBytes { try parser.parse($0.bytes, into: &head) }
        #expect(complete && head.contentLength == 3 && head.methodKind == .get && head.host != nil)
    }
}
