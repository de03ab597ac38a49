/// The credit one session's backend holds to send response bytes (docs/PROTOCOL.md, "Credit"): what the
/// gateway granted and the backend has not used yet.
///
/// | state | event | result, next state |
/// |---|---|---|
/// | any | `start(credited: false)` (a request to a node that did not announce credit) | `uncredited` |
/// | any | `start(credited: true)` | `credited(0)`; the caller then grants the first share |
/// | `uncredited` | `received` | `.uncredited` |
/// | `credited(o)` | `received(n)`, `o > 0` | `.withinCredit`, `credited(o - n)` |
/// | `credited(o)` | `received(n)`, `o <= 0` | `.overrun` (sent with no credit left), `credited(o - n)` |
/// | `credited(o)` | `grant` | what fits the share, the queue and the budget's room; `credited(o + g)`, reserving what of `o + g` is above zero |
/// | any | `finish` | the unused credit's reservation goes back; `uncredited` |
///
/// The protocol lets a `headers` or WebSocket message exceed the credit left (they cannot be split), so the
/// outstanding credit may go below zero; the backend then waits until grants bring it above zero again.
/// Every positive outstanding byte is reserved in the `BufferBudget`; the functions return the change
/// of that reservation for the caller to apply.
package struct SessionCredit: Equatable {
    package enum State: Equatable {
        /// The node did not announce credit: its bytes are bounded by pausing its connection at the budget.
        case uncredited
        /// Granted and not yet used; negative after a message the protocol lets exceed the credit.
        case credited(outstanding: Int)
    }

    package enum Received: Equatable {
        case uncredited
        case withinCredit(reservationChange: Int)
        /// Sent with no credit left: treated as an uncredited backend's bytes.
        case overrun(reservationChange: Int)
    }

    package enum Grant: Equatable {
        /// Nothing to send: uncredited, or enough credit outstanding for what the queue can take.
        case none
        /// Send a `credit` message of `bytes`; the reservation grows by `reservationChange` (less than `bytes`
        /// when the grant first pays back credit overdrawn by a head or a WebSocket message).
        case grant(bytes: Int, reservationChange: Int)
        /// The session needs credit but the budget has no room: grant again when room frees.
        case waitForRoom
    }

    package private(set) var state = State.uncredited

    package init() {}

    /// The largest grant: a `credit` message carries a 32-bit count.
    package static let largestGrant = Int(UInt32.max)

    /// Grants smaller than this wait (unless they fill the share): a credit message per few bytes written
    /// would cost more than it saves.
    package static let smallestGrant = 16 << 10

    package var isCredited: Bool {
        if case .credited = state { return true }
        return false
    }

    /// A request was sent to a node. Returns the reservation change (the old credit's, released).
    package mutating func start(credited: Bool) -> Int {
        let released = finish()
        if credited { state = .credited(outstanding: 0) }
        return released
    }

    /// A response message of `bytes` counted bytes arrived from the node.
    package mutating func received(_ bytes: Int) -> Received {
        switch state {
        case .uncredited:
            return .uncredited
        case .credited(let outstanding):
            let after = outstanding - bytes
            state = .credited(outstanding: after)
            let change = max(after, 0) - max(outstanding, 0)
            return outstanding > 0 ? .withinCredit(reservationChange: change) : .overrun(reservationChange: change)
        }
    }

    /// More credit, if the session can take it: outstanding credit plus `queued` (its response bytes not yet
    /// written to the client) is kept at most `share`, and a grant never exceeds `room` (the budget's).
    package mutating func grant(queued: Int, share: Int, room: Int) -> Grant {
        guard case .credited(let outstanding) = state else { return .none }
        let wanted = share - queued - max(outstanding, 0)
        // Top up only once a quarter of the share is free: a credit message per write to the client (per DATA
        // frame over HTTP/2) would cost more than it saves. Shares are at least 64 KiB, so this is 16 KiB or more.
        guard wanted >= share / 4 else { return .none }
        let amount = min(wanted, room, Self.largestGrant)
        if amount < min(wanted, Self.smallestGrant) {
            // The budget is nearly full: a tiny grant would only mean another message soon.
            return outstanding <= 0 ? .waitForRoom : .none
        }
        state = .credited(outstanding: outstanding + amount)
        return .grant(bytes: amount, reservationChange: max(outstanding + amount, 0) - max(outstanding, 0))
    }

    /// The exchange ended (response complete, session gone): returns the reservation change (the unused
    /// credit released). The backend's credit for the sid starts over with the next `uwsgi`.
    package mutating func finish() -> Int {
        defer { state = .uncredited }
        if case .credited(let outstanding) = state { return -max(outstanding, 0) }
        return 0
    }
}

extension BackendMessageType {
    /// Whether the message's body frame uses the session's credit (docs/PROTOCOL.md, "Credit"): every message
    /// that puts bytes in front of the client. `end` and `retry` are free, so a backend without credit can
    /// always finish or give up.
    package var countsAgainstCredit: Bool {
        switch self {
        case .headers, .body, .chunk, .websocket, .websocketBinary: return true
        case .end, .retry, .pong, .ping, .uwsgi: return false
        }
    }
}
