/// One worker process's lifecycle as its parent sees it (PrivilegedParent.swift in BlastBeatServer; README.md,
/// "Worker processes"). The parent does the I/O (fork, kill, waitpid); this says what to do next.
///
/// ```
///            exited (ran ≥ 1 s, or first quick death)      restart due
///  running ─────────────────────────────────────▶ waiting ────────────▶ running
///     │  exited quickly again: waiting with a delay 1 s, 2 s, 4 s … 30 s (a crash loop)
///     │ stop
///     ▼            exited
///  stopping ─────────────────▶ stopped
/// ```
/// A worker that was running for `crashWindow` or longer before it died is restarted at once; one that dies
/// sooner again and again (a bad file, a crash at start) waits longer each time, so a crash loop costs the
/// machine at most one fork per `maxDelay` in the end, and the log one line per attempt.
package struct WorkerLifecycle: Equatable {
    package enum State: Equatable {
        case running(pid: Int32, since: Double)
        /// Dead; to be started again at `at`.
        case waiting(at: Double)
        /// Asked to stop (a stop signal, or replaced by an upgrade): not restarted.
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
    }

    package private(set) var state: State
    /// Deaths within `crashWindow` of their start, in a row.
    private var quickDeaths = 0

    /// A worker that dies sooner than this after its start counts as crashing at start.
    package static let crashWindow = 1.0
    /// Longest wait between restarts of a crash-looping worker.
    package static let maxDelay = 30.0

    package init(pid: Int32, now: Double) { state = .running(pid: pid, since: now) }

    package var pid: Int32? {
        switch state {
        case .running(let pid, _), .stopping(let pid): return pid
        case .waiting, .stopped: return nil
        }
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

    /// The worker's process exited with `status` (128 + signal when killed).
    package mutating func exited(status: Int32, now: Double) -> Action {
        switch state {
        case .running(_, let since):
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
            state = .running(pid: pid, since: now)
        case .running, .stopping, .stopped:
            preconditionFailure("WorkerLifecycle: restarted in state \(state): only a dead worker is started again")
        }
    }

    /// A restart that failed (fork) is tried again at `at`.
    package mutating func postpone(until at: Double) {
        switch state {
        case .waiting:
            state = .waiting(at: at)
        case .running, .stopping, .stopped:
            preconditionFailure("WorkerLifecycle: postponed in state \(state): only a dead worker waits for its start")
        }
    }

    /// Stop the worker (a stop signal, or an upgrade that replaced the gateway).
    package mutating func stop() -> Action {
        switch state {
        case .running(let pid, _):
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
