import BlastBeatCore
import BlastBeatSystem

/// One session at the gateway: the request/response exchanges (or the WebSocket) a client connection
/// carries under one sid, and everything about the node that serves them — which node, which were
/// tried, the request kept for `retry`, the node slot, the messages to and from the node.
///
/// Its lifecycle is the state machine `HTTPSession` (Sources/BlastBeatCore/Session/HTTPSession.swift):
/// this class feeds it events and carries out the actions it returns. The connection is the session's
/// transport: it parses requests, writes to the client and keeps the timeouts, and knows nothing of nodes.
final class GatewaySession {
    unowned(unsafe) let gateway: Gateway
    /// Unretained: the transport owns the session.
    let transport: SessionTransport
    let sid: SessionID
    private(set) var machine: HTTPSession
    /// The vhost of the current request.
    private(set) var vhost = 0
    /// The current request's uwsgi packet, kept for `retry`.
    private var uwsgiPacket: [UInt8] = []
    /// Request body bytes kept for `retry`, nil once they exceed `max-retry-buffer`.
    private var replayBody: [UInt8]? = []
    private var triedNodes: [Int] = []
    private var requestHasBody = false
    /// Parked until a node of the vhost connects (Gateway.waitForNode), right after a start or an upgrade.
    var isWaitingForNode: Bool { machine.isWaitingForNode }
    /// What the node may send for this sid (GatewaySession+Credit.swift).
    var credit = SessionCredit()

    init(gateway: Gateway, transport: SessionTransport, sid: SessionID) {
        self.gateway = gateway
        self.transport = transport
        self.sid = sid
        self.machine = HTTPSession(chunkLimits: gateway.responseChunkLimits)
    }

    /// The node of the current or last request, and whether it knows the sid.
    var node: Int? { machine.node }
    var nodeKnowsSession: Bool { machine.nodeKnowsSession }
    var isResponseActive: Bool { machine.isResponseActive }
    var keepAlive: Bool { machine.keepAlive }

    var nodeName: String {
        guard let node else { return "-" }
        return gateway.nodeName(node)
    }

    // MARK: requests

    /// A request head was parsed; nothing has been sent for it yet.
    func begin(_ head: HTTPRequestHead) {
        triedNodes.removeAll(keepingCapacity: true)
        requestHasBody = head.hasBody
        if head.hasBody {
            replayBody = replayBody.map { var kept = $0; kept.removeAll(keepingCapacity: true); return kept } ?? []
        } else {
            replayBody = []
        }
        machine.start(
            HTTPSession.Request(
                version: head.version, isHead: head.methodKind == .head,
                keepAlive: head.keepAlive && !gateway.isShuttingDown, isRepeatable: head.methodKind.isRepeatable,
                clientWantsKeepAlive: head.keepAlive))
    }

    /// The request goes to `vhost`: its head (`bytes` hold the head's text) is encoded as the uwsgi
    /// packet, kept for `retry` (its storage is reused by the next requests, so an idle session holds one
    /// packet's bytes). Both transports route here. Returns false once the session has failed with 431 (an
    /// environment too large for the uwsgi packet).
    func route(head: HTTPRequestHead, bytes: RawSpan, to vhost: Int, client: Connection) -> Bool {
        do {
            uwsgiPacket.removeAll(keepingCapacity: true)
            try UwsgiEncoder.encode(head: head, request: bytes, context: gateway.uwsgiContext(for: client, vhost: vhost), into: &uwsgiPacket)
            self.vhost = vhost
            return true
        } catch {
            fail(.refused(status: 431, message: "request headers too large to forward"))
            return false
        }
    }

    func expectBackendHandshake() { machine.expectBackendHandshake() }
    func upgradedByGateway() { machine.upgradedByGateway() }
    func continueWasSent() { machine.continueWasSent() }
    func stopKeepingAlive() { machine.stopKeepingAlive() }
    func exchangeFinished() { machine.exchangeFinished() }

    /// The gateway answers the request itself, or cuts the connection once a response has started.
    func fail(_ failure: SessionFailure) { event { $0.fail(failure) } }

