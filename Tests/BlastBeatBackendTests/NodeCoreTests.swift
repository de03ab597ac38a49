import BlastBeatCore
import Testing

@testable import BlastBeatBackend

/// The node against an in-process ROUTER: what it answers to each gateway message, frame by frame.
@Suite struct NodeCoreTests {
    @Test func announcesItselfAndAnswersPings() throws {
        let node = try Harness(identity: "hello#2")  // the announcement pong is checked by Harness
        defer { node.close() }
        try node.deliverQuietly([[], bytes("ping"), []])
        let pong = try #require(try node.nextReply())
        #expect(pong.sid == [] && pong.type == "pong" && pong.body == [])
        #expect(node.core.pingsAnswered == 1 && node.core.announcements == 1)
    }

    @Test func respondSendsHeadAndBodyInOneMessage() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { request, session in
            try session.respond(headers: [("Content-Type", "text/plain")], body: "Hello \(request.path)")
        }
        try node.deliver(sid(1), "uwsgi", try Uwsgi.packet("GET /you HTTP/1.1", "Host: h"))
        let reply = try #require(try node.nextReply())
        #expect(reply.sid == sid(1) && reply.type == "headers")
        #expect(
            String(decoding: reply.body, as: UTF8.self)
                == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nHello /you")
        #expect(node.handler.events == [.started(method: "GET", path: "/you")])
        // The session stays known (keep-alive) until the gateway's `end`.
        #expect(node.core.sessions.count == 1)
        try node.deliver(sid(1), "end")
        #expect(node.handler.events.last == .ended)
        #expect(node.core.sessions.isEmpty)
        // A repeated `end` is harmless and not reported again.
        try node.deliverQuietly([sid(1), bytes("end"), []])
        #expect(node.handler.events.filter { $0 == .ended }.count == 1)
        #expect(throws: BackendError.sessionEnded) { try node.handler.sessions[0].write("late") }
    }

    @Test func headRequestGetsTheHeadOnly() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { _, session in try session.respond(body: "Hello") }
        try node.deliver(sid(2), "uwsgi", try Uwsgi.packet("HEAD / HTTP/1.1", "Host: h"))
        #expect(try node.replies() == ["headers:HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"])
    }

    @Test func requestBodyUntilTheEndMarker() throws {
        let node = try Harness()
        defer { node.close() }
        var received: [UInt8] = []
        node.handler.onBodyEnded = { session in
            received = node.handler.events.flatMap { event -> [UInt8] in
                if case .body(let bytes) = event { return bytes }
                return []
            }
            try session.respond(body: received)
        }
        try node.deliver(
            sid(3), "uwsgi", try Uwsgi.packet("POST /up HTTP/1.1", "Host: h", "Content-Length: 6"))
        try node.deliver(sid(3), "body", bytes("abc"))
        try node.deliver(sid(3), "body", [0, 0xFF, 10])
        #expect(try node.replies(quietMilliseconds: 20) == [])  // nothing before the end marker
        try node.deliver(sid(3), "body", [])
        #expect(
            node.handler.events == [
                .started(method: "POST", path: "/up"), .body(bytes("abc")), .body([0, 0xFF, 10]), .bodyEnded,
            ])
        #expect(received == bytes("abc") + [0, 0xFF, 10])
        let reply = try #require(try node.nextReply())
        #expect(reply.type == "headers")
        #expect(reply.body.suffix(6) == ArraySlice(bytes("abc") + [0, 0xFF, 10]))
    }

    @Test func streamingWithoutFraming() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { _, session in
            try session.sendHeaders(status: 200, headers: [("Content-Type", "text/plain")])
            try session.write("a")
            try session.write([])
            try session.chunk(bytes("b"))
            try session.write("c")
            try session.finish()
            try session.finish()
        }
        // HTTP/1.1: the SDK frames the body itself (Transfer-Encoding: chunked, `chunk` messages), so that an
        // `end` mid-body leaves it visibly cut off (docs/PROTOCOL.md, "What the SDKs do").
        try node.deliver(sid(4), "uwsgi", try Uwsgi.packet("GET / HTTP/1.1", "Host: h"))
        #expect(
            try node.replies() == [
                "headers:HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                "chunk:a", "chunk:b", "chunk:c", "chunk:",
            ])
        // HTTP/1.0: no chunking; the body is delimited by the close, writes are `body` messages.
        try node.deliver(sid(5), "uwsgi", try Uwsgi.packet("GET / HTTP/1.0", "Host: h"))
        #expect(
            try node.replies() == [
                "headers:HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "body:a", "chunk:b", "body:c", "chunk:",
            ])
    }

    @Test func chunkedHeadWritesChunkMessages() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { _, session in
            try session.sendHeaders(headers: [("Transfer-Encoding", "chunked")])
            try session.write("one")
            try session.write("two")
            try session.chunk([])
        }
        try node.deliver(sid(5), "uwsgi", try Uwsgi.packet("GET / HTTP/1.1", "Host: h"))
        #expect(
            try node.replies() == [
                "headers:HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "chunk:one", "chunk:two", "chunk:",
            ])
    }

    @Test func contentLengthStreamingAndShortBody() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { request, session in
            try session.sendHeaders(headers: [("Content-Length", "4")])
            if request.path == "/full" {
                try session.write("abcdef")  // cut at 4 bytes
                try session.finish()  // complete: nothing more
            } else {
                try session.write("ab")
                try session.finish()  // 2 bytes missing: end the session
            }
        }
        try node.deliver(sid(6), "uwsgi", try Uwsgi.packet("GET /full HTTP/1.1", "Host: h"))
        #expect(try node.replies() == ["headers:HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", "body:abcd"])
        try node.deliver(sid(7), "uwsgi", try Uwsgi.packet("GET /short HTTP/1.1", "Host: h"))
        #expect(try node.replies() == ["headers:HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", "body:ab", "end:"])
    }

    @Test func largeBodiesAreSplitIntoMessages() throws {
        let node = try Harness()
        defer { node.close() }
        let body = (0..<(NodeCore.maxMessageBytes * 2 + 10)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        node.handler.onStart = { _, session in try session.respond(body: body) }
        try node.deliver(sid(8), "uwsgi", try Uwsgi.packet("GET / HTTP/1.1", "Host: h"))
        var types: [String] = []
        var joined: [UInt8] = []
        while let reply = try node.nextReply() {
            types.append(reply.type)
            joined += reply.body
            if joined.count >= body.count + 20 { break }
        }
        #expect(types == ["headers", "body", "body"])
        let head = bytes("HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\n\r\n")
        #expect(joined == head + body)
    }

    @Test func webSocketMessagesBothWaysAndClose() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onWebSocket = { message, session in
            if message == .text("bye") {
                try session.close(code: 1001, reason: "going")
            } else {
                try session.sendWebSocket(message)
            }
        }
        try node.deliver(
            sid(9), "uwsgi",
            try Uwsgi.packet(
                "GET /ws HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: Upgrade",
                "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))
        try node.deliver(sid(9), "websocket", bytes("héllo"))
        var reply = try #require(try node.nextReply())
        #expect(reply.type == "websocket" && reply.body == bytes("héllo"))
        try node.deliver(sid(9), "websocket-binary", [0, 1, 2, 0xFF])
        reply = try #require(try node.nextReply())
        #expect(reply.type == "websocket-binary" && reply.body == [0, 1, 2, 0xFF])
        try node.deliver(sid(9), "websocket", bytes("bye"))
        reply = try #require(try node.nextReply())
        #expect(reply.type == "end" && reply.body == [0x03, 0xE9] + bytes("going"))
        #expect(
            node.handler.events.dropFirst() == [
                .webSocket(.text("héllo")), .webSocket(.binary([0, 1, 2, 0xFF])), .webSocket(.text("bye")),
            ])
        // Closed from our side: nothing more may be sent; the gateway's `end` still arrives.
        #expect(throws: BackendError.sessionEnded) { try node.handler.sessions[0].sendWebSocket(text: "x") }
        try node.deliver(sid(9), "end")
        #expect(node.handler.events.last == .ended)
    }

    @Test func webSocketMessageOnAPlainRequestIsRefused() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { _, session in
            #expect(throws: BackendError.notWebSocket) { try session.sendWebSocket(text: "x") }
            try session.respond(status: 204)
        }
        try node.deliver(sid(10), "uwsgi", try Uwsgi.packet("GET / HTTP/1.1", "Host: h"))
        #expect(try node.replies() == ["headers:HTTP/1.1 204 No Content\r\n\r\n"])
    }

    @Test func retryHandsTheRequestOn() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { _, session in try session.retry() }
        try node.deliver(sid(11), "uwsgi", try Uwsgi.packet("GET / HTTP/1.1", "Host: h"))
        #expect(try node.replies() == ["retry:"])
        #expect(node.core.sessions.isEmpty)
        // Leftover messages for the retried request are dropped.
        try node.deliverQuietly([sid(11), bytes("body"), bytes("x")])
        #expect(node.handler.events == [.started(method: "GET", path: "/")])
    }

    @Test func failingHandlerGets500OrEnd() throws {
        struct Failure: Error {}
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { request, session in
            if request.path == "/late" { try session.sendHeaders() }
            throw Failure()
        }
        try node.deliver(sid(12), "uwsgi", try Uwsgi.packet("GET /early HTTP/1.1", "Host: h"))
        #expect(
            try node.replies() == [
                "headers:HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n\r\nInternal Server Error\n"
            ])
        try node.deliver(sid(13), "uwsgi", try Uwsgi.packet("GET /late HTTP/1.1", "Host: h"))
        #expect(try node.replies() == ["headers:HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "end:"])
    }

    @Test func keepAliveRequestsOnOneSid() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { request, session in try session.respond(body: request.path) }
        for path in ["/1", "/2", "/3"] {
            try node.deliver(sid(14), "uwsgi", try Uwsgi.packet("GET \(path) HTTP/1.1", "Host: h"))
            #expect(try node.replies() == ["headers:HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\(path)"])
        }
        #expect(node.core.sessions.count == 1)
        #expect(Set(node.handler.sessions).count == 1)
    }

    @Test func dropsWhatItCannotUse() throws {
        let node = try Harness()
        defer { node.close() }
        let before = node.core.droppedMessages
        try node.deliverQuietly([sid(15), bytes("body")])  // 2 frames
        try node.deliverQuietly([sid(15), bytes("uwsgi"), [], []])  // 4 frames
        try node.deliverQuietly([sid(15), bytes("Body"), bytes("x")])  // unknown type
        // A sid that is not 16 bytes.
        try node.deliverQuietly([[1, 2, 3], bytes("uwsgi"), try Uwsgi.packet("GET / HTTP/1.1", "Host: h")])
        try node.deliverQuietly([sid(15), bytes("body"), bytes("x")])  // no such session
        try node.deliverQuietly([sid(15), bytes("websocket"), bytes("x")])  // no such session
        #expect(node.core.droppedMessages == before + 6)
        #expect(node.handler.events.isEmpty)
        // An undecodable uwsgi packet ends the session at once.
        try node.deliverQuietly([sid(15), bytes("uwsgi"), [9, 9]])
        #expect(try node.replies() == ["end:"])
        #expect(node.handler.events.isEmpty)
    }

    @Test func shutdownRetriesWaitingRequestsAndEndsTheRest() throws {
        let node = try Harness()
        defer { node.close() }
        node.handler.onStart = { request, session in
            if request.path == "/stream" { try session.sendHeaders() }
        }
        try node.deliver(sid(16), "uwsgi", try Uwsgi.packet("GET /wait HTTP/1.1", "Host: h"))
        try node.deliver(sid(17), "uwsgi", try Uwsgi.packet("GET /stream HTTP/1.1", "Host: h"))
        _ = try node.replies()
        node.core.shutdown(handler: node.handler)
        var seen: [[UInt8]: String] = [:]
        while let frames = node.router.receive(timeoutMilliseconds: 200) {
            seen[frames[1]] = String(decoding: frames[2], as: UTF8.self)
        }
        #expect(seen == [sid(16): "retry", sid(17): "end"])
        #expect(node.core.sessions.isEmpty)
        #expect(node.handler.events.filter { $0 == .ended }.count == 2)
    }

    @Test func severalGatewaysAnswerOnTheirOwnConnection() throws {
        let first = TestRouter()
        let second = TestRouter()
        let handler = Recorder()
        handler.onStart = { request, session in try session.respond(body: "\(session.gateway)\(request.path)") }
        let core = try NodeCore(identity: "multi", endpoints: [first.endpoint, second.endpoint])
        defer { core.close() }
        var announced = [false, false]
        let deadline = ContinuousClock.now + .seconds(2)
        while announced != [true, true] && ContinuousClock.now < deadline {
            try core.pump(handler: handler, timeoutMilliseconds: 5)
            if first.receive() != nil { announced[0] = true }
            if second.receive() != nil { announced[1] = true }
        }
        #expect(announced == [true, true])
        let identity = bytes("multi")
        // The same sid from both gateways is two sessions.
        #expect(second.send([identity, sid(1), bytes("uwsgi"), try Uwsgi.packet("GET /b HTTP/1.1", "Host: h")]))
        #expect(first.send([identity, sid(1), bytes("uwsgi"), try Uwsgi.packet("GET /a HTTP/1.1", "Host: h")]))
        var replies: [String] = []
        let until = ContinuousClock.now + .seconds(2)
        while replies.count < 2 && ContinuousClock.now < until {
            try core.pump(handler: handler, timeoutMilliseconds: 5)
            for (index, router) in [first, second].enumerated() {
                if let frames = router.receive() {
                    replies.append("\(index):" + String(decoding: frames[3].suffix(3), as: UTF8.self))
                }
            }
        }
        #expect(Set(replies) == ["0:0/a", "1:1/b"])
        #expect(core.sessions.count == 2)
    }
}
