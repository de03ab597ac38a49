import BlastBeatCore
import BlastBeatSystem

/// Right after the gateway starts, its backends are still connecting: after a restart they reconnect within
/// their reconnect interval, and after an upgrade (SIGUSR2) they move over as the old process finishes its
/// requests and closes their connections. Answering 503 meanwhile would fail requests that a moment's wait
/// serves. So for `ping-timeout` seconds after the start, a request whose vhost has no connected node waits for
/// one (its body kept up to `max-retry-buffer`, within `backend-timeout`), and goes out as soon as a node of
/// its vhost is heard from; what is still waiting when the time is up gets 503. Later, no node means 503 at
/// once, as before. HTTP/1.1 requests and HTTP/2 streams wait alike; WebSocket upgrades never wait (their
/// handshake cannot be held).
extension Gateway {
    /// Parks `session` if the gateway is within its start-up wait; false otherwise (the caller answers 503).
    func waitForNode(_ session: GatewaySession) -> Bool {
        guard !isShuttingDown, loop.now < nodeWaitEnds, !vhostNodes[session.vhost].isEmpty else { return false }
        if sessionsWaitingForNode.isEmpty { nodeWaitTimer.start(after: nodeWaitEnds - loop.now) }
        sessionsWaitingForNode.append(session)
        counters.requestsWaitedForNode += 1
        return true
    }

    func stopWaiting(_ session: GatewaySession) {
        sessionsWaitingForNode.removeAll { $0 === session }
        if sessionsWaitingForNode.isEmpty { nodeWaitTimer.stop() }
    }

    /// A node was heard from: the requests waiting for its vhosts go to it (or to a sibling).
    func dispatchRequestsWaiting(for node: Int) {
        let ready = sessionsWaitingForNode.filter { vhostNodes[$0.vhost].contains(node) }
        for session in ready { session.stopWaitingForNode(dispatching: true) }
    }

    /// The start-up wait is over.
    func nodeWaitEnded() {
        for session in sessionsWaitingForNode { session.stopWaitingForNode(dispatching: false) }
    }
}