    /// Sends the current request (uwsgi, the body kept so far, the end marker once the body is complete)
    /// to a node of the vhost: the session's node when it serves the vhost (affinity), else the usable node
    /// with the fewest requests in flight. Answers 503 itself when no node can take it; returns false then.
    /// When `mayWait` and the gateway has just started (Gateway.waitForNode), a request that finds no node
    /// waits for one instead (returns true: it goes on reading its body, kept for the node).
    @discardableResult
    func dispatch(preferring preferred: Int?, bodyComplete: Bool, mayWait: Bool = false) -> Bool {
        var reserved = false
        if let limit = transport.limits.maxInFlight {
            // A place is reserved across every worker (the take is undone when it would pass the limit) until the
            // slot below is held or the request failed: another worker checking meanwhile counts this request.
            guard gateway.takeInFlight(vhost, limit: limit) else {
                // The tenant's own requests fill its share; other vhosts' nodes and requests are untouched. Counted
                // and logged as at admission (Gateway.refused); the metrics count it as the failure it answers.
                gateway.refused(.maxInFlight(limit: limit), vhost: vhost, client: transport.clientConnection, countMetrics: false)
                fail(.vhostBusy)
                return false
            }
            reserved = true
        }
        // Not `transport` again: a failure below may have freed the connection or stream it refers to.
        defer { if reserved { gateway.addInFlight(vhost, -1) } }
        let candidates = gateway.vhostNodes[vhost]
        // Only a request's first dispatch may wait: one retried or moved has had its node.
        let firstDispatch = triedNodes.isEmpty
        var choice: Int? = nil
        if let preferred, candidates.contains(preferred), gateway.nodes.isUsable(preferred),
            !triedNodes.contains(preferred)
        {
            choice = preferred
        }
        while true {
            if choice == nil { choice = gateway.nodes.choose(from: candidates, excluding: triedNodes) }
            guard let target = choice else {
                if mayWait && firstDispatch && replayBody != nil && gateway.waitForNode(self) {
                    // The nodes tried just now were not connected; they may be once one is heard from.
                    triedNodes.removeAll(keepingCapacity: true)
                    machine.waitForNode()
                    return true
                }
                fail(.noNode)
                return false
            }
            // The session moves to another node: the old one may forget it.
            if let forgotten = machine.bind(to: target) { gateway.sendEnd(to: forgotten, sid: sid) }
            triedNodes.append(target)
            switch gateway.sendRequest(to: target, sid: sid, packet: uwsgiPacket) {
            case .sent:
                let before = machine.slotNode
                machine.dispatched()
                settleSlot(heldBefore: before)
                startCredit(node: target)
                if let body = replayBody, !body.isEmpty {
                    gateway.send(to: target, sid: sid, type: "body", body: body)
                }
                if bodyComplete && requestHasBody { sendEndOfBody() }
                return true
            case .unreachable, .full:
                // send() already marked the node; try the next one.
                machine.dispatchFailed()
                choice = nil
            }
        }
    }

    /// Request body bytes for the node, sent as a counted copy.
    func forwardBody(_ bytes: RawSpan) {
        keepForReplay(bytes)
        guard let node, nodeKnowsSession else { return }
        // Every body byte goes out in a counted buffer, so the node's queue meter sees all of them.
        gateway.sendCounted(to: node, sid: sid, type: "body", copying: bytes)
    }

    /// Request body bytes read straight into a buffer the router sends without a copy (freed unsent when
    /// the node no longer knows the session).
    func forwardBody(_ body: consuming BodyBuffer) {
        body.withBytes { keepForReplay($0) }
        guard let node, nodeKnowsSession else { return }
        gateway.send(to: node, sid: sid, type: "body", body: body)
    }

    private func keepForReplay(_ bytes: RawSpan) {
        if var kept = replayBody {
            if kept.count + bytes.byteCount <= gateway.config.maxRetryBuffer {
                replayBody = nil
                kept.appendBytes(bytes)
                replayBody = kept
            } else {
                replayBody = nil  // too big to replay: a later `retry` gets 502
                // Waiting for a node, the body has nowhere else to go.
                if isWaitingForNode { stopWaitingForNode(dispatching: false) }
            }
        }
    }

    /// Ends the wait for a node: dispatches (a node connected) or answers 503 (the wait is over, the body
    /// outgrew `max-retry-buffer`, or the backend timeout passed).
    func stopWaitingForNode(dispatching: Bool) {
        guard isWaitingForNode else { return }
        gateway.stopWaiting(self)
        if dispatching {
            dispatch(preferring: nil, bodyComplete: !transport.isReadingRequestBody)
            transport.requestDispatchedAfterWaiting()
        } else {
            fail(.noNode)
        }
    }

    /// The end-of-body marker: an empty `body` message. Backends that predate it append nothing.
    func sendEndOfBody() {
        guard let node, nodeKnowsSession else { return }
        gateway.send(to: node, sid: sid, type: "body", body: [])
    }

