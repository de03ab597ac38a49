import BlastBeatCore
import Testing

/// A worker's lifecycle in the parent: a failed first start stops the gateway; after serving, restarted at once,
/// later and later in a crash loop, never while stopping.
struct WorkerLifecycleTests {
    /// A worker forked at the gateway's start that has reported serving.
    private func servingWorker(pid: Int32 = 10, now: Double = 0) -> WorkerLifecycle {
        var worker = WorkerLifecycle(pid: pid, now: now)
        do {
            let got = worker.served()
            #expect(got)
        }
        return worker
    }

    @Test func aWorkerThatRanAWhileIsRestartedAtOnce() {
        var worker = servingWorker()
        do {
            let got = worker.exited(status: 137, now: 50)
            #expect(got == .startNow)
        }
        #expect(worker.restartAt == 50 && worker.pid == nil)
        worker.restarted(pid: 11, now: 50)
        #expect(worker.state == .starting(pid: 11, since: 50, attempt: .restart))
        do {
            let got = worker.served()
            #expect(got)
        }
        #expect(worker.state == .serving(pid: 11, since: 50))
        do {
            let got = worker.exited(status: 1, now: 100)
            #expect(got == .startNow)
        }
    }

    @Test func aWorkerThatDiesBeforeServingOnTheFirstStartFailsTheGateway() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        #expect(worker.isStarting)
        do {
            let got = worker.exited(status: 1, now: 0.1)
            #expect(got == .failedToStart(status: 1))
        }
        #expect(worker.isStopped && worker.restartAt == nil)
    }

    @Test func servingIsReportedAgainAfterEachReloadWithoutEndingTheStartTwice() {
        var worker = servingWorker()
        do {
            let got = worker.served()
            #expect(!got)
        }
        #expect(worker.state == .serving(pid: 10, since: 0))
    }

    @Test func aRestartedWorkerThatDiesBeforeServingIsACrashLoopNotAFailedStart() {
        var worker = servingWorker()
        do {
            let got = worker.exited(status: 1, now: 0.5)
            #expect(got == .startNow)
        }
        worker.restarted(pid: 11, now: 0.5)
        // A certificate deleted since the start: the restart fails, the other workers serve on.
        guard case .startAt(let at) = worker.exited(status: 1, now: 0.6) else {
            Issue.record("expected a delayed restart")
            return
        }
        #expect((at - 0.6).rounded() == 1)
    }

    @Test func aCrashLoopWaitsLongerEachTimeUpToTheLimit() {
        var worker = servingWorker()
        var now = 0.5
        // The first quick death is restarted at once (a one-off crash); then 1, 2, 4, ... 30 s.
        do {
            let got = worker.exited(status: 1, now: now)
            #expect(got == .startNow)
        }
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
        do {
            let got = worker.served()
            #expect(got)
        }
        do {
            let got = worker.exited(status: 1, now: now + WorkerLifecycle.crashWindow)
            #expect(got == .startNow)
        }
    }

    @Test func stoppingSignalsTheRunningWorkerAndFinishesAtItsExit() {
        var worker = servingWorker()
        do {
            let got = worker.stop()
            #expect(got == .signal(10))
        }
        do {
            let got = worker.stop()
            #expect(got == .nothing)
        }
        #expect(worker.pid == 10)
        do {
            let got = worker.exited(status: 0, now: 5)
            #expect(got == .finished(status: 0))
        }
        #expect(worker.isStopped && worker.pid == nil)
    }

    @Test func aStartingWorkerStoppedByAnotherWorkersFailureFinishesWithoutFailingAgain() {
        var worker = WorkerLifecycle(pid: 10, now: 0)
        do {
            let got = worker.stop()
            #expect(got == .signal(10))
        }
        do {
            let got = worker.exited(status: 143, now: 0.2)
            #expect(got == .finished(status: 143))
        }
    }

    @Test func aWorkerWaitingForItsRestartStopsAtOnce() {
        var worker = servingWorker()
        _ = worker.exited(status: 1, now: 0.1)
        worker.restarted(pid: 11, now: 0.1)
        guard case .startAt = worker.exited(status: 1, now: 0.2) else {
            Issue.record("expected a delayed restart")
            return
        }
        do {
            let got = worker.stop()
            #expect(got == .finished(status: 0))
        }
        #expect(worker.isStopped && worker.restartAt == nil)
    }

    @Test func aFailedForkIsPostponed() {
        var worker = servingWorker()
        _ = worker.exited(status: 9, now: 5)
        worker.postpone(until: 6)
        #expect(worker.restartAt == 6)
    }
}
