package import BlastBeatCore
package import BlastBeatSystem

/// The ROUTER side: receiving and checking backend messages, sending to nodes, health checks.
extension Gateway {
    // MARK: receiving (BackendRouterDelegate, either engine)

    package func backendRouter(
        received type: BackendMessageType, sid: RawSpan, body: RawSpan, from identity: RawSpan, origin: BackendMessage.Origin
    ) {
        guard let node = node(sending: identity) else { return }
        switch type {
        case .pong:
            metrics.pongReceived(from: nodes.nodes[node].base, at: loop.now)
            if Self.isCreditAnnouncement(body) { nodeAnnouncedCredit(node, identity: identity, origin: origin) }
            return
        case .ping, .uwsgi:
            counters.outOfOrderBackendMessages += 1
            return
        case .headers, .body, .chunk, .end, .retry, .websocket, .websocketBinary:
            break
        }
        guard let sid = SessionID(sid) else {
            counters.unknownSessionMessages += 1
            return
        }
        if let connection = sessions[sid] {
            deliver(type, body, to: connection.session, from: node, identity: identity)
        } else if let stream = http2Streams[sid] {
            // The stream's connection stays alive for the call even if a write closes it.
            withExtendedLifetime(stream.connection.connection) {
                deliver(type, body, to: stream.session, from: node, identity: identity)
            }
        } else {
            counters.unknownSessionMessages += 1
        }
    }

    /// A message for a session, whichever transport carries it (the caller holds the transport alive).
    private func deliver(_ type: BackendMessageType, _ body: RawSpan, to session: GatewaySession, from node: Int, identity: RawSpan) {
        guard session.node == node else {
            // Only the node bound to the sid may drive it (docs/PROTOCOL.md, "Sessions and ownership").
            counters.forgedIdentityMessages += 1
            logger.warning("dropped \(type) for session \(session.sid.hex) from node \(Self.printable(identity)), which does not own it")
            return
        }
        if type == .retry { metrics.nodeRetried(nodes.nodes[node].base) }
        guard type.countsAgainstCredit else { return session.transport.backendMessage(type, body) }
        let credited = creditReceived(body.byteCount, session: session)
        session.transport.backendMessage(type, body)
        afterCountedMessage(from: identity, node: node, session: session, credited: credited)
    }

    /// A `pong` whose body is `credit`: the backend takes credit (docs/PROTOCOL.md, "Credit").
    private static func isCreditAnnouncement(_ body: RawSpan) -> Bool {
        let word = creditAnnouncement.utf8
        guard body.byteCount == word.count else { return false }
        for (i, byte) in word.enumerated() where body.unsafeLoad(fromByteOffset: i, as: UInt8.self) != byte { return false }
        return true
    }

    package func backendRouter(receivedMalformed problem: MalformedBackendMessage, identity: RawSpan) {
        switch problem {
        case .frameCount(let count):
            counters.malformedBackendMessages += 1
            logger.warning("dropped a message of \(count - 1) frame(s) from \(Self.printable(identity)); expected 3 (sid, type, body)")
        case .unknownType(let type):
            // Still a sign of life from a configured node.
            guard node(sending: identity) != nil else { return }
            counters.malformedBackendMessages += 1
            logger.warning("dropped a message of unknown type \(LogText.quoted(type)) from node \(Self.printable(identity))")
        }
    }

    package func backendRouter(forwardedFrom identity: RawSpan) {
        _ = node(sending: identity)
    }

    /// The node a message comes from, now heard from; nil (counted) for an identity that is no configured
    /// node or instance of one.
    private func node(sending identity: RawSpan) -> Int? {
        guard let node = nodes.index(of: identity) ?? registerInstance(identity) else {
            counters.forgedIdentityMessages += 1
            logger.debug("dropped a message from unconfigured identity \(Self.printable(identity))")
            return nil
        }
        if nodes.heard(from: node, now: loop.now) {
            logger.info("node \(Self.printable(identity)) is alive again")
        }
        if !sessionsWaitingForNode.isEmpty { dispatchRequestsWaiting(for: node) }
        return node
    }

