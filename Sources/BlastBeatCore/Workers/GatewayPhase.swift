/// The gateway as a whole, as the privileged parent of several workers sees it (PrivilegedParent.swift in
/// BlastBeatServer; README.md, "Worker processes"): what to tell the service manager, and whether a failed
/// start was reported yet. With `Type=notify` (dist/blastbeat.service) the parent is the main process: it
/// outlives every worker, so a restarted worker never looks like the service dying.
///
/// ```
///                      every worker serves                 reload sent
///  starting(waiting) ──────────────────────▶ ready ◀───────────────────▶ reloading(waiting)
///     │ a worker failed at start                 │ every worker reported its reload done (or died)
///     ▼                                          │ stop signal ──▶ stopping     upgrade done ──▶ replaced
///  failedToStart(status)
/// ```
package struct GatewayPhase: Equatable {
    package enum State: Equatable {
        /// Until each of these workers (by index) has reported serving once.
        case starting(waiting: Set<Int>)
        case ready
        /// A reload bundle went to these workers; each reports serving again once it applied it.
        case reloading(waiting: Set<Int>)
        case stopping
        /// A new binary serves on the same sockets (SIGUSR2): it is the service now, and its socket file.
        case replaced
        /// A worker died before serving on the first start: the gateway exits with `status`.
        case failedToStart(status: Int32)
    }

    /// What the parent does for a transition.
    package enum Action: Equatable {
        case nothing
        /// `READY=1` with `MAINPID`: every worker serves.
        case notifyStarted
        /// `READY=1`: every worker applied the reload.
        case notifyReloaded
        /// `RELOADING=1`.
        case notifyReloading
        /// `STOPPING=1`.
        case notifyStopping
        /// Print the failure once, stop the other workers, exit with the status.
        case reportStartFailure
    }

    package private(set) var state: State

    package init(workers: Int) { state = .starting(waiting: Set(0..<workers)) }

    /// Worker `index` reported serving (its start, or a reload applied).
    package mutating func served(_ index: Int) -> Action { settled(index) }

    /// Worker `index` died: nothing is waited for from it any more (a restarted one serves the newest
    /// configuration anyway).
    package mutating func workerDied(_ index: Int) -> Action {
        if case .starting = state { return .nothing }  // the worker's lifecycle decides: a failed start
        return settled(index)
    }

    private mutating func settled(_ index: Int) -> Action {
        switch state {
        case .starting(var waiting):
            waiting.remove(index)
            state = waiting.isEmpty ? .ready : .starting(waiting: waiting)
            return waiting.isEmpty ? .notifyStarted : .nothing
        case .reloading(var waiting):
            waiting.remove(index)
            state = waiting.isEmpty ? .ready : .reloading(waiting: waiting)
            return waiting.isEmpty ? .notifyReloaded : .nothing
        case .ready, .stopping, .replaced, .failedToStart:
            return .nothing
        }
    }

    /// A reload bundle is about to go to `workers`. `.notifyReloading` comes before the bundle; `READY=1`
    /// follows once each of them reported its reload done (`served`) or died.
    package mutating func reloading(_ workers: Set<Int>) -> Action {
        switch state {
        case .ready:
            guard !workers.isEmpty else { return .nothing }
            state = .reloading(waiting: workers)
            return .notifyReloading
        case .reloading(let waiting):
            // Another reload before the first finished: READY=1 once both are done.
            state = .reloading(waiting: waiting.union(workers))
            return .nothing
        case .starting, .stopping, .replaced, .failedToStart:
            return .nothing
        }
    }

    /// A stop signal.
    package mutating func stop() -> Action {
        switch state {
        case .starting, .ready, .reloading:
            state = .stopping
            return .notifyStopping
        case .stopping, .replaced, .failedToStart:
            return .nothing
        }
    }

    /// A new binary serves on the same sockets: no `STOPPING=1` (the service goes on, under its new main
    /// process), and the socket files are its.
    package mutating func replaced() {
        if case .failedToStart = state { return }
        state = .replaced
    }

    /// A worker died before serving on the first start. Reported once, whichever workers fail after it.
    package mutating func startFailed(status: Int32) -> Action {
        switch state {
        case .starting:
            state = .failedToStart(status: status)
            return .reportStartFailure
        case .ready, .reloading, .stopping, .replaced, .failedToStart:
            return .nothing
        }
    }

    /// The status the parent exits with when every worker is gone, given the highest of their own.
    package func exitStatus(workers status: Int32) -> Int32 {
        if case .failedToStart(let failed) = state { return failed }
        return status
    }

    /// Whether the socket files the parent bound are still this gateway's to remove at exit.
    package var ownsSocketFiles: Bool {
        if case .replaced = state { return false }
        return true
    }
}
