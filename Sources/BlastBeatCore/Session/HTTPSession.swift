/// The backend half of one HTTP session: a request handed to a node, and the response the node sends back
/// for the session's sid, from dispatch to its last body byte (docs/PROTOCOL.md, "Response framing", "Retry").
///
/// A session is not a connection. The transport that owns the client side (today the HTTP/1.1
/// connection; HTTP/2 would run one per stream) parses requests and feeds the session events — the node
/// took the request, a backend message, the node went away, the backend deadline passed, the client is
/// gone. Each event changes the state and returns one `HTTPSessionAction` for the transport to carry out
/// (it does the I/O, counters and logs). The session never calls back, so an action may start the next
/// request on the same session without re-entering an event.
///
/// The session holds a slot of its node (the in-flight count balancing reads) exactly while it is in
/// `awaitingHead`, `responding` or `webSocket`: `slotNode` says which. The transport takes and releases
/// slots in one place, by comparing `slotNode` before and after each event, so no path can leak one.
///
///     idle ──dispatched──▶ awaitingHead ──final head──▶ responding ──last byte──▶ responded ──start──▶ …
///       │        ▲           │  ▲   └─(no body)──────────────────────────────────▲
///       │        │           │  └──retry / node lost, resend──┘
///       │        │           └──101 accepted / gateway handshake──▶ webSocket
///       └─wait─▶ waitingForNode (just after a start: no node of the vhost connected yet)
///     any state ──fail / abort / client gone──▶ closed
package struct HTTPSession {
    package enum State {
        /// No request in flight: before the first one, or between keep-alive requests.
        case idle
        /// The request found no connected node of its vhost right after the gateway started, and is parked
        /// (no slot) until one connects (`dispatched`), the wait ends (`fail`) or the client goes.
        case waitingForNode
        /// The request went to `node` (slot held); no final response head yet.
        case awaitingHead(node: Int)
        /// The final head went to the client; the body follows, delimited by `framing` (slot held).
        case responding(node: Int, framing: ResponseFraming)
        /// The response is complete and the slot released. With `discardingBody`, the response had no
        /// body (HEAD, 204, 304) and `body` messages the backend still sends (the body it would have sent
        /// for GET) are dropped until the next request instead of being taken for a protocol error.
        case responded(discardingBody: Bool)
        /// The session speaks WebSocket: it holds its slot until it closes, so balancing counts open sockets.
        case webSocket(node: Int)
        /// Answered with an error or cut off: nothing more happens on this session.
        case closed
    }

    /// What the session needs to know of the request it carries.
    package struct Request: Equatable, Sendable {
        package var version: HTTPVersion = .http11
        package var isHead = false
        /// The client wants the connection kept (and the gateway is not shutting down).
        package var keepAlive = true
        /// What the client itself asked for: when it wanted the connection kept and the gateway closes it all
        /// the same, the response says `Connection: close` (`AddedHeaders.close`).
        package var clientWantsKeepAlive = true
        /// GET, HEAD, OPTIONS and PUT may be sent twice with the same effect (RFC 9110 §9.2.2).
        package var isRepeatable = false
        /// A WebSocket upgrade the backend answers (101 accepts it, anything else refuses it).
        package var backendHandshake = false
        /// A `100 Continue` already went to the client (the gateway's own, or the backend's).
        package var continueSent = false

        package init(
            version: HTTPVersion = .http11, isHead: Bool = false, keepAlive: Bool = true, isRepeatable: Bool = false,
            backendHandshake: Bool = false, clientWantsKeepAlive: Bool? = nil
        ) {
            self.version = version
            self.isHead = isHead
            self.keepAlive = keepAlive
            self.clientWantsKeepAlive = clientWantsKeepAlive ?? keepAlive
            self.isRepeatable = isRepeatable
            self.backendHandshake = backendHandshake
        }
    }

    package private(set) var state: State = .idle
    package private(set) var request = Request()
    /// The node the session is bound to: the node of the current or last request (affinity for the next).
    package private(set) var node: Int?
    /// Whether `node` was sent anything on the sid, and so must be told `end` when the session closes.
    package private(set) var nodeKnowsSession = false
    /// How often the current request was sent again (after `retry` or a lost node).
    package private(set) var resends = 0
    /// Whether the client connection may carry another request after this response.
    package private(set) var keepAlive = true
    /// Chunk limits for validating a backend's own chunked encoding (no body size limit).
    private let chunkLimits: HTTPLimits

    package init(chunkLimits: HTTPLimits) {
        self.chunkLimits = chunkLimits
    }

    /// The node whose slot the session holds, if any.
    package var slotNode: Int? {
        switch state {
        case .awaitingHead(let node), .responding(let node, _), .webSocket(let node): node
        case .idle, .waitingForNode, .responded, .closed: nil
        }
    }

    /// A response is expected or under way (a pipelined request waits for it to finish).
    package var isResponseActive: Bool {
        switch state {
        case .waitingForNode, .awaitingHead, .responding: true
        case .idle, .responded, .webSocket, .closed: false
        }
    }

    /// The request waits for a node of its vhost to connect (`waitingForNode`).
    package var isWaitingForNode: Bool {
        if case .waitingForNode = state { return true }
        return false
    }

    // MARK: events from the transport

    /// A new request head was parsed. Valid when no response is active.
    package mutating func start(_ request: Request) {
        precondition(!isResponseActive, "a request started while a response is active")
        self.request = request
        resends = 0
        keepAlive = request.keepAlive
        state = .idle
    }

    /// The transport is about to hand the request to `target`. Returns the node that knew the session and
    /// is not the target: it may forget the session (`end`).
    package mutating func bind(to target: Int) -> Int? {
        precondition(slotNode == nil, "bound while holding a slot in state \(state)")
        var forgotten: Int? = nil
        if let old = node, old != target, nodeKnowsSession { forgotten = old }
        if node != target { nodeKnowsSession = false }
        node = target
        return forgotten
    }

    /// No node of the vhost is connected, and the gateway has just started: the request waits for one
    /// (`Gateway.waitForNode`). Only a request's first dispatch waits.
    package mutating func waitForNode() {
        guard case .idle = state else { preconditionFailure("waiting for a node in state \(state)") }
        state = .waitingForNode
    }

    /// The bound node took the request (its uwsgi packet was queued for it): the node knows the session
    /// and the session holds one of its slots until the response is complete.
    package mutating func dispatched() {
        guard let node else { preconditionFailure("dispatched without a node") }
        switch state {
        case .idle, .waitingForNode, .responded:
            nodeKnowsSession = true
            state = .awaitingHead(node: node)
        case .awaitingHead, .responding, .webSocket, .closed:
            preconditionFailure("dispatched in state \(state)")
        }
    }

    /// The bound node could not take the request (unroutable, or its queue is full).
    package mutating func dispatchFailed() {
        nodeKnowsSession = false
    }

    /// Both directions of the exchange are done (the request body read, the response written) and the
    /// connection stays: the session waits for the next request. Until then a late error in the request
    /// can only cut the connection, as a response already went out.
    package mutating func exchangeFinished() {
        if case .responded = state { state = .idle }
    }

    /// The gateway is shutting down: the connection closes after the current response.
    package mutating func stopKeepingAlive() {
        keepAlive = false
        request.keepAlive = false
    }

    /// The request is a WebSocket upgrade the backend answers: its 101 accepts it.
    package mutating func expectBackendHandshake() {
        request.backendHandshake = true
        keepAlive = false
    }

    /// A `100 Continue` went to the client (the gateway's own, or the client sent its body without waiting).
    package mutating func continueWasSent() {
        request.continueSent = true
    }

    /// The gateway completed a WebSocket handshake itself: the session becomes the socket's.
    package mutating func upgradedByGateway() {
        guard case .awaitingHead(let node) = state else { preconditionFailure("upgrade in state \(state)") }
        state = .webSocket(node: node)
        keepAlive = false
    }

    /// The transport refused the backend's 101 after `acceptUpgrade` (say, a subprotocol the client did not
    /// offer) before writing anything: the client gets the failure's status.
    package mutating func refuseUpgrade(_ failure: SessionFailure) -> HTTPSessionAction {
        guard case .webSocket = state else { preconditionFailure("upgrade refused in state \(state)") }
        state = .closed
        return .answerError(failure)
    }

    // MARK: backend messages

    /// A `headers` message, one head at a time: the head that starts at `offset`, which moves past it (to the
    /// end after an error). Interim heads are relayed (or swallowed), a 101 accepts a backend-handshake upgrade,
    /// the final head starts the response; body bytes left in `message` after it go to `receivedBody`.
    package mutating func receivedHead(_ message: RawSpan, from offset: inout Int) -> HTTPSessionAction {
        guard case .awaitingHead(let node) = state else { return .drop(.headersWithoutRequest) }
        let parsed: HTTPResponseHead
        do {
            parsed = try HTTPResponseHeadParser.parse(message.extracting(droppingFirst: offset))
        } catch {
            offset = message.byteCount
            return fail(.invalidHead(error))
        }
        let head = offset..<(offset + parsed.length)
        offset = head.upperBound
        if parsed.status == 101 {
            guard request.backendHandshake else { return fail(.switchedProtocols) }
            state = .webSocket(node: node)
            keepAlive = false
            return .acceptUpgrade(head: head)
        }
        if parsed.status < 200 {
            // The gateway already sent its own 100 Continue when one was due; HTTP/1.0 knows no 1xx.
            let forward = !(parsed.status == 100 && request.continueSent) && request.version == .http11
            if parsed.status == 100 { request.continueSent = true }
            return forward ? .write(head, complete: false) : .none
        }
        return startResponse(parsed, head: head, node: node)
    }

    private mutating func startResponse(_ parsed: HTTPResponseHead, head: Range<Int>, node: Int) -> HTTPSessionAction {
        var persistent = keepAlive && !parsed.connectionClose
        if parsed.version == .http10 && !parsed.connectionKeepAlive { persistent = false }
        if request.version == .http10 && !parsed.connectionKeepAlive { persistent = false }

        let framing: ResponseFraming?
        switch parsed.bodyFraming(requestIsHEAD: request.isHead) {
        case .none, .contentLength(0):
            framing = nil
        case .contentLength(let length):
            framing = .length(length)
        case .chunked:
            framing = .chunked(.chunked(limits: chunkLimits))
        case .untilClose where !parsed.hasTransferEncoding && request.version == .http11:
            // No framing at all: the gateway chunks the body for an HTTP/1.1 client and keeps the connection.
            framing = .gatewayChunked
        case .untilClose:
            // A coding other than chunked (gzip alone), or an HTTP/1.0 client: only closing delimits it.
            framing = .untilClose
            persistent = false
        }
        keepAlive = persistent
        // An HTTP/1.1 client that asked to keep its connection does unless told; one that asked to close, or an
        // HTTP/1.0 one (which closes unless the head says keep-alive), expects the close.
        let announceClose = !persistent && !parsed.connectionClose && request.clientWantsKeepAlive
            && request.version == .http11
        let chunked = framing?.insertsChunkedHeader ?? false
        let adding = chunked || announceClose
            ? AddedHeaders(blankLine: parsed.blankLineStart, chunked: chunked, close: announceClose) : nil
        guard let framing else {
            state = .responded(discardingBody: parsed.bodyFraming(requestIsHEAD: request.isHead) == .none)
            return .startResponse(head: head, status: parsed.status, adding: adding, complete: true)
        }
        state = .responding(node: node, framing: framing)
        return .startResponse(head: head, status: parsed.status, adding: adding, complete: false)
    }

    /// A `body` message, or a `chunk` message (`isChunkMessage`): bytes of the response body, `message` from
    /// `start` on (after a head, the rest of a `headers` message).
    package mutating func receivedBody(_ message: RawSpan, from start: Int = 0, isChunkMessage: Bool) -> HTTPSessionAction {
        let bytes = start..<message.byteCount
        guard case .responding(let node, let framing) = state else {
            switch state {
            case .responded(discardingBody: true):
                return .drop(.bodyAfterBodylessResponse)
            case .awaitingHead where !bytes.isEmpty:
                // Body before headers: the client would take body bytes for a status line (the original let it).
                return fail(.bodyBeforeHeaders)
            default:
                // An empty `body` is the end-of-body marker some backends echo; anything else is out of order.
                return bytes.isEmpty ? .none : .drop(.bodyWithoutResponse)
            }
        }
        switch framing {
        case .length(let remaining):
            if bytes.count < remaining {
                state = .responding(node: node, framing: .length(remaining - bytes.count))
                return .write(bytes, complete: false)
            }
            state = .responded(discardingBody: false)
            let body = start..<(start + remaining)
            if bytes.count > remaining { return .writeDroppingExcess(body, excess: bytes.count - remaining) }
            return .write(body, complete: true)
        case .chunked(var decoder):
            if isChunkMessage {
                // A `chunk` message is framed by the gateway even when the head declared chunked.
                if bytes.isEmpty { state = .responded(discardingBody: false) }
                return .writeChunk(bytes, complete: bytes.isEmpty)
            }
            // The backend's own chunked encoding: validated to find where the response ends.
            var offset = start
            while offset < bytes.upperBound && !decoder.isFinished {
                do {
                    let (consumed, _) = try decoder.decode(message.extracting(droppingFirst: offset))
                    if consumed == 0 { break }
                    offset += consumed
                } catch {
                    return abort(.invalidChunkedBody(error))
                }
            }
            let valid = start..<offset
            if decoder.isFinished {
                state = .responded(discardingBody: false)
                return .write(valid, complete: true)
            }
            state = .responding(node: node, framing: .chunked(decoder))
            return .write(valid, complete: false)
        case .gatewayChunked:
            // An empty `body` writes nothing (as in the original); only an empty `chunk` ends the body.
            if bytes.isEmpty && !isChunkMessage { return .none }
            if bytes.isEmpty { state = .responded(discardingBody: false) }
            return .writeChunk(bytes, complete: bytes.isEmpty)
        case .untilClose:
            let complete = bytes.isEmpty && isChunkMessage
            if complete { state = .responded(discardingBody: false) }
            return .write(bytes, complete: complete)
        }
    }

    /// `end`: the backend is done with the session. What can be completed is, then the connection closes;
    /// the node still gets `end` back from the close as its "session gone" notice.
    package mutating func receivedEnd() -> HTTPSessionAction {
        keepAlive = false
        switch state {
        case .awaitingHead:
            nodeKnowsSession = false
            return fail(.endedWithoutResponse)
        case .responding(_, let framing):
            state = .responded(discardingBody: false)
            switch framing {
            case .gatewayChunked: return .finishAndClose(lastChunk: true, truncated: false)
            case .chunked, .untilClose: return .finishAndClose(lastChunk: false, truncated: false)
            // Closing is the only honest signal of a truncated response left.
            case .length: return .finishAndClose(lastChunk: false, truncated: true)
            }
        case .idle, .responded:
            return .close
        case .waitingForNode, .webSocket, .closed:
            // Waiting: the node that ends the session knows it from an earlier request and has nothing of
            // this one; the request is still answered, and the connection closes after it.
            return .none
        }
    }

    /// `retry`: the node asks for the request to go to another node of the vhost, before any response.
    ///
    /// - Parameters:
    ///   - canReplay: the request's body is still kept in full.
    ///   - otherNodeAvailable: a usable node of the vhost that was not tried yet exists.
    ///   - maxResends: how often one request may be sent again.
    package mutating func receivedRetry(canReplay: Bool, otherNodeAvailable: Bool, maxResends: Int) -> HTTPSessionAction {
        guard case .awaitingHead = state else { return .drop(.retryWithoutRequest) }
        resends += 1
        if resends > maxResends { return fail(.retriedTooOften(resends - 1)) }
        if !canReplay { return fail(.bodyTooLargeToRetry) }
        if !otherNodeAvailable { return fail(.noOtherNode) }
        state = .idle
        return .resend(preferring: nil)
    }

    /// The node vanished (unroutable, declared dead, its connection closed or replaced by a newer one).
    /// A request safe to repeat, with its body kept, goes to another node of the vhost (after a
    /// replacement, preferably the same node's new connection); otherwise 502 now instead of a wait.
    ///
    /// - Parameter otherNodeAvailable: a usable node of the vhost that may still be tried exists (the
    ///   replaced node counts: its new connection can take the request).
    package mutating func nodeLost(
        connectionReplaced: Bool, canReplay: Bool, otherNodeAvailable: Bool, maxResends: Int
    ) -> HTTPSessionAction {
        nodeKnowsSession = false
        switch state {
        case .awaitingHead(let node):
            guard request.isRepeatable && canReplay && resends < maxResends && otherNodeAvailable else {
                return fail(.nodeGone)
            }
            resends += 1
            state = .idle
            return .resend(preferring: connectionReplaced ? node : nil)
        case .responding:
            return abort(.nodeGoneMidResponse)
        case .webSocket:
            return abort(.webSocketNodeGone)
        case .idle, .waitingForNode, .responded, .closed:
            return .none
        }
    }

    /// The backend deadline passed while the session waited on its node (or for one to connect: no node
    /// took the request, so 503 as when the wait ends).
    package mutating func backendTimedOut() -> HTTPSessionAction {
        switch state {
        case .waitingForNode: fail(.noNode)
        case .awaitingHead: fail(.backendTimeout)
        case .responding: abort(.stalledMidResponse)
        case .idle, .responded, .webSocket, .closed: .none
        }
    }

    /// The gateway answers the request itself with an error (no node, a malformed request, a refused
    /// upgrade, ...), or cuts the connection when the response head already went out. The session ends;
    /// the node learns of it from the close.
    package mutating func fail(_ failure: SessionFailure) -> HTTPSessionAction {
        switch state {
        case .responding, .responded, .webSocket:
            // A response head went out: another status cannot follow it, only the connection can be cut.
            return abort(failure)
        case .closed:
            return .none
        case .idle, .waitingForNode, .awaitingHead:
            state = .closed
            keepAlive = false
            return .answerError(failure)
        }
    }

    /// The session is cut off without an answer: nothing honest can be said to the client any more.
    package mutating func abort(_ failure: SessionFailure) -> HTTPSessionAction {
        if case .closed = state { return .none }
        state = .closed
        keepAlive = false
        return .abort(failure)
    }

    /// The client connection is closing. Returns the node to tell `end`, if one knows the session.
    /// Safe to call more than once.
    package mutating func clientGone() -> Int? {
        state = .closed
        keepAlive = false
        defer { nodeKnowsSession = false }
        return nodeKnowsSession ? node : nil
    }
}

/// How the end of the current response body is recognised.
package enum ResponseFraming: Sendable {
    /// `Content-Length`: this many body bytes remain.
    case length(Int)
    /// The backend sends chunked encoding itself in `body` messages; the decoder finds its end.
    /// `chunk` messages are framed by the gateway.
    case chunked(HTTPBodyDecoder)
    /// The response had no framing and the client speaks HTTP/1.1: the gateway chunks every
    /// `body`/`chunk` and writes the last chunk on an empty `chunk` or `end`.
    case gatewayChunked
    /// No framing and an HTTP/1.0 client (or a coding other than chunked): the body ends when the
    /// connection closes.
    case untilClose

    /// The gateway adds `Transfer-Encoding: chunked` to the head.
    var insertsChunkedHeader: Bool {
        if case .gatewayChunked = self { return true }
        return false
    }
}
