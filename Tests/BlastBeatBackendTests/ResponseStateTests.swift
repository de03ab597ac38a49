import BlastBeatCore
import Testing

@testable import BlastBeatBackend

@Suite struct ResponseStateTests {
    private func started(isHEAD: Bool = false, isWebSocket: Bool = false) -> ResponseState {
        var state = ResponseState()
        state.requestStarted(isHEAD: isHEAD, isWebSocket: isWebSocket)
        return state
    }

    @Test func contentLengthBody() throws {
        var state = started()
        #expect(try state.canSendHead(status: 200) == false)
        state.headSent(status: 200, framing: .contentLength(10))
        #expect(try state.write(count: 4) == .send(.body, count: 4))
        #expect(state.state == .body(.length(remaining: 6)))
        // Bytes past the length are cut; the response is then complete.
        #expect(try state.write(count: 8) == .send(.body, count: 6))
        #expect(state.state == .complete)
        #expect(try state.write(count: 3) == .drop)
        #expect(try state.finish() == .nothing)
    }

    @Test func shortContentLengthBodyEndsTheSession() throws {
        var state = started()
        state.headSent(status: 200, framing: .contentLength(10))
        _ = try state.write(count: 4)
        #expect(try state.finish() == .end)
        #expect(state.state == .ended)
        #expect(throws: BackendError.sessionEnded) { try state.write(count: 1) }
    }

    @Test func chunkedHeadMakesChunkMessages() throws {
        var state = started()
        state.headSent(status: 200, framing: .chunked)
        #expect(try state.write(count: 3) == .send(.chunk, count: 3))
        #expect(try state.write(count: 0) == .drop)  // an empty chunk would end the response
        #expect(try state.finish() == .emptyChunk)
        #expect(state.state == .complete)
        #expect(try state.finish() == .nothing)
    }

    @Test func unframedBodyUsesBodyMessages() throws {
        var state = started()
        state.headSent(status: 200, framing: .untilClose)
        #expect(try state.write(count: 3) == .send(.body, count: 3))
        #expect(try state.write(count: 3, asChunk: true) == .send(.chunk, count: 3))
        #expect(try state.finish() == .emptyChunk)
    }

    @Test(arguments: [HTTPResponseBodyFraming.none, .contentLength(0)])
    func bodylessResponsesAreCompleteAtTheHead(_ framing: HTTPResponseBodyFraming) throws {
        var state = started(isHEAD: true)
        #expect(try state.canSendHead(status: 200) == true)
        state.headSent(status: 200, framing: framing)
        #expect(state.state == .complete)
        #expect(try state.write(count: 5) == .drop)
        #expect(try state.finish() == .nothing)
    }

    @Test func interimHeadsKeepWaitingForTheFinalOne() throws {
        var state = started()
        state.headSent(status: 103, framing: .none)
        #expect(state.isAwaitingHead)
        #expect(throws: BackendError.responseNotStarted) { try state.write(count: 1) }
        state.headSent(status: 200, framing: .untilClose)
        #expect(!state.isAwaitingHead)
    }

    @Test func outOfOrderCalls() throws {
        var idle = ResponseState()
        #expect(throws: BackendError.responseNotStarted) { try idle.canSendHead(status: 200) }
        #expect(throws: BackendError.responseNotStarted) { try idle.finish() }
        #expect(throws: BackendError.responseNotStarted) { try idle.retry() }

        var state = started()
        #expect(throws: BackendError.responseNotStarted) { try state.write(count: 1) }
        #expect(throws: BackendError.notWebSocket) { try state.canSendWebSocket() }
        #expect(throws: BackendError.invalidStatus) { try state.canSendHead(status: 101) }
        state.headSent(status: 200, framing: .untilClose)
        #expect(throws: BackendError.responseAlreadyStarted) { try state.canSendHead(status: 200) }
        #expect(throws: BackendError.responseAlreadyStarted) { try state.retry() }
        let first = state.ended()
        let second = state.ended()
        #expect(first && !second)
        #expect(throws: BackendError.sessionEnded) { try state.canSendHead(status: 200) }
    }

