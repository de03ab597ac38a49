import BlastBeatCore

/// Sessions whose node went away: the node died, or its connection was replaced by a newer one with the same
/// identity (a restarted process). One path for both transports: an HTTP/1.1 connection's session and an
/// HTTP/2 stream's are told alike (`GatewaySession.nodeLost`), which retries where that is safe, else answers 502.
extension Gateway {
    /// A session in flight, held by what keeps its transport alive (the transport holds its session unretained;
    /// while held, `session.transport` may be asked whether it closed).
    enum HeldSession {
        case connection(Connection)
        case stream(HTTP2Stream)

        var session: GatewaySession {
            switch self {
            case .connection(let connection): connection.session
            case .stream(let stream): stream.session
            }
        }

        /// Tells the session its node is lost, with its client connection alive for the call (a write may
        /// close it).
        func nodeLost(connectionReplaced: Bool) {
            switch self {
            case .connection(let connection):
                withExtendedLifetime(connection) { connection.session.nodeLost(connectionReplaced: connectionReplaced) }
            case .stream(let stream):
                withExtendedLifetime(stream.connection.connection) {
                    stream.session.nodeLost(connectionReplaced: connectionReplaced)
                }
            }
        }
    }

    /// Every open session a node knows (its request went out), HTTP/1.1 connections' and HTTP/2 streams'.
    private func sessionsKnownToNodes() -> [HeldSession] {
        var held: [HeldSession] = []
        for connection in sessions.values where !connection.closed && connection.session.nodeKnowsSession {
            held.append(.connection(connection))
        }
        for stream in http2Streams.values where !stream.closed && stream.session.nodeKnowsSession {
            held.append(.stream(stream))
        }
        return held
    }

    func scheduleNodeFailure(_ node: Int) {
        if !pendingNodeFailures.contains(node) { pendingNodeFailures.append(node) }
    }

    /// `node`'s connection was replaced: the sessions it knew are answered before the loop blocks (they would
    /// otherwise wait for `backend-timeout`).
    func nodeConnectionReplaced(_ node: Int) {
        sessionsOnReplacedConnections += sessionsKnownToNodes().filter { $0.session.node == node }
    }

    /// Answers the clients waiting on nodes that were found dead during this iteration, and on
    /// connections that were replaced (retried where that is safe, else 502).
    func failNodesIfNeeded() {
        if !sessionsOnReplacedConnections.isEmpty {
            let lost = sessionsOnReplacedConnections
            sessionsOnReplacedConnections.removeAll()
            for held in lost where !held.session.transport.closed && held.session.nodeKnowsSession {
                held.nodeLost(connectionReplaced: true)
            }
        }
        if pendingNodeFailures.isEmpty { return }
        let dead = pendingNodeFailures
        pendingNodeFailures.removeAll()
        for held in sessionsKnownToNodes() where !held.session.transport.closed && held.session.nodeKnowsSession {
            guard let node = held.session.node, dead.contains(node), !nodes.isUsable(node) else { continue }
            held.nodeLost(connectionReplaced: false)
        }
    }
}