    /// A WebSocket message for the node (`websocket` or `websocket-binary`).
    func sendMessage(_ type: StaticString, _ payload: RawSpan) {
        guard let node, nodeKnowsSession else { return }
        gateway.sendCounted(to: node, sid: sid, type: type, copying: payload)
    }

    /// Whether the node's queue is full, so the client's data must wait (see Gateway.nodeQueueIsFull).
    var nodeQueueIsFull: Bool {
        guard let node, nodeKnowsSession else { return false }
        return gateway.nodeQueueIsFull(node)
    }

    // MARK: from the node

    /// A message from the node for an HTTP exchange (a WebSocket's messages go to the connection).
    func backendMessage(_ type: BackendMessageType, _ body: RawSpan) {
        switch type {
        case .headers: receivedHeaders(body)
        case .body: event(in: body) { $0.receivedBody(body, isChunkMessage: false) }
        case .chunk: event(in: body) { $0.receivedBody(body, isChunkMessage: true) }
        case .end: event { $0.receivedEnd() }
        case .retry:
            let canReplay = replayBody != nil
            let others = otherNodeAvailable(replaced: nil)
            let maxResends = gateway.config.maxHops
            event { $0.receivedRetry(canReplay: canReplay, otherNodeAvailable: others, maxResends: maxResends) }
        case .websocket, .websocketBinary, .ping, .pong, .uwsgi:
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.debug("dropping \(type) for HTTP session \(sid.hex)")
        }
    }

    /// A `headers` message: its heads one at a time (interim heads, then the final one), then any body
    /// bytes behind the final head.
    private func receivedHeaders(_ message: RawSpan) {
        var offset = 0
        while true {
            var action = HTTPSessionAction.none
            event { machine in
                action = machine.receivedHead(message, from: &offset)
                return .none  // carried out below, after the check only the connection can make
            }
            if case .acceptUpgrade(let head) = action, !transport.acceptsSubprotocol(of: message.extracting(head)) {
                // Backend-mode handshake accepted; its subprotocol must be one the client offered.
                return event { $0.refuseUpgrade(.subprotocolNotOffered) }
            }
            let state = machine.state
            perform(action, in: message)
            if offset == message.byteCount || transport.closed { return }
            switch state {
            case .awaitingHead:
                continue  // an interim head; another head follows
            case .responding:
                return event(in: message) { $0.receivedBody(message, from: offset, isChunkMessage: false) }
            case .responded:
                // Body bytes behind the head of a response without body (HEAD, 204, 304, Content-Length: 0).
                gateway.counters.outOfOrderBackendMessages += 1
                return
            case .idle, .waitingForNode, .webSocket, .closed:
                return
            }
        }
    }

    /// The node vanished (unroutable, declared dead, or its connection closed or was replaced by a newer
    /// one): the session answers now instead of waiting (see `HTTPSession.nodeLost`).
    func nodeLost(connectionReplaced: Bool) {
        let canReplay = replayBody != nil
        let others = otherNodeAvailable(replaced: connectionReplaced ? node : nil)
        let maxResends = gateway.config.maxHops
        let lost = nodeName
        let resends = machine.resends
        event {
            $0.nodeLost(
                connectionReplaced: connectionReplaced, canReplay: canReplay, otherNodeAvailable: others,
                maxResends: maxResends)
        }
        if machine.resends > resends, isResponseActive {
            gateway.logger.info("request on \(sid.hex) lost its backend connection (node \(lost)); sent it again")
        }
    }

    /// The backend deadline passed: on the node, or (still waiting for one to connect) before any took it. The
    /// machine answers (504, or 503 while waiting); a waiting session also leaves the gateway's wait list.
    func backendTimedOut() {
        if isWaitingForNode { gateway.stopWaiting(self) }
        event { $0.backendTimedOut() }
    }

    /// The connection is closing: the slot goes back and a node that knows the sid gets `end`.
    func clientGone() {
        if isWaitingForNode { gateway.stopWaiting(self) }
        finishCredit()
        let before = machine.slotNode
        let nodeToTell = machine.clientGone()
        settleSlot(heldBefore: before)
        if let nodeToTell { gateway.sendEnd(to: nodeToTell, sid: sid) }
    }

