/// The gateway's memory budget (`max-buffered`): what it holds for clients and nodes, each session's share
/// of it, and the pause of backends that send without credit.
///
/// Three amounts make up the total, all in bytes:
/// - `clientBytes`: response bytes queued for client connections and HTTP/2 streams, kept here by deltas;
/// - node bytes: client data (request bodies, WebSocket messages) handed to the router and not yet written to
///   a node, read from the nodes' meters by the caller (the libzmq engine frees them on its own thread);
/// - `reservedCredit`: credit granted to backends and not yet used, bytes that may arrive unasked
///   (docs/PROTOCOL.md, "Credit"). Counting them before they arrive is what keeps a credited backend inside
///   the budget: a grant is never larger than the room left.
///
/// Lifecycle of the fallback for backends that do not take credit:
///
/// | state | event | action, next state |
/// |---|---|---|
/// | `open` | uncredited bytes arrive while `total >= limit` | `.pauseBackend`, `paused(since: now)` |
/// | `paused` | uncredited bytes arrive while `total >= limit` | `.pauseBackend` (one more connection), stays |
/// | `paused` | `check` finds `total < lowWater` | `.resumeBackends(pausedFor:)`, `open` |
/// | either | anything else | `.none` |
///
/// A pause always ends: the total falls as clients read, and clients that disconnect or stall past
/// `body-timeout` give their bytes back.
package struct BufferBudget {
    package enum State: Equatable {
        /// Every backend connection is read.
        case open
        /// Connections that sent uncredited bytes at the budget are not read until the total falls below
        /// `lowWater`.
        case paused(since: Double)
    }

    package enum Action: Equatable {
        case none
        /// Stop reading the connection the uncredited bytes came from.
        case pauseBackend
        /// Read every paused connection again.
        case resumeBackends(pausedFor: Double)
    }

    package private(set) var state = State.open
    package private(set) var limit: Int
    package private(set) var clientBytes = 0
    package private(set) var reservedCredit = 0

    /// The smallest share a session gets however many sessions there are: below it each credit message
    /// would carry too little to be worth its round trip.
    package static let minimumShare = 64 << 10

    package init(limit: Int) {
        self.limit = limit
    }

    /// Resume point of a pause: three quarters of the budget, so a pause does not end after one write.
    package var lowWater: Int { limit / 4 * 3 }

    package func total(nodeBytes: Int) -> Int { clientBytes + nodeBytes + reservedCredit }

    package func isFull(nodeBytes: Int) -> Bool { total(nodeBytes: nodeBytes) >= limit }

    /// Bytes that may still be granted or queued before the budget is reached.
    package func room(nodeBytes: Int) -> Int { max(0, limit - total(nodeBytes: nodeBytes)) }

    /// One session's share: half the budget split over the sessions open, at least `minimumShare`, at most the
    /// vhost's `max-output-buffer` (which still closes a client whose uncredited backend overruns it).
    ///
    /// Half, because a share once granted is held until the client reads it: a session that arrives when the
    /// others have taken theirs (and their clients stall) must still find room for its own, so the sessions
    /// open take at most half the budget between them and a newcomer always fits in the other half.
    package func share(sessions: Int, maxOutputBuffer: Int) -> Int {
        min(maxOutputBuffer, max(Self.minimumShare, limit / (2 * max(1, sessions))))
    }

    package mutating func clientBytesChanged(by delta: Int) {
        clientBytes += delta
        assert(clientBytes >= 0, "client bytes below zero: \(clientBytes)")
    }

    package mutating func reservedCreditChanged(by delta: Int) {
        reservedCredit += delta
        assert(reservedCredit >= 0, "reserved credit below zero: \(reservedCredit)")
    }

    /// A reload set a new `max-buffered`; a pause ends at the next `check` if the total is under the new
    /// low-water mark.
    package mutating func setLimit(_ limit: Int) { self.limit = limit }

    /// Bytes a backend sent without credit (it did not announce credit, or overran it) were taken.
    package mutating func uncreditedBytesArrived(nodeBytes: Int, now: Double) -> Action {
        guard isFull(nodeBytes: nodeBytes) else { return .none }
        switch state {
        case .open: state = .paused(since: now)
        case .paused: break
        }
        return .pauseBackend
    }

    /// Called once per loop iteration while paused: resumes below the low-water mark.
    package mutating func check(nodeBytes: Int, now: Double) -> Action {
        switch state {
        case .open:
            return .none
        case .paused(let since):
            guard total(nodeBytes: nodeBytes) < lowWater else { return .none }
            state = .open
            return .resumeBackends(pausedFor: now - since)
        }
    }
}
