internal import BlastBeatCore

/// Credit toward one gateway connection (docs/PROTOCOL.md, "Credit"), as the Python SDK keeps it
/// (python/src/blastbeat/_credit.py).
///
/// The node announces credit in the `pong` it sends after connecting; once the gateway acknowledges (a
/// `credit` with an empty sid) a session's response bytes (`headers`, `body`, `chunk`, WebSocket messages) go
/// out only while the gateway has granted credit for its sid. What does not fit waits here, per sid, in order,
/// so one session whose client reads slowly holds back only its own messages. `body` and `chunk` are split to
/// fit; a head or a WebSocket message goes whole once there is any credit (the credit goes below zero).
struct CreditGate {
    enum Mode: Equatable {
        /// The gateway has not acknowledged (an older gateway, or not yet): messages go out at once.
        case sendingFreely
        /// The gateway grants credit: every sid waits for it.
        case waitingForCredit
    }

    /// What to do with a message now.
    enum Admission: Equatable {
        case send
        /// Send the first `count` bytes; the rest waits (`hold`).
        case sendFirst(Int)
        case hold
    }

    struct Waiting {
        var type: BackendMessageType
        var body: [UInt8]
    }

    private(set) var mode = Mode.sendingFreely
    private var credit: [SessionID: Int] = [:]
    private var waiting: [SessionID: [Waiting]] = [:]

    mutating func acknowledged() { mode = .waitingForCredit }

    /// The connection is gone: a new one announces again; what waited is dropped (its sessions are over).
    mutating func reset() {
        mode = .sendingFreely
        credit = [:]
        waiting = [:]
    }

    /// A `uwsgi`: the sid's credit starts over at zero (the gateway's grant follows). A request that arrived
    /// before the acknowledgement was sent by the gateway without credit, and is answered without; so is one
    /// for which the acknowledgement does not hold (`creditApplies` false: see `NodeCore`'s dispatch of a
    /// request that came through the gateway's worker mesh).
    mutating func newRequest(_ sid: SessionID, creditApplies: Bool = true) {
        credit[sid] = mode == .waitingForCredit && creditApplies ? 0 : nil
    }

    /// `end`: the session's waiting messages are dropped (the gateway would drop them).
    mutating func ended(_ sid: SessionID) {
        credit[sid] = nil
        waiting[sid] = nil
    }

    func waitingBytes(_ sid: SessionID) -> Int {
        waiting[sid]?.reduce(0) { $0 + $1.body.count } ?? 0
    }

    /// Whether a message of `type` and `count` bytes may go out now (and books it against the credit).
    mutating func admit(_ sid: SessionID, _ type: BackendMessageType, count: Int) -> Admission {
        guard mode == .waitingForCredit else { return .send }
        if waiting[sid] != nil { return .hold }
        // No entry: a request from before the acknowledgement.
        guard let left = credit[sid] else { return .send }
        guard type.countsAgainstCredit else { return .send }
        if left <= 0 { return .hold }
        if type.splitsToFitCredit && count > left {
            credit[sid] = 0
            return .sendFirst(left)
        }
        credit[sid] = left - count
        return .send
    }

    mutating func hold(_ sid: SessionID, _ type: BackendMessageType, _ body: [UInt8]) {
        waiting[sid, default: []].append(Waiting(type: type, body: body))
    }

    /// A `credit` for `sid`: the messages that may go out now, in order.
    mutating func grant(_ sid: SessionID, _ bytes: Int) -> [Waiting] {
        credit[sid, default: 0] += bytes
        guard var queue = waiting.removeValue(forKey: sid) else { return [] }
        var out: [Waiting] = []
        var taken = 0
        while taken < queue.count {
            let next = queue[taken]
            if next.type.countsAgainstCredit {
                let left = credit[sid] ?? 0
                if left <= 0 { break }
                if next.type.splitsToFitCredit && next.body.count > left {
                    out.append(Waiting(type: next.type, body: Array(next.body[..<left])))
                    queue[taken].body = Array(next.body[left...])
                    credit[sid] = 0
                    break
                }
                credit[sid] = left - next.body.count
            }
            out.append(next)
            taken += 1
        }
        if taken < queue.count { waiting[sid] = Array(queue[taken...]) }
        return out
    }
}

extension BackendMessageType {
    /// `body` and `chunk` may be cut anywhere; a head or a WebSocket message may not.
    var splitsToFitCredit: Bool { self == .body || self == .chunk }
}