    /// Whether a usable node of the vhost is left to try; `replaced` (a node whose connection was just
    /// replaced) counts again.
    private func otherNodeAvailable(replaced: Int?) -> Bool {
        gateway.vhostNodes[vhost].contains {
            ($0 == replaced || !triedNodes.contains($0)) && gateway.nodes.isUsable($0)
        }
    }

    // MARK: carrying out the machine's actions

    /// Feeds the machine one event and carries out the action it returns.
    @inline(__always)
    /// Feeds an event to the machine and carries out its action; the bytes an action writes are ranges of
    /// `message`, the backend message of the event (none for the others).
    private func event(in message: RawSpan = RawSpan(), _ event: (inout HTTPSession) -> HTTPSessionAction) {
        let before = machine.slotNode
        let action = event(&machine)
        settleSlot(heldBefore: before)
        perform(action, in: message)
    }

    /// The one place node slots are taken and released: the machine holds a slot of `slotNode` in the
    /// states that wait for or relay a response, so a change of `slotNode` across an event is a release
    /// of the old node's slot and a take of the new one's.
    private func settleSlot(heldBefore before: Int?) {
        let after = machine.slotNode
        if before == after { return }
        // The vhost does not change while a slot is held (only `route` sets it, between requests).
        if let before {
            gateway.nodes.requestFinished(on: before)
            gateway.addInFlight(vhost, -1)
        }
        if let after {
            gateway.nodes.requestStarted(on: after)
            gateway.addInFlight(vhost, 1)
        }
    }

    private func perform(_ action: HTTPSessionAction, in message: RawSpan) {
        switch action {
        case .none:
            return
        case .write(let bytes, let complete):
            transport.writeResponse(message.extracting(bytes))
            if complete { responseFinished() }
        case .writeDroppingExcess(let bytes, let excess):
            transport.writeResponse(message.extracting(bytes))
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.warning("node \(nodeName) sent \(excess) bytes past Content-Length; dropped")
            responseFinished()
        case .writeChunk(let payload, let complete):
            transport.writeChunk(message.extracting(payload))
            if complete { responseFinished() }
        case .startResponse(let head, let status, let adding, let complete):
            // Counted here for both transports (HTTP/2 responses were not counted when the connection did it).
            if let node { gateway.metrics.nodeAnswered(gateway.nodes.nodes[node].base) }
            transport.writeResponseHead(message.extracting(head), status: status, adding: adding, complete: complete)
            if complete { responseFinished() }
        case .acceptUpgrade(let head):
            transport.backendAcceptedUpgrade(head: message.extracting(head))
        case .finishAndClose(let lastChunk, let truncated):
            if lastChunk { transport.writeChunk(RawSpan()) }
            if truncated { gateway.counters.backendErrors += 1 }
            responseFinished()
            transport.closeAfterFlush()
        case .close:
            transport.closeAfterFlush()
        case .resend(let preferred):
            // A replaced node's new connection may take the request again.
            if let preferred { triedNodes.removeAll { $0 == preferred } }
            dispatch(preferring: preferred, bodyComplete: !transport.isReadingRequestBody)
        case .answerError(let failure):
            report(failure)
            transport.sendErrorAndClose(status: failure.status, message: failure.description, retryAfter: failure.retryAfter)
        case .abort(let failure):
            report(failure)
            if case .webSocketNodeGone = failure { return transport.webSocketNodeGone() }
            transport.abort(failure.description)
        case .drop(let reason):
            gateway.counters.outOfOrderBackendMessages += 1
            if case .headersWithoutRequest = reason {
                gateway.logger.warning("node sent headers with no response pending on \(sid.hex); dropped")
            }
        }
    }

    /// The response is complete: its unused credit goes back before the transport starts the next exchange.
    private func responseFinished() {
        finishCredit()
        transport.responseFinished()
    }

    /// Counts and logs a failure the backend, or the wait for it, caused.
    private func report(_ failure: SessionFailure) {
        gateway.countRejection(transport, failure)
        if failure.isBackendError { gateway.counters.backendErrors += 1 }
        switch failure {
        case .invalidHead(let error):
            gateway.logger.warning("invalid response head from node \(nodeName): \(error)")
        case .invalidChunkedBody(let error):
            gateway.logger.warning("invalid chunked body from node \(nodeName): \(error)")
        case .retriedTooOften(let times):
            gateway.logger.warning("request on \(sid.hex) retried \(times) times; giving up")
        case .backendTimeout:
            gateway.logger.warning("node \(nodeName) did not answer within \(transport.limits.backendTimeout)s")
        default:
            break
        }
    }
}
