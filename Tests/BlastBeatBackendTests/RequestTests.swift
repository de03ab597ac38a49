import Testing

@testable import BlastBeatBackend

@Suite struct RequestTests {
    @Test func decodesTheGatewaysEnvironment() throws {
        let packet = try Uwsgi.packet(
            "POST /a%20b/c?x=1&y=%20 HTTP/1.1", "Host: example.com", "Content-Type: text/plain",
            "Content-Length: 5", "X-Forwarded-For: 1.2.3.4", "Accept: a", "accept: b", "Cookie: c=1", "Cookie: d=2")
        let request = try #require(Request(uwsgi: packet))
        #expect(request.method == "POST")
        #expect(request.path == "/a b/c")
        #expect(request.query == "x=1&y=%20")
        #expect(request.uri == "/a%20b/c?x=1&y=%20")
        #expect(request.httpVersion == "HTTP/1.1")
        #expect(request.contentLength == 5)
        #expect(request.hasBody)
        #expect(!request.isWebSocket)
        #expect(request.headers["host"] == "example.com")
        #expect(request.headers["content-type"] == "text/plain")
        #expect(request.headers["content-length"] == "5")
        #expect(request.headers["x-forwarded-for"] == "1.2.3.4")
        #expect(request.headers["accept"] == "a, b")
        #expect(request.headers["cookie"] == "c=1; d=2")
        #expect(request.header("X-Forwarded-For") == "1.2.3.4")
        #expect(request.environment["SERVER_NAME"] == "localhost")
        #expect(request.environment["REMOTE_ADDR"] == "127.0.0.1")
        #expect(request.environment["UWSGI_SCHEME"] == "http")
        #expect(request.environment["SCRIPT_NAME"] == "")
        #expect(request.rawEnvironment.first.map { String(decoding: $0.name, as: UTF8.self) } == "REQUEST_METHOD")
    }

    @Test func bodyAndWebSocketFacts() throws {
        let get = try #require(Request(uwsgi: try Uwsgi.packet("GET / HTTP/1.0", "Host: h")))
        #expect(!get.hasBody && get.contentLength == nil && get.httpVersion == "HTTP/1.0")
        let empty = try #require(Request(uwsgi: try Uwsgi.packet("POST / HTTP/1.1", "Host: h", "Content-Length: 0")))
        #expect(!empty.hasBody && empty.contentLength == 0)
        let chunked = try #require(
            Request(uwsgi: try Uwsgi.packet("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked")))
        #expect(chunked.hasBody && chunked.contentLength == nil)
        let upgrade = try #require(
            Request(
                uwsgi: try Uwsgi.packet(
                    "GET /ws HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: Upgrade",
                    "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")))
        #expect(upgrade.isWebSocket && !upgrade.hasBody)
    }

    @Test func keepsRawBytesAndRepairsStrings() throws {
        // The gateway percent-decodes PATH_INFO into raw bytes, which need not be UTF-8.
        let packet = try Uwsgi.packet("GET /%FFx HTTP/1.1", "Host: h")
        let request = try #require(Request(uwsgi: packet))
        let raw = try #require(request.rawEnvironment.first { $0.name == bytes("PATH_INFO") })
        #expect(raw.value == [0x2F, 0xFF, 0x78])
        #expect(request.path == "/\u{FFFD}x")
    }

    @Test func acceptsBothSizeConventions() throws {
        let pairs: [(String, [UInt8])] = [("REQUEST_METHOD", bytes("GET")), ("PATH_INFO", bytes("/p"))]
        for original in [false, true] {
            let request = try #require(Request(uwsgi: Uwsgi.handmade(pairs, originalSize: original)))
            #expect(request.method == "GET" && request.path == "/p")
        }
        // A repeated variable keeps its last value in `environment`, both in `rawEnvironment`.
        let twice = try #require(
            Request(uwsgi: Uwsgi.handmade([("HTTP_X", bytes("1")), ("HTTP_X", bytes("2"))])))
        #expect(twice.environment["HTTP_X"] == "2" && twice.rawEnvironment.count == 2)
        // An empty packet: no variables, defaults for the accessors.
        let none = try #require(Request(uwsgi: [0, 0, 0, 0]))
        #expect(none.method == "GET" && none.path == "" && none.headers.isEmpty)
    }

    static let malformed: [[UInt8]] = [
        [],
        [0, 0, 0],
        [1, 0, 0, 0],  // modifier1
        [0, 0, 0, 1],  // modifier2
        [0, 9, 0, 0, 1, 0],  // size matches neither convention
        [0, 3, 0, 0, 5, 0, 65],  // key runs past the end
        [0, 7, 0, 0, 1, 0, 65, 9, 0, 66, 67],  // value runs past the end
        [0, 1, 0, 0, 1],  // truncated length
    ]

    @Test(arguments: Self.malformed)
    func refusesMalformedPackets(_ packet: [UInt8]) {
        #expect(Request(uwsgi: packet) == nil)
    }
}
