import Testing

@testable import BlastBeatCore

/// The session machine without sockets: every state × event pair as a table, and the node slot balance
/// over random event sequences.
@Suite struct HTTPSessionTests {
    // MARK: states, each reached through events from a new session

    static let states: [(String, @Sendable () -> HTTPSession)] = [
        ("idle", { started() }),
        (
            "waitingForNode",
            {
                var session = started()
                session.waitForNode()
                return session
            }
        ),
        ("awaitingHead", { dispatched() }),
        ("responding(length)", { responding("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n") }),
        ("responding(chunked)", { responding("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") }),
        ("responding(gatewayChunked)", { responding("HTTP/1.1 200 OK\r\nX: y\r\n\r\n") }),
        ("responding(untilClose)", { responding("HTTP/1.1 200 OK\r\n\r\n", version: .http10) }),
        ("responded(discarding)", { responding("HTTP/1.1 204 No Content\r\n\r\n") }),
        (
            "responded",
            {
                var session = responding("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
                _ = feed(&session, "ok") { $0.receivedBody($1, isChunkMessage: false) }
                return session
            }
        ),
        (
            "webSocket",
            {
                var session = dispatched()
                session.upgradedByGateway()
                return session
            }
        ),
        (
            "closed",
            {
                var session = dispatched()
                _ = session.fail(.noNode)
                return session
            }
        ),
    ]

    // MARK: events

    static let lastChunk = "0\r\n\r\n"

    static let events: [(String, @Sendable (inout HTTPSession) -> String)] = [
        ("headers 200", { head(&$0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n") }),
        ("headers 100", { head(&$0, "HTTP/1.1 100 Continue\r\n\r\n") }),
        ("headers invalid", { head(&$0, "garbage\r\n\r\n") }),
        ("headers 101", { head(&$0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") }),
        ("body", { feed(&$0, lastChunk) { $0.receivedBody($1, isChunkMessage: false) } }),
        ("body empty", { feed(&$0, "") { $0.receivedBody($1, isChunkMessage: false) } }),
        ("chunk", { feed(&$0, lastChunk) { $0.receivedBody($1, isChunkMessage: true) } }),
        ("chunk empty", { feed(&$0, "") { $0.receivedBody($1, isChunkMessage: true) } }),
        ("end", { describe($0.receivedEnd()) }),
        ("retry", { describe($0.receivedRetry(canReplay: true, otherNodeAvailable: true, maxResends: 3)) }),
        (
            "node lost",
            {
                describe($0.nodeLost(connectionReplaced: false, canReplay: true, otherNodeAvailable: true, maxResends: 3))
            }
        ),
        ("backend timeout", { describe($0.backendTimedOut()) }),
        ("fail", { describe($0.fail(.refused(status: 400, message: "no"))) }),
        (
            "exchange finished",
            {
                $0.exchangeFinished()
                return "none"
            }
        ),
        ("client gone", { $0.clientGone().map { "end(\($0))" } ?? "none" }),
    ]

    /// state → event → "next state | action". `start` and `dispatched` are not events here: the transport
    /// calls them only between responses (they check that with a precondition), see the tests below.
    static let table: [String: [String: String]] = [
        "idle": [
            "exchange finished": "idle | none",
            "headers 200": "idle | drop(headersWithoutRequest)",
            "headers 100": "idle | drop(headersWithoutRequest)",
            "headers invalid": "idle | drop(headersWithoutRequest)",
            "headers 101": "idle | drop(headersWithoutRequest)",
            "body": "idle | drop(bodyWithoutResponse)",
            "body empty": "idle | none",
            "chunk": "idle | drop(bodyWithoutResponse)",
            "chunk empty": "idle | none",
            "end": "idle | close",
            "retry": "idle | drop(retryWithoutRequest)",
            "node lost": "idle | none",
            "backend timeout": "idle | none",
            "fail": "closed | answerError(400)",
            "client gone": "closed | none",
        ],
        "waitingForNode": [
            "exchange finished": "waitingForNode | none",
            "headers 200": "waitingForNode | drop(headersWithoutRequest)",
            "headers 100": "waitingForNode | drop(headersWithoutRequest)",
            "headers invalid": "waitingForNode | drop(headersWithoutRequest)",
            "headers 101": "waitingForNode | drop(headersWithoutRequest)",
            "body": "waitingForNode | drop(bodyWithoutResponse)",
            "body empty": "waitingForNode | none",
            "chunk": "waitingForNode | drop(bodyWithoutResponse)",
            "chunk empty": "waitingForNode | none",
            "end": "waitingForNode | none",
            "retry": "waitingForNode | drop(retryWithoutRequest)",
            "node lost": "waitingForNode | none",
            "backend timeout": "closed | answerError(503)",
            "fail": "closed | answerError(400)",
            "client gone": "closed | none",
        ],
        "awaitingHead": [
            "exchange finished": "awaitingHead | none",
            "headers 200": "responding(length) | startResponse(200)",
            "headers 100": "awaitingHead | write(25)",
            "headers invalid": "closed | answerError(502)",
            "headers 101": "closed | answerError(502)",
            "body": "closed | answerError(502)",
            "body empty": "awaitingHead | none",
            "chunk": "closed | answerError(502)",
            "chunk empty": "awaitingHead | none",
            "end": "closed | answerError(502)",
            "retry": "idle | resend(nil)",
            "node lost": "idle | resend(nil)",
            "backend timeout": "closed | answerError(504)",
            "fail": "closed | answerError(400)",
            "client gone": "closed | end(0)",
        ],
        "responding(length)": [
            "exchange finished": "responding(length) | none",
            "headers 200": "responding(length) | drop(headersWithoutRequest)",
            "headers 100": "responding(length) | drop(headersWithoutRequest)",
            "headers invalid": "responding(length) | drop(headersWithoutRequest)",
            "headers 101": "responding(length) | drop(headersWithoutRequest)",
            "body": "responded | write(5, complete)",
            "body empty": "responding(length) | write(0)",
            "chunk": "responded | write(5, complete)",
            "chunk empty": "responding(length) | write(0)",
            "end": "responded | finishAndClose(truncated)",
            "retry": "responding(length) | drop(retryWithoutRequest)",
            "node lost": "closed | abort(502)",
            "backend timeout": "closed | abort(502)",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "responding(chunked)": [
            "exchange finished": "responding(chunked) | none",
            "headers 200": "responding(chunked) | drop(headersWithoutRequest)",
            "headers 100": "responding(chunked) | drop(headersWithoutRequest)",
            "headers invalid": "responding(chunked) | drop(headersWithoutRequest)",
            "headers 101": "responding(chunked) | drop(headersWithoutRequest)",
            "body": "responded | write(5, complete)",
            "body empty": "responding(chunked) | write(0)",
            "chunk": "responding(chunked) | writeChunk(5)",
            "chunk empty": "responded | writeChunk(0, complete)",
            "end": "responded | finishAndClose",
            "retry": "responding(chunked) | drop(retryWithoutRequest)",
            "node lost": "closed | abort(502)",
            "backend timeout": "closed | abort(502)",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "responding(gatewayChunked)": [
            "exchange finished": "responding(gatewayChunked) | none",
            "headers 200": "responding(gatewayChunked) | drop(headersWithoutRequest)",
            "headers 100": "responding(gatewayChunked) | drop(headersWithoutRequest)",
            "headers invalid": "responding(gatewayChunked) | drop(headersWithoutRequest)",
            "headers 101": "responding(gatewayChunked) | drop(headersWithoutRequest)",
            "body": "responding(gatewayChunked) | writeChunk(5)",
            "body empty": "responding(gatewayChunked) | none",
            "chunk": "responding(gatewayChunked) | writeChunk(5)",
            "chunk empty": "responded | writeChunk(0, complete)",
            "end": "responded | finishAndClose(lastChunk)",
            "retry": "responding(gatewayChunked) | drop(retryWithoutRequest)",
            "node lost": "closed | abort(502)",
            "backend timeout": "closed | abort(502)",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "responding(untilClose)": [
            "exchange finished": "responding(untilClose) | none",
            "headers 200": "responding(untilClose) | drop(headersWithoutRequest)",
            "headers 100": "responding(untilClose) | drop(headersWithoutRequest)",
            "headers invalid": "responding(untilClose) | drop(headersWithoutRequest)",
            "headers 101": "responding(untilClose) | drop(headersWithoutRequest)",
            "body": "responding(untilClose) | write(5)",
            "body empty": "responding(untilClose) | write(0)",
            "chunk": "responding(untilClose) | write(5)",
            "chunk empty": "responded | write(0, complete)",
            "end": "responded | finishAndClose",
            "retry": "responding(untilClose) | drop(retryWithoutRequest)",
            "node lost": "closed | abort(502)",
            "backend timeout": "closed | abort(502)",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "responded(discarding)": [
            "exchange finished": "idle | none",
            "headers 200": "responded(discarding) | drop(headersWithoutRequest)",
            "headers 100": "responded(discarding) | drop(headersWithoutRequest)",
            "headers invalid": "responded(discarding) | drop(headersWithoutRequest)",
            "headers 101": "responded(discarding) | drop(headersWithoutRequest)",
            "body": "responded(discarding) | drop(bodyAfterBodylessResponse)",
            "body empty": "responded(discarding) | drop(bodyAfterBodylessResponse)",
            "chunk": "responded(discarding) | drop(bodyAfterBodylessResponse)",
            "chunk empty": "responded(discarding) | drop(bodyAfterBodylessResponse)",
            "end": "responded(discarding) | close",
            "retry": "responded(discarding) | drop(retryWithoutRequest)",
            "node lost": "responded(discarding) | none",
            "backend timeout": "responded(discarding) | none",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "responded": [
            "exchange finished": "idle | none",
            "headers 200": "responded | drop(headersWithoutRequest)",
            "headers 100": "responded | drop(headersWithoutRequest)",
            "headers invalid": "responded | drop(headersWithoutRequest)",
            "headers 101": "responded | drop(headersWithoutRequest)",
            "body": "responded | drop(bodyWithoutResponse)",
            "body empty": "responded | none",
            "chunk": "responded | drop(bodyWithoutResponse)",
            "chunk empty": "responded | none",
            "end": "responded | close",
            "retry": "responded | drop(retryWithoutRequest)",
            "node lost": "responded | none",
            "backend timeout": "responded | none",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "webSocket": [
            "exchange finished": "webSocket | none",
            "headers 200": "webSocket | drop(headersWithoutRequest)",
            "headers 100": "webSocket | drop(headersWithoutRequest)",
            "headers invalid": "webSocket | drop(headersWithoutRequest)",
            "headers 101": "webSocket | drop(headersWithoutRequest)",
            "body": "webSocket | drop(bodyWithoutResponse)",
            "body empty": "webSocket | none",
            "chunk": "webSocket | drop(bodyWithoutResponse)",
            "chunk empty": "webSocket | none",
            "end": "webSocket | none",
            "retry": "webSocket | drop(retryWithoutRequest)",
            "node lost": "closed | abort(502)",
            "backend timeout": "webSocket | none",
            "fail": "closed | abort(400)",
            "client gone": "closed | end(0)",
        ],
        "closed": [
            "exchange finished": "closed | none",
            "headers 200": "closed | drop(headersWithoutRequest)",
            "headers 100": "closed | drop(headersWithoutRequest)",
            "headers invalid": "closed | drop(headersWithoutRequest)",
            "headers 101": "closed | drop(headersWithoutRequest)",
            "body": "closed | drop(bodyWithoutResponse)",
            "body empty": "closed | none",
            "chunk": "closed | drop(bodyWithoutResponse)",
            "chunk empty": "closed | none",
            "end": "closed | none",
            "retry": "closed | drop(retryWithoutRequest)",
            "node lost": "closed | none",
            "backend timeout": "closed | none",
            "fail": "closed | none",
            "client gone": "closed | end(0)",
        ],
    ]

    @Test func tableCoversEveryStateAndEvent() {
        #expect(Set(Self.table.keys) == Set(Self.states.map(\.0)))
        for (state, row) in Self.table {
            #expect(Set(row.keys) == Set(Self.events.map(\.0)), "row \(state)")
        }
    }

    @Test func everyStateAndEvent() {
        for (stateName, make) in Self.states {
            #expect(Self.kind(make().state) == stateName, "setup of \(stateName)")
            for (eventName, event) in Self.events {
                var session = make()
                let action = event(&session)
                let got = "\(Self.kind(session.state)) | \(action)"
                #expect(got == Self.table[stateName]?[eventName], "\(stateName) × \(eventName)")
                // The slot is held exactly in the states that wait for or relay a response.
                switch session.state {
                case .awaitingHead, .responding, .webSocket: #expect(session.slotNode == 0)
                case .idle, .waitingForNode, .responded, .closed: #expect(session.slotNode == nil)
                }
            }
        }
    }

    // MARK: beyond the table

    /// A request parked for a node goes out when one connects; a late `end` from the node of the previous
    /// request on the session neither answers nor drops it, and the connection closes after its response.
    @Test func aRequestWaitingForANodeIsDispatchedWhenOneConnects() {
        var session = Self.dispatched()
        _ = Self.head(&session, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        session.exchangeFinished()
        session.start(HTTPSession.Request())
        session.waitForNode()
        #expect(session.isWaitingForNode && session.isResponseActive && session.slotNode == nil)
        #expect(Self.describe(session.receivedEnd()) == "none")
        #expect(!session.keepAlive)
        #expect(session.bind(to: 1) == 0, "node 0 knew the session from the first request")
        session.dispatched()
        #expect(Self.kind(session.state) == "awaitingHead" && session.slotNode == 1 && !session.isWaitingForNode)
    }

    @Test func interimHeadsThenFinalHeadAndBodyInOneMessage() {
        var session = Self.dispatched()
        let message = Array("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)
        var offset = 0
        #expect(session.receivedHead(message.span.bytes, from: &offset) == .write(0..<40, complete: false))
        #expect(Self.describe(session.receivedHead(message.span.bytes, from: &offset)) == "startResponse(200)")
        #expect(offset == message.count - 2)
        #expect(session.receivedBody(message.span.bytes, from: offset, isChunkMessage: false) == .write(offset..<message.count, complete: true))
        #expect(Self.kind(session.state) == "responded")
        #expect(session.keepAlive)
    }

    @Test func backendContinueIsSwallowedAfterTheGatewaysOwn() {
        var session = Self.dispatched()
        session.continueWasSent()
        #expect(Self.head(&session, "HTTP/1.1 100 Continue\r\n\r\n") == "none")
        #expect(Self.kind(session.state) == "awaitingHead")
    }

    @Test func interimHeadsAreNotSentToHTTP10Clients() {
        var session = Self.dispatched(version: .http10)
        #expect(Self.head(&session, "HTTP/1.1 103 Early Hints\r\n\r\n") == "none")
    }

    @Test func backendHandshakeAcceptsA101() {
        var session = Self.started()
        session.expectBackendHandshake()
        _ = session.bind(to: 0)
        session.dispatched()
        #expect(Self.head(&session, "HTTP/1.1 101 Switching Protocols\r\n\r\n") == "acceptUpgrade")
        #expect(Self.kind(session.state) == "webSocket")
        #expect(Self.describe(session.refuseUpgrade(.subprotocolNotOffered)) == "answerError(502)")
        #expect(session.slotNode == nil)
    }

    @Test func persistenceFollowsTheResponse() {
        var close = Self.dispatched()
        _ = Self.head(&close, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        #expect(!close.keepAlive)
        var old = Self.dispatched()
        _ = Self.head(&old, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(!old.keepAlive)
        var kept = Self.dispatched(version: .http10)
        _ = Self.head(&kept, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
        #expect(kept.keepAlive)
        var coded = Self.dispatched()
        _ = Self.head(&coded, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
        #expect(Self.kind(coded.state) == "responding(untilClose)")
        #expect(!coded.keepAlive)
        var head = Self.dispatched(isHead: true)
        #expect(Self.head(&head, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n") == "startResponse(200, complete)")
        #expect(Self.kind(head.state) == "responded(discarding)")
    }

    /// A close the client does not expect (the gateway stopping, an unframed body) is announced in the head, so
    /// the client sends no further request on the connection; a close it expects, or one the head says, is not.
    @Test func aCloseTheClientDoesNotExpectIsAnnounced() {
        func adding(_ session: inout HTTPSession, _ text: String) -> AddedHeaders? {
            var offset = 0
            guard case .startResponse(_, _, let adding, _) = session.receivedHead(Array(text.utf8).span.bytes, from: &offset) else { return nil }
            return adding
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        var stopping = Self.dispatched()
        stopping.stopKeepingAlive()
        #expect(adding(&stopping, head) == AddedHeaders(blankLine: head.utf8.count - 2, chunked: false, close: true))
        var kept = Self.dispatched()
        #expect(adding(&kept, head) == nil)
        var said = Self.dispatched()
        said.stopKeepingAlive()
        #expect(adding(&said, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n") == nil)
        var old = Self.dispatched(version: .http10)
        old.stopKeepingAlive()
        #expect(adding(&old, head) == nil)
        var asked = HTTPSession(chunkLimits: HTTPLimits())
        asked.start(HTTPSession.Request(keepAlive: false))
        _ = asked.bind(to: 0)
        asked.dispatched()
        #expect(adding(&asked, head) == nil, "the client asked to close: it expects the close")
        var stoppedAtStart = HTTPSession(chunkLimits: HTTPLimits())
        stoppedAtStart.start(HTTPSession.Request(keepAlive: false, clientWantsKeepAlive: true))
        _ = stoppedAtStart.bind(to: 0)
        stoppedAtStart.dispatched()
        #expect(adding(&stoppedAtStart, head)?.close == true, "stopping when the request came: the client is told")
        var unframed = Self.dispatched()
        let gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"
        #expect(adding(&unframed, gzip) == AddedHeaders(blankLine: gzip.utf8.count - 2, chunked: false, close: true))
    }

    @Test func gatewayFramingInsertsTransferEncodingBeforeTheBlankLine() {
        var session = Self.dispatched()
        let head = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n"
        var offset = 0
        guard case .startResponse(let range, _, let adding?, false) = session.receivedHead(Array(head.utf8).span.bytes, from: &offset) else {
            Issue.record("no chunked framing")
            return
        }
        #expect(range == 0..<head.utf8.count && offset == head.utf8.count)
        #expect(adding == AddedHeaders(blankLine: head.utf8.count - 2, chunked: true, close: false))
    }

    @Test func bytesPastContentLengthAreDropped() {
        var session = Self.responding("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        #expect(Self.feed(&session, "okay") { $0.receivedBody($1, isChunkMessage: false) } == "writeDroppingExcess(2, 2)")
        #expect(Self.kind(session.state) == "responded")
    }

    @Test func invalidChunkedBodyCutsTheConnection() {
        var session = Self.responding("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(Self.feed(&session, "zz\r\n") { $0.receivedBody($1, isChunkMessage: false) } == "abort(502)")
    }

    @Test func retriesAreBounded() {
        var session = Self.dispatched()
        for _ in 0..<2 {
            #expect(Self.describe(session.receivedRetry(canReplay: true, otherNodeAvailable: true, maxResends: 2)) == "resend(nil)")
            _ = session.bind(to: 1)
            session.dispatched()
        }
        #expect(Self.describe(session.receivedRetry(canReplay: true, otherNodeAvailable: true, maxResends: 2)) == "answerError(502)")
        var unreplayable = Self.dispatched()
        #expect(Self.describe(unreplayable.receivedRetry(canReplay: false, otherNodeAvailable: true, maxResends: 2)) == "answerError(502)")
        var alone = Self.dispatched()
        #expect(Self.describe(alone.receivedRetry(canReplay: true, otherNodeAvailable: false, maxResends: 2)) == "answerError(502)")
    }

    @Test func aLostNodeResendsOnlyWhatIsSafeToRepeat() {
        var post = Self.dispatched(isRepeatable: false)
        #expect(Self.describe(post.nodeLost(connectionReplaced: false, canReplay: true, otherNodeAvailable: true, maxResends: 3)) == "answerError(502)")
        #expect(!post.nodeKnowsSession)
        var replaced = Self.dispatched()
        #expect(Self.describe(replaced.nodeLost(connectionReplaced: true, canReplay: true, otherNodeAvailable: true, maxResends: 3)) == "resend(0)")
        var noBody = Self.dispatched()
        #expect(Self.describe(noBody.nodeLost(connectionReplaced: false, canReplay: false, otherNodeAvailable: true, maxResends: 3)) == "answerError(502)")
    }

    @Test func movingToAnotherNodeTellsTheOldOneToForget() {
        var session = Self.responding("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(session.node == 0 && session.nodeKnowsSession)
        session.start(HTTPSession.Request(isRepeatable: true))
        #expect(session.bind(to: 0) == nil)  // affinity: the same node keeps it
        #expect(session.bind(to: 1) == 0)
        #expect(!session.nodeKnowsSession)
        session.dispatchFailed()
        #expect(session.bind(to: 2) == nil)  // node 1 never got it
        session.dispatched()
        #expect(session.clientGone() == 2)
        #expect(session.clientGone() == nil)
    }

    /// Random event sequences, with the transport's slot bookkeeping (take when `slotNode` appears, release
    /// when it goes): every take is matched by one release once the client is gone.
    @Test func slotsBalanceOverRandomEventSequences() {
        var generator = SplitMix(seed: 0x5E55_1011)
        for _ in 0..<2_000 {
            var session = Self.started()
            var held = [0, 0, 0]
            func settle(_ before: Int?) {
                let after = session.slotNode
                if before == after { return }
                if let before { held[before] -= 1 }
                if let after { held[after] += 1 }
                #expect(held.allSatisfy { $0 >= 0 && $0 <= 1 })
            }
            for _ in 0..<12 {
                let before = session.slotNode
                switch session.state {
                case .idle where generator.next() % 7 == 0:
                    session.waitForNode()
                    settle(before)
                    continue
                case .waitingForNode where generator.next() % 2 == 0:
                    _ = session.bind(to: Int(generator.next() % 3))
                    session.dispatched()
                    settle(before)
                    continue
                case .idle, .responded:
                    if generator.next() % 3 == 0 {
                        let node = Int(generator.next() % 3)
                        _ = session.bind(to: node)
                        session.dispatched()
                        settle(before)
                        continue
                    }
                    if generator.next() % 5 == 0, !session.isResponseActive {
                        session.start(HTTPSession.Request(isRepeatable: generator.next() % 2 == 0))
                    }
                default:
                    break
                }
                let (_, event) = Self.events[Int(generator.next() % UInt64(Self.events.count - 1))]  // all but "client gone"
                _ = event(&session)
                settle(before)
            }
            let before = session.slotNode
            _ = session.clientGone()
            settle(before)
            #expect(held == [0, 0, 0])
        }
    }

    // MARK: helpers

    static func started(version: HTTPVersion = .http11, isHead: Bool = false, isRepeatable: Bool = true) -> HTTPSession {
        var session = HTTPSession(chunkLimits: HTTPLimits())
        session.start(HTTPSession.Request(version: version, isHead: isHead, isRepeatable: isRepeatable))
        return session
    }

    static func dispatched(version: HTTPVersion = .http11, isHead: Bool = false, isRepeatable: Bool = true) -> HTTPSession {
        var session = started(version: version, isHead: isHead, isRepeatable: isRepeatable)
        _ = session.bind(to: 0)
        session.dispatched()
        return session
    }

    static func responding(_ head: String, version: HTTPVersion = .http11) -> HTTPSession {
        var session = dispatched(version: version)
        _ = Self.head(&session, head)
        return session
    }

    static func head(_ session: inout HTTPSession, _ text: String) -> String {
        var offset = 0
        return describe(session.receivedHead(Array(text.utf8).span.bytes, from: &offset))
    }

    static func feed(
        _ session: inout HTTPSession, _ text: String,
        _ event: (inout HTTPSession, RawSpan) -> HTTPSessionAction
    ) -> String {
        describe(event(&session, Array(text.utf8).span.bytes))
    }

    static func kind(_ state: HTTPSession.State) -> String {
        switch state {
        case .idle: "idle"
        case .waitingForNode: "waitingForNode"
        case .awaitingHead: "awaitingHead"
        case .responding(_, .length): "responding(length)"
        case .responding(_, .chunked): "responding(chunked)"
        case .responding(_, .gatewayChunked): "responding(gatewayChunked)"
        case .responding(_, .untilClose): "responding(untilClose)"
        case .responded(discardingBody: true): "responded(discarding)"
        case .responded(discardingBody: false): "responded"
        case .webSocket: "webSocket"
        case .closed: "closed"
        }
    }

    static func describe(_ action: HTTPSessionAction) -> String {
        switch action {
        case .none: "none"
        case .write(let bytes, let complete): complete ? "write(\(bytes.count), complete)" : "write(\(bytes.count))"
        case .writeDroppingExcess(let bytes, let excess): "writeDroppingExcess(\(bytes.count), \(excess))"
        case .writeChunk(let bytes, let complete):
            complete ? "writeChunk(\(bytes.count), complete)" : "writeChunk(\(bytes.count))"
        case .startResponse(_, let status, _, let complete):
            complete ? "startResponse(\(status), complete)" : "startResponse(\(status))"
        case .acceptUpgrade: "acceptUpgrade"
        case .finishAndClose(let lastChunk, let truncated):
            lastChunk ? "finishAndClose(lastChunk)" : truncated ? "finishAndClose(truncated)" : "finishAndClose"
        case .close: "close"
        case .resend(let node): "resend(\(node.map(String.init) ?? "nil"))"
        case .answerError(let failure): "answerError(\(failure.status))"
        case .abort(let failure): "abort(\(failure.status))"
        case .drop(let reason): "drop(\(reason))"
        }
    }
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
