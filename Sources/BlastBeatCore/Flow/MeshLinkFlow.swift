/// Backpressure on a worker mesh link (README.md, "Worker processes"): the bytes one worker queued for
/// another and has not written yet. A worker whose memory budget is full stops reading the link from the
/// worker holding the backend's connection; the bytes then wait in the holder's queue for that link. At
/// `highWater` the holder stops reading every backend connection that forwards a message into the link
/// (`ConnectionReadHolds`), so its backends wait in their TCP windows and no message is ever dropped; once the
/// queue has drained to `lowWater` those connections are read again.
///
/// | state | event | action, next state |
/// |---|---|---|
/// | `flowing` | `queued(q)`, `q >= highWater` | `.holdSender`, `congested` |
/// | `congested` | `queued(q)` | `.holdSender` (each further sender is held too), stays |
/// | `congested` | `written(q)`, `q <= lowWater` | `.releaseSenders`, `flowing` |
/// | either | anything else | `.none` |
package struct MeshLinkFlow: Equatable {
    package enum State: Equatable {
        case flowing
        case congested
    }

    package enum Action: Equatable {
        case none
        /// Stop reading the backend connection whose message was just queued.
        case holdSender
        /// Read every connection held for this link again.
        case releaseSenders
    }

    /// Unsent bytes at which a link stops its senders: a few large response pieces, far below a worker's
    /// budget share, and above what one loop iteration queues for a reading worker.
    package static let defaultHighWater = 4 << 20

    package let highWater: Int
    package var lowWater: Int { highWater / 4 }
    package private(set) var state = State.flowing

    package init(highWater: Int = Self.defaultHighWater) {
        self.highWater = highWater
    }

    /// A backend's message was queued; `queuedBytes`: the link's unsent bytes now.
    package mutating func queued(_ queuedBytes: Int) -> Action {
        switch state {
        case .flowing:
            guard queuedBytes >= highWater else { return .none }
            state = .congested
            return .holdSender
        case .congested:
            return .holdSender
        }
    }

    /// Bytes were written to the link; `queuedBytes`: what is left.
    package mutating func written(_ queuedBytes: Int) -> Action {
        guard state == .congested, queuedBytes <= lowWater else { return .none }
        state = .flowing
        return .releaseSenders
    }
}