    /// A `NAME#SUFFIX` identity speaking for the first time (libzmq engine: the native one registers
    /// instances when it admits their connection): a new process of node `NAME`.
    func registerInstance(_ identity: RawSpan) -> Int? {
        guard let base = nodes.configuredNode(for: identity) else { return nil }
        switch nodes.registerInstance(identity, limit: instanceLimit(base)) {
        case .notAnInstance:
            return nil
        case .full:
            if warnings.allow("full", identity, now: loop.now, interval: 10) {
                logger.warning("refused node instance \(Self.printable(identity)): node \(nodeName(base)) has \(instanceLimit(base)) live instances (max-instances)")
            }
            return nil
        case .known(let index):
            return index
        case .reused(let index):
            logger.info("node instance \(Self.printable(identity)) joined (reusing a dead instance's slot)")
            return index
        case .added(let index, let base):
            addInstanceToVhosts(index, base: base)
            logger.info("node instance \(Self.printable(identity)) joined node \(nodeName(base))")
            return index
        }
    }

    // MARK: sending

    /// Sends one message to node `node`. An unroutable node is marked dead at once and its
    /// waiting clients are answered before the loop blocks.
    @discardableResult
    func send(to node: Int, sid: SessionID, type: StaticString, body: RawSpan) -> BackendSendResult {
        routerSend(to: node, sid: sid) { (identity, sid) throws(BackendRouterError) in
            try router.send(to: identity, sid: sid, type: type, copying: body)
        }
    }

    /// Sends a body read straight from a client without copying it: the buffer is handed over (freed
    /// once written to the node's connection, or at once when the send fails), counted in the node's
    /// meter until then.
    @discardableResult
    func send(to node: Int, sid: SessionID, type: StaticString, body: consuming BodyBuffer) -> BackendSendResult {
        send(to: node, sid: sid, type: type, counted: body.counted(by: nodeQueueMeter(node)))
    }

    /// Sends a copy of `bytes` in a counted buffer: for client data (request bodies, WebSocket
    /// messages), so a node that stops reading fills its `max-node-queue` meter and the gateway
    /// stops reading the clients instead of queueing without bound. (Both engines would copy anyway.)
    ///
    /// Small messages go uncounted: they are copied into the output queue (native) or kept inline
    /// (libzmq), where a counted buffer would cost an allocation (a WebSocket echo of 32-byte messages
    /// pays for that). They are bounded all the same: the native engine queues at most
    /// 2 × `max-node-queue` per connection, libzmq's high-water mark 100,000 messages (25 MB) per node.
    @discardableResult
    func sendCounted(to node: Int, sid: SessionID, type: StaticString, copying bytes: RawSpan) -> BackendSendResult {
        if bytes.byteCount <= 256 { return send(to: node, sid: sid, type: type, body: bytes) }
        guard let counted = CountedBody(copying: bytes, meter: nodeQueueMeter(node)) else {
            logger.error("no memory for a \(type) message to node \(nodeName(node)); dropped")
            return .full
        }
        return send(to: node, sid: sid, type: type, counted: counted)
    }

    /// The router takes a counted body over in every case.
    private func send(to node: Int, sid: SessionID, type: StaticString, counted body: consuming CountedBody) -> BackendSendResult {
        // Moved into the closure through an Optional (a closure may not consume what it captures).
        var pending: CountedBody? = consume body
        return routerSend(to: node, sid: sid) { (identity, sid) throws(BackendRouterError) in
            try router.send(to: identity, sid: sid, type: type, counted: pending.take()!)
        }
    }

    /// The one way to the router, whichever message: the node's identity and the sid lent to `send`, and its
    /// outcome settled (an unreachable node marked dead, a refusal logged).
    private func routerSend(
        to node: Int, sid: SessionID, _ send: (_ identity: RawSpan, _ sid: RawSpan) throws(BackendRouterError) -> BackendSendResult
    ) -> BackendSendResult {
        let identity = nodes.nodes[node].identity
        let outcome = sid.withSpan { sid in
            Result { () throws(BackendRouterError) in try send(identity.span.bytes, sid) }
        }
        return settle(outcome, node: node)
    }

    /// Marks a node that a send found unreachable; logs a refusal.
    private func settle(_ outcome: Result<BackendSendResult, BackendRouterError>, node: Int) -> BackendSendResult {
        let result: BackendSendResult
        switch outcome {
        case .success(let r): result = r
        case .failure(let error):
            logger.error("sending to node \(nodeName(node)): \(error)")
            return .unreachable
        }
        switch result {
        case .sent:
            break
        case .unreachable:
            if nodes.markDead(node) {
                logger.warning("node \(nodeName(node)) is not connected; marked dead")
            }
            scheduleNodeFailure(node)
        case .full:
            logger.warning("node \(nodeName(node)) is not reading (queue full); message dropped")
        }
        return result
    }

