/// Who keeps a backend connection from being read (README.md, "Memory budget" and "Worker processes").
///
/// Two kinds of hold, each by a worker index:
/// - `budget(w)`: worker `w`'s memory budget is full with bytes the backend sent without credit (this worker's
///   own index for its own budget: the fallback; another worker's, asked for over the mesh with `P`);
/// - `link(w)`: the mesh link to worker `w` holds `MeshLinkFlow.highWater` unsent bytes (that worker does not
///   keep up with what this connection forwards to it).
/// The connection is read again only when every hold is released, so one worker's clients reading again
/// cannot overrun another's budget, and a link that drains does not end a budget's pause.
///
/// | state | event | action, next state |
/// |---|---|---|
/// | `reading` | `hold(h)` | `.stopReading`, `held({h})` |
/// | `held(S)` | `hold(h)` | `.none`, `held(S ∪ {h})` |
/// | `held(S)` | `release(h)`, `S == {h}` | `.resumeReading`, `reading` |
/// | `held(S)` | `release(h)`, more in `S` or `h` not in `S` | `.none`, `held(S − {h})` |
/// | `reading` | `release` | `.none`, stays |
package struct ConnectionReadHolds: Equatable {
    package enum Hold: Equatable {
        case budget(worker: Int)
        case link(worker: Int)
    }

    package enum State: Equatable {
        case reading
        /// One bit per worker index (at most 64 workers, `workers` in README.md) for each kind of hold.
        case held(budgets: UInt64, links: UInt64)
    }

    package enum Action: Equatable {
        case none
        case stopReading
        case resumeReading
    }

    package private(set) var state = State.reading

    package init() {}

    package var isReading: Bool { state == .reading }

    package func isHeld(_ hold: Hold) -> Bool {
        guard case .held(let budgets, let links) = state else { return false }
        switch hold {
        case .budget(let worker): return budgets & Self.bit(worker) != 0
        case .link(let worker): return links & Self.bit(worker) != 0
        }
    }

    /// Whether a hold other than `budget(worker)` (this worker's own) keeps it.
    package func isHeld(byOtherThan worker: Int) -> Bool {
        guard case .held(let budgets, let links) = state else { return false }
        return links != 0 || budgets & ~Self.bit(worker) != 0
    }

    package mutating func hold(_ hold: Hold) -> Action {
        var (budgets, links): (UInt64, UInt64) = (0, 0)
        if case .held(let b, let l) = state { (budgets, links) = (b, l) }
        let wasReading = state == .reading
        switch hold {
        case .budget(let worker): budgets |= Self.bit(worker)
        case .link(let worker): links |= Self.bit(worker)
        }
        state = .held(budgets: budgets, links: links)
        return wasReading ? .stopReading : .none
    }

    package mutating func release(_ hold: Hold) -> Action {
        guard case .held(var budgets, var links) = state else { return .none }
        switch hold {
        case .budget(let worker): budgets &= ~Self.bit(worker)
        case .link(let worker): links &= ~Self.bit(worker)
        }
        if budgets == 0 && links == 0 {
            state = .reading
            return .resumeReading
        }
        state = .held(budgets: budgets, links: links)
        return .none
    }

    private static func bit(_ worker: Int) -> UInt64 {
        precondition(worker >= 0 && worker < 64, "worker index \(worker) out of 0..<64")
        return 1 << UInt64(worker)
    }
}
