/// One worker process's lifecycle as its parent sees it (PrivilegedParent.swift in BlastBeatServer; README.md,
/// "Worker processes"). The parent does the I/O (fork, kill, waitpid); this says what to do next.
///
/// ```
///              serving reported                exited (ran ≥ 1 s, or first quick death)     restart due
///  starting ──────────────────▶ serving ─────────────────────────────────────▶ waiting ────────────▶ starting
///     │ exited, first start           │  exited quickly again: waiting 1 s, 2 s, 4 s … 30 s (a crash loop)
///     ▼ (the gateway cannot start)    │ stop (from any state with a process)
///  stopped ◀──────── stopping ◀───────┘
///               exited
/// ```
/// A worker is `starting` from its fork until it reports that it serves (its listeners open, privileges
/// dropped). One that dies there on the gateway's first start found something the whole gateway cannot start
/// with (a certificate that does not load, a log file that cannot be opened): restarting it would fail the
/// same way forever, so the gateway stops and exits (`.failedToStart`). A worker that dies after serving, or a
/// restarted one that dies before serving again (its files changed since), is started again: at once when it
/// had run for `crashWindow` or longer, else later each time, so a crash loop costs the machine at most one
/// fork per `maxDelay` in the end, and the log one line per attempt.
package struct WorkerLifecycle: Equatable {
    /// Which start of the worker a `starting` process is.
    package enum Attempt: Equatable, Sendable {
        /// The gateway's own start: a failure here stops the gateway.
        case first
        /// A restart after a death: a failure here is a crash loop, retried with backoff.
        case restart
    }

    package enum State: Equatable {
        /// Forked; has not reported serving yet.
        case starting(pid: Int32, since: Double, attempt: Attempt)
        case serving(pid: Int32, since: Double)
        /// Dead; to be started again at `at`.
        case waiting(at: Double)
        /// Asked to stop (a stop signal, replaced by an upgrade, or another worker failed to start): not restarted.
        case stopping(pid: Int32)
        case stopped(status: Int32)
    }

    package enum Action: Equatable {
        case nothing
        /// Fork a new worker now (`restarted(pid:now:)` follows).
        case startNow
        /// Fork a new worker at this time (a crash loop); the parent wakes up for it.
        case startAt(Double)
        /// Send the stop signal to this pid.
        case signal(Int32)
        /// The worker is gone for good.
        case finished(status: Int32)
        /// The worker died on the gateway's first start, before serving: the gateway cannot start; it stops
        /// its other workers and exits with this status.
        case failedToStart(status: Int32)
    }

    package private(set) var state: State
    /// Deaths within `crashWindow` of their start, in a row.
    private var quickDeaths = 0

    /// A worker that dies sooner than this after its start counts as crashing at start.
    package static let crashWindow = 1.0
    /// Longest wait between restarts of a crash-looping worker.
    package static let maxDelay = 30.0

    /// A worker forked for the gateway's first start.
    package init(pid: Int32, now: Double) { state = .starting(pid: pid, since: now, attempt: .first) }

    package var pid: Int32? {
        switch state {
        case .starting(let pid, _, _), .serving(let pid, _), .stopping(let pid): return pid
        case .waiting, .stopped: return nil
        }
    }

    /// Whether the worker has yet to report serving (the only time the parent takes a start failure from it).
    package var isStarting: Bool {
        if case .starting = state { return true }
        return false
    }

    /// Whether the worker is gone for good.
    package var isStopped: Bool {
        if case .stopped = state { return true }
        return false
    }

    /// When a restart is due (nil: none waiting).
    package var restartAt: Double? {
        if case .waiting(let at) = state { return at }
        return nil
    }

    /// The worker reported that it serves (after its start, and again after each reload). True when this
    /// ends its start.
    package mutating func served() -> Bool {
        guard case .starting(let pid, let since, _) = state else { return false }
        state = .serving(pid: pid, since: since)
        return true
    }

    /// The worker's process exited with `status` (128 + signal when killed).
    package mutating func exited(status: Int32, now: Double) -> Action {
        switch state {
        case .starting(_, _, .first):
            state = .stopped(status: status)
            return .failedToStart(status: status)
        case .starting(_, let since, .restart), .serving(_, let since):
            quickDeaths = now - since < Self.crashWindow ? quickDeaths + 1 : 0
            if quickDeaths <= 1 {
                state = .waiting(at: now)
                return .startNow
            }
            var delay = 1.0
            for _ in 2..<quickDeaths where delay < Self.maxDelay { delay *= 2 }
            let at = now + min(delay, Self.maxDelay)
            state = .waiting(at: at)
            return .startAt(at)
        case .stopping:
            state = .stopped(status: status)
            return .finished(status: status)
        case .waiting, .stopped:
            preconditionFailure("WorkerLifecycle: exit reported in state \(state): no process is running")
        }
    }

    /// A new process was forked for this worker (after `.startNow`, or once `restartAt` passed).
    package mutating func restarted(pid: Int32, now: Double) {
        switch state {
        case .waiting:
            state = .starting(pid: pid, since: now, attempt: .restart)
        case .starting, .serving, .stopping, .stopped:
            preconditionFailure("WorkerLifecycle: restarted in state \(state): only a dead worker is started again")
        }
    }

    /// A restart that failed (fork) is tried again at `at`.
    package mutating func postpone(until at: Double) {
        switch state {
        case .waiting:
            state = .waiting(at: at)
        case .starting, .serving, .stopping, .stopped:
            preconditionFailure("WorkerLifecycle: postponed in state \(state): only a dead worker waits for its start")
        }
    }

    /// Stop the worker (a stop signal, an upgrade that replaced the gateway, another worker's failed start).
    package mutating func stop() -> Action {
        switch state {
        case .starting(let pid, _, _), .serving(let pid, _):
            state = .stopping(pid: pid)
            return .signal(pid)
        case .waiting:
            state = .stopped(status: 0)
            return .finished(status: 0)
        case .stopping, .stopped:
            return .nothing
        }
    }
}