    /// A request's `uwsgi` packet; it carries whether the session is credited, which a holder of the node's
    /// connection at another worker needs (docs/PROTOCOL.md, "Credit").
    func sendRequest(to node: Int, sid: SessionID, packet: [UInt8]) -> BackendSendResult {
        let credited = flowControl(of: node) == .credit
        return routerSend(to: node, sid: sid) { (identity, sid) throws(BackendRouterError) in
            try router.sendRequest(to: identity, sid: sid, copying: packet.span.bytes, credited: credited)
        }
    }

    @discardableResult
    func send(to node: Int, sid: SessionID, type: StaticString, body: [UInt8]) -> BackendSendResult {
        send(to: node, sid: sid, type: type, body: body.span.bytes)
    }

    func sendEnd(to node: Int, sid: SessionID) {
        guard nodes.isUsable(node) else { return }
        send(to: node, sid: sid, type: "end", body: RawSpan())
    }

    // MARK: node queues

    /// The node's meter (created on first use: instances join at run time).
    func nodeQueueMeter(_ node: Int) -> NodeQueueMeter {
        while nodeQueueMeters.count <= node { nodeQueueMeters.append(NodeQueueMeter(countingAlsoIn: allNodeBytes)) }
        return nodeQueueMeters[node]
    }

    /// Whether request bodies for `node` must wait: it has `max-node-queue` bytes or more not yet sent, or
    /// the memory budget is reached.
    func nodeQueueIsFull(_ node: Int) -> Bool {
        (node < nodeQueueMeters.count && nodeQueueMeters[node].queuedBytes >= config.maxNodeQueue)
            || budget.isFull(nodeBytes: allNodeBytes.queuedBytes) || nodeQueueIsFullAtHolder(node)
    }

    /// Whether the worker holding `node`'s connection said its queue is full (README.md, "Worker processes").
    private func nodeQueueIsFullAtHolder(_ node: Int) -> Bool {
        let identity = nodes.nodes[node].identity
        return router.isQueueFullAtHolder(identity: identity.span.bytes)
    }

    /// Whether clients waiting on `node`'s queue must go on waiting: it has not drained to three quarters of
    /// `max-node-queue`, or the budget not to its low-water mark.
    func nodeQueueStillFull(_ node: Int) -> Bool {
        nodeQueueMeter(node).queuedBytes >= config.maxNodeQueue / 4 * 3
            || budget.total(nodeBytes: allNodeBytes.queuedBytes) >= budget.lowWater || nodeQueueIsFullAtHolder(node)
    }

    /// Parks a connection until its node's queue drains; checked every 2 ms while any waits
    /// (neither engine tells the gateway when a message has been written, so this is polled). Polling slower
    /// let the node run dry between checks: 10 ms cost 10-20% of upload throughput.
    func waitForNodeQueue(_ connection: Connection) {
        waitingForNodeQueue.append(connection)
        if nodeQueueTimer.firesAt == nil { nodeQueueTimer.start(after: 0.002, repeat: 0.002) }
    }

    func resumeBodiesForDrainedNodes() {
        var stillWaiting: [Connection] = []
        for connection in waitingForNodeQueue where !connection.closed {
            if let node = connection.session.node, nodeQueueStillFull(node) {
                stillWaiting.append(connection)
            } else {
                connection.nodeQueueDrained()
            }
        }
        waitingForNodeQueue = stillWaiting
        if stillWaiting.isEmpty { nodeQueueTimer.stop() }
    }

    /// A node's identity for a log line (an instance suffix is the backend's choice: escaped).
    func nodeName(_ node: Int) -> String { LogText.escaped(nodes.nodes[node].identity) }

    // MARK: health

