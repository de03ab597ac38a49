import BlastBeatCore
package import BlastBeatSystem

/// What a worker process (README.md, "Worker processes") does differently from a lone gateway: its sids
/// name it, and it reaches the backends connected to the other workers through them (WorkerMesh.swift).
extension Gateway {
    /// A new session id: 16 random bytes, the first of them this worker's index when there are several
    /// (the worker holding the backend's connection sends the answers to the worker the sid names).
    func newSessionID() -> SessionID {
        let (high, low) = random.next128()
        guard let worker else { return SessionID(high: high, low: low) }
        // The first wire byte is the low byte of `high` (SessionID.withBytes stores it little-endian).
        return SessionID(high: (high & ~0xff) | UInt64(worker.index), low: low)
    }

    /// Another worker holds a connection with `identity` and this one has none: the node is reachable
    /// through it. Registered like a connection here (an instance joins its node's vhosts) and pinged at once.
    package func backendRouterRemotePeerJoined(identity: RawSpan, worker: Int, replacedAt: Int?) {
        guard let base = nodes.configuredNode(for: identity), nodeIsListed[base] else { return }
        guard nodes.index(of: identity) ?? registerInstance(identity) != nil else { return }
        if infoAboutSDKDue(identity) {
            logger.info(
                "node \(Self.printable(identity)) has its connection at worker \(worker): requests arriving at this worker go to it through that worker (one more hop); a backend that opens a connection per worker, labelled X-BlastBeat-Worker (as the SDKs do), spares it")
        }
        backendRouterPeerJoined(
            identity: identity, address: "worker \(worker)",
            replaced: replacedAt.map { BackendIdentityHolder(key: nil, address: "worker \($0)") })
    }

    /// The SDK hint, at most once every 10 minutes per identity.
    private func infoAboutSDKDue(_ identity: RawSpan) -> Bool {
        warnings.allow("single-worker", identity, now: loop.now, interval: 600)
    }
}

/// This process's place among the worker processes (nil for a lone gateway).
package struct WorkerPlace {
    package var index: Int
    package var count: Int
    /// The socket pair ends to the other workers, by their index.
    package var links: [Int: Int32]
    /// TLS session ticket keys shared by every worker (made by the parent), so a ticket one worker issued
    /// resumes on any other.
    package var ticketKeys: [UInt8]
    /// The per-vhost counts every worker shares (mapped by the parent before the fork, a column per worker).
    package var counts: SharedVhostCounts

    package init(index: Int, count: Int, links: [Int: Int32], ticketKeys: [UInt8], counts: SharedVhostCounts) {
        self.index = index
        self.count = count
        self.links = links
        self.ticketKeys = ticketKeys
        self.counts = counts
    }
}
