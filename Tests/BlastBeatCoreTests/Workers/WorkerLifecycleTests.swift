import BlastBeatCore
import Testing

/// A worker's lifecycle in the parent: restarted at once, later and later in a crash loop, never while stopping.
struct WorkerLifecycleTests {
    @Test func aWorkerThatRanAWhileIsRestartedAtOnce() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        #expect(worker.exited(status: 137, now: 50) == .startNow)
        #expect(worker.restartAt == 50 && worker.pid == nil)
        worker.restarted(pid: 11, now: 50)
        #expect(worker.state == .running(pid: 11, since: 50))
        #expect(worker.exited(status: 1, now: 100) == .startNow)
    }

    @Test func aCrashLoopWaitsLongerEachTimeUpToTheLimit() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        var now = 0.5
        // The first quick death is restarted at once (a one-off crash); then 1, 2, 4, ... 30 s.
        #expect(worker.exited(status: 1, now: now) == .startNow)
        var delays: [Double] = []
        for pid in Int32(11)...Int32(18) {
            worker.restarted(pid: pid, now: now)
            now += 0.2
            guard case .startAt(let at) = worker.exited(status: 1, now: now) else {
                Issue.record("expected a delayed restart")
                return
            }
            delays.append(at - now)
            now = at
        }
        #expect(delays.map { $0.rounded() } == [1, 2, 4, 8, 16, 30, 30, 30])
        // Once a worker runs for a second, the next death is restarted at once again.
        worker.restarted(pid: 20, now: now)
        #expect(worker.exited(status: 1, now: now + WorkerLifecycle.crashWindow) == .startNow)
    }

    @Test func stoppingSignalsTheRunningWorkerAndFinishesAtItsExit() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        #expect(worker.stop() == .signal(10))
        #expect(worker.stop() == .nothing)
        #expect(worker.pid == 10)
        #expect(worker.exited(status: 0, now: 5) == .finished(status: 0))
        #expect(worker.isStopped && worker.pid == nil)
    }

    @Test func aWorkerWaitingForItsRestartStopsAtOnce() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        _ = worker.exited(status: 1, now: 0.1)
        worker.restarted(pid: 11, now: 0.1)
        guard case .startAt = worker.exited(status: 1, now: 0.2) else {
            Issue.record("expected a delayed restart")
            return
        }
        #expect(worker.stop() == .finished(status: 0))
        #expect(worker.isStopped && worker.restartAt == nil)
    }

    @Test func aFailedForkIsPostponed() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        _ = worker.exited(status: 9, now: 5)
        worker.postpone(until: 6)
        #expect(worker.restartAt == 6)
    }
}