    /// Pings nodes that have been quiet for `ping-freq`, and declares dead the ones quiet past `ping-timeout`.
    /// Visits a tenth of the nodes (every tenth of `ping-freq`, so each node once per `ping-freq`): with
    /// thousands of tenants' nodes one pass over all of them stalled the loop (10 ms every 3 s with 10,000).
    func pingNodes() {
        let now = loop.now
        let count = nodes.nodes.count
        if count == 0 { return }
        for _ in 0..<((count + Self.pingSlices - 1) / Self.pingSlices) {
            pingCursor = pingCursor + 1 < count ? pingCursor + 1 : 0
            let node = pingCursor
            // A connection the gateway does not read cannot answer: its silence is the gateway's doing.
            if isReadPaused(node) { continue }
            if isHeldForOtherWorkers(node) {
                // Held for a worker whose budget is full (README.md, "Worker processes"): the pause ends as that
                // worker's clients read; meanwhile the health clock does not run, as for a pause of this worker's.
                if nodes.nodes[node].health != .dead { _ = nodes.heard(from: node, now: now) }
                continue
            }
            switch nodes.pingAction(for: node, now: now, frequency: config.pingFrequency, timeout: config.pingTimeout) {
            case .nothing:
                continue
            case .declareDead:
                if nodes.markDead(node) {
                    logger.warning("node \(nodeName(node)) did not answer pings for \(config.pingTimeout)s; marked dead")
                }
                scheduleNodeFailure(node)
                fallthrough
            case .ping:
                ping(node)
            }
        }
    }

    /// A message without a session (empty sid and body): `ping` (a `credit` acknowledging an announcement goes
    /// through `BackendRouter.acknowledgeCredit`, which only the connection's holder sends).
    func sendConnectionMessage(to node: Int, type: StaticString) -> BackendSendResult? {
        let identity = nodes.nodes[node].identity
        return try? router.send(to: identity.span.bytes, sid: RawSpan(), type: type, copying: RawSpan())
    }

    /// A ping has an empty sid and body (docs/PROTOCOL.md, "Health: ping and pong").
    private func ping(_ node: Int) {
        nodes.pinged(node, now: loop.now)
        metrics.pingSent(to: nodes.nodes[node].base, at: loop.now)
        let sent = sendConnectionMessage(to: node, type: "ping")
        if sent == .unreachable && nodes.markDead(node) {
            logger.warning("node \(nodeName(node)) is not connected; marked dead")
            scheduleNodeFailure(node)
        }
    }

    // MARK: backend connections (native engine)

    /// Unlike libzmq, the native engine knows when a node's connection goes: the node is dead at once
    /// and its waiting clients get 502 before the loop blocks, instead of after `ping-timeout`.
    /// (A connection replaced by a newer one with the same identity is not reported here.)
    /// Protocol errors are logged at most once per peer host and reason every 10 s: libzmq reconnects a
    /// refused peer (a wrong server key, say) ten times a second. Every one is counted.
    package func backendRouterDroppedPeer(identity: RawSpan, reason: String, host: String, protocolError: Bool) {
        let who = identity.isEmpty ? "a backend connection" : "the connection of \(Self.printable(identity))"
        if protocolError {
            counters.backendProtocolErrors += 1
            let kind = Array((host + " " + reason.prefix(48)).utf8)
            if warnings.allow("protocol", kind.span.bytes, now: loop.now, interval: 10) {
                logger.warning("closed \(who): \(reason)")
            }
        } else {
            logger.debug("\(who) closed: \(reason)")
        }
        guard let node = nodes.index(of: identity) else { return }
        if nodes.markDead(node) {
            logger.warning("node \(nodeName(node)) lost its connection: \(reason); marked dead")
        }
        scheduleNodeFailure(node)
    }

    /// A node that (re)connects is pinged at once: its pong brings it back without waiting for `ping-freq`.
    /// Requests in flight on a connection it replaced are answered before the loop blocks (they would
    /// otherwise wait for `backend-timeout`).
    package func backendRouterPeerJoined(identity: RawSpan, address: String, replaced: BackendIdentityHolder?) {
        logger.debug("\(Self.printable(identity)) connected from \(address)\(replaced.map { " (replacing its connection from \($0.address))" } ?? "")")
        guard let node = nodes.index(of: identity) else { return }
        // A new connection takes credit only once it announces it.
        if node < nodeFlowControl.count { nodeFlowControl[node] = .pausing }
        if replaced != nil { nodeConnectionReplaced(node) }
        ping(node)
    }

    /// Network bytes for a log line (see `LogText`).
    static func printable(_ bytes: RawSpan) -> String { LogText.quoted(bytes) }
}