    @Test func keepAliveStartsOver() throws {
        var state = started()
        state.headSent(status: 200, framing: .contentLength(0))
        #expect(state.state == .complete)
        state.requestStarted(isHEAD: false, isWebSocket: false)
        #expect(state.isAwaitingHead)
    }

    @Test func retryOnlyBeforeTheHead() throws {
        var state = started()
        try state.retry()
        #expect(state.state == .idle)
    }

    @Test func webSocketSessions() throws {
        // Gateway handshake: messages may go at once.
        var state = started(isWebSocket: true)
        try state.canSendWebSocket()
        #expect(state.isWebSocket)
        // Backend handshake: the node accepts with 101.
        #expect(try state.canSendHead(status: 101) == false)
        state.headSent(status: 101, framing: .none)
        #expect(state.state == .webSocket)
        try state.canSendWebSocket()
        #expect(throws: BackendError.responseAlreadyStarted) { try state.write(count: 1) }
        #expect(try state.finish() == .nothing)
        // Backend handshake refused: an ordinary response, no messages.
        var refused = started(isWebSocket: true)
        refused.headSent(status: 403, framing: .contentLength(0))
        #expect(throws: BackendError.notWebSocket) { try refused.canSendWebSocket() }
    }
}

@Suite struct ResponseHeadTests {
    private func text(_ encoded: ResponseHead.Encoded) -> String { String(decoding: encoded.bytes, as: UTF8.self) }

    @Test func encodesStatusHeadersAndLength() throws {
        let head = try ResponseHead.encode(
            status: 404, headers: [("Content-Type", "text/plain"), ("X-A", "b c")], contentLength: 7)
        #expect(
            text(head) == "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-A: b c\r\nContent-Length: 7\r\n\r\n")
        #expect(head.parsed.status == 404 && head.parsed.contentLength == 7 && head.parsed.length == head.bytes.count)
    }

    @Test func stripsFramingHeadersWhenAsked() throws {
        let headers = [("content-length", "99"), ("Transfer-Encoding", "chunked"), ("X", "y")]
        let head = try ResponseHead.encode(status: 200, headers: headers, contentLength: 3, stripFraming: true)
        #expect(text(head) == "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 3\r\n\r\n")
        let kept = try ResponseHead.encode(status: 200, headers: [("Transfer-Encoding", "chunked")])
        #expect(kept.parsed.isChunked)
        #expect(kept.parsed.bodyFraming(requestIsHEAD: false) == .chunked)
    }

    @Test func unknownStatusGetsAReason() throws {
        #expect(text(try ResponseHead.encode(status: 299, headers: [])) == "HTTP/1.1 299 Unknown\r\n\r\n")
    }

    @Test(arguments: [0, 99, 1000, -1])
    func refusesInvalidStatus(_ status: Int) {
        #expect(throws: BackendError.invalidStatus) { try ResponseHead.encode(status: status, headers: []) }
    }

    static let badHeaders: [(String, String)] = [
        ("", "x"), ("Bad Name", "x"), ("Bad:Name", "x"), ("X", "a\r\nInjected: yes"), ("X", "a\nb"), ("X", "a\u{0}b"),
        ("X", "a\rb"), ("Näme", "x"),
        // Conflicting framing, refused by the gateway's own parser.
        ("Content-Length", "abc"),
    ]

    @Test func refusesHeadersTheGatewayWouldRefuse() {
        for header in Self.badHeaders {
            #expect(throws: BackendError.invalidHeader, "\(header)") {
                try ResponseHead.encode(status: 200, headers: [header])
            }
        }
        #expect(throws: BackendError.invalidHeader) {
            try ResponseHead.encode(status: 200, headers: [("Content-Length", "1"), ("Transfer-Encoding", "chunked")])
        }
    }
}
