import BlastBeatCore
import BlastBeatSystem

/// How a node's response bytes are held to the memory budget (README, "Memory budget").
enum NodeFlowControl {
    /// It did not announce credit: at the budget its connection is not read until the total falls.
    case pausing
    /// It announced credit (a `pong` with body `credit`): each session sends what the gateway grants.
    case credit
}

/// The memory budget (`max-buffered`): the bytes counted (BufferBudget), credit granted to nodes that take it
/// (docs/PROTOCOL.md, "Credit"), and the pause of the connections of nodes that do not.
extension Gateway {
    /// The body of the `pong` by which a backend announces that it takes credit.
    static let creditAnnouncement = "credit"

    var nodeBytes: Int { allNodeBytes.queuedBytes }

    func flowControl(of node: Int) -> NodeFlowControl {
        node < nodeFlowControl.count ? nodeFlowControl[node] : .pausing
    }

    /// The node's connection takes credit from now on: acknowledged with an empty-sid `credit`, after which the
    /// backend waits for credit on every sid. Requests already sent to it stay uncredited. Only the worker
    /// holding the connection acknowledges (`origin` here); a forwarded announcement tells this worker that its
    /// requests through the holder are credited (docs/PROTOCOL.md, "Credit").
    func nodeAnnouncedCredit(_ node: Int, identity: RawSpan, origin: BackendMessage.Origin) {
        while nodeFlowControl.count <= node { nodeFlowControl.append(.pausing) }
        if nodeFlowControl[node] == .pausing {
            logger.info("node \(nodeName(node)) takes credit (per-session flow control)")
        }
        nodeFlowControl[node] = .credit
        guard origin == .connectionHere else { return }
        _ = try? router.acknowledgeCredit(identity: identity)
    }

    /// Sends `bytes` of credit for `sid` (4 bytes, big-endian).
    func sendCredit(_ bytes: Int, to node: Int, sid: SessionID) {
        counters.creditGrants += 1
        _ = withBigEndianBytes(of: UInt32(truncatingIfNeeded: bytes)) { send(to: node, sid: sid, type: "credit", body: $0) }
    }

    /// Books a counted message's bytes against its session's credit before it is delivered; false when the
    /// bytes came without credit (an uncredited node, or one that overran its credit).
    func creditReceived(_ bytes: Int, session: GatewaySession) -> Bool {
        switch session.credit.received(bytes) {
        case .uncredited:
            return false
        case .withinCredit(let change):
            budget.reservedCreditChanged(by: change)
            return true
        case .overrun(let change):
            budget.reservedCreditChanged(by: change)
            counters.creditOverruns += 1
            return false
        }
    }

    /// After a counted message was delivered: a credited session gets more if its client took bytes; bytes
    /// that came without credit at the budget stop the reading of their connection.
    func afterCountedMessage(from identity: RawSpan, node: Int, session: GatewaySession, credited: Bool) {
        if session.credit.isCredited { session.grantCredit(afterMessage: true) }
        if credited { return }
        switch budget.uncreditedBytesArrived(nodeBytes: nodeBytes, now: loop.now) {
        case .none, .resumeBackends: return
        case .pauseBackend: pauseReading(identity, node: node, vhost: session.vhost)
        }
    }

    private func pauseReading(_ identity: RawSpan, node: Int, vhost: Int) {
        if pausedBackends.contains(where: { $0.identity.equals(identity) }) { return }
        let pause = router.pauseReading(identity: identity)
        if pause == .none { return }
        if pause == .allBackends { backendPause = .allBackends } else if backendPause == .none { backendPause = .connection }
        pausedBackends.append(([UInt8](copying: identity), node))
        counters.backendReadPauses += 1
        let warn = identity.byteCount > 0 && warnings.allow("budget", identity, now: loop.now, interval: 10)
        if warn {
            let what = pause == .allBackends ? "every backend (zmq-engine = libzmq)" : "node \(nodeName(node))"
            logger.warning(
                "max-buffered = \(budget.limit) bytes reached (clients \(budget.clientBytes), nodes \(nodeBytes), "
                    + "credit \(budget.reservedCredit)) by vhost \(config.vhosts[vhost].name): not reading \(what) "
                    + "until below \(budget.lowWater) (logged once per 10 s per node)")
        }
    }

    /// Whether `node`'s connection here is not read because a link to another worker holds it (WorkerMesh.swift).
    func isHeldForOtherWorkers(_ node: Int) -> Bool {
        let identity = nodes.nodes[node].identity
        return router.isHeldForOtherWorkers(identity: identity.span.bytes)
    }

    /// Whether `node`'s messages are not being read (then its silence says nothing about its health).
    func isReadPaused(_ node: Int) -> Bool {
        switch backendPause {
        case .none: return false
        case .allBackends: return true
        case .connection: return pausedBackends.contains { $0.node == node }
        }
    }

    /// Before the loop blocks, while the budget holds a pause or sessions wait for credit: resumes below
    /// the low-water mark, grants what the room allows.
    func budgetCheck() {
        let now = loop.now
        if case .resumeBackends(let pausedFor) = budget.check(nodeBytes: nodeBytes, now: now) {
            let paused = pausedBackends
            pausedBackends.removeAll()
            backendPause = .none
            for backend in paused {
                // Not heard from while paused: its health clock starts again now.
                _ = nodes.heard(from: backend.node, now: now)
                router.resumeReading(identity: backend.identity.span.bytes)
            }
            logger.info("memory budget below \(budget.lowWater) bytes: reading \(paused.count) backend connection(s) again after \(Int((pausedFor * 1000).rounded())) ms")
        }
        if creditWaiters.isEmpty || budget.room(nodeBytes: nodeBytes) < SessionCredit.smallestGrant { return }
        let waiting = creditWaiters
        creditWaiters.removeAll()
        for session in waiting { session.grantCredit(afterMessage: false) }
    }

    /// A credited session that needs credit the budget cannot give now.
    func waitForCreditRoom(_ session: GatewaySession) {
        if creditWaiters.contains(where: { $0 === session }) { return }
        counters.sessionsThrottled += 1
        creditWaiters.append(session)
        let vhost = session.vhost
        let serverName = vhostServerNames[vhost]
        if warnings.allow("credit-room", serverName.span.bytes, now: loop.now, interval: 10) {
            logger.warning(
                "max-buffered = \(budget.limit) bytes reached (clients \(budget.clientBytes), nodes \(nodeBytes), "
                    + "credit \(budget.reservedCredit)): a session of vhost \(config.vhosts[vhost].name) waits for "
                    + "credit until clients read (logged once per 10 s per vhost)")
        }
    }
}
