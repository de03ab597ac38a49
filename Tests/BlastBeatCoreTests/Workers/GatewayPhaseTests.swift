import BlastBeatCore
import Testing

/// The parent's view of the gateway: READY=1 once every worker serves, around reloads once every worker applied
/// it, one STOPPING=1, one report of a failed start, and the socket files left to a new binary.
struct GatewayPhaseTests {
    @Test func readyOnlyOnceEveryWorkerServes() {
        var phase = GatewayPhase(workers: 2)
        do {
            let got = phase.served(1)
            #expect(got == .nothing)
        }
        do {
            let got = phase.served(1)
            #expect(got == .nothing)
        }
        do {
            let got = phase.served(0)
            #expect(got == .notifyStarted)
        }
        #expect(phase.state == .ready)
        // A restarted worker's start is no news to the service manager.
        do {
            let got = phase.served(0)
            #expect(got == .nothing)
        }
    }

    @Test func aReloadIsDoneWhenEveryWorkerAppliedItOrDied() {
        var phase = GatewayPhase(workers: 3)
        for index in 0..<3 { _ = phase.served(index) }
        do {
            let got = phase.reloading([0, 1, 2])
            #expect(got == .notifyReloading)
        }
        do {
            let got = phase.reloading([0, 1, 2])
            #expect(got == .nothing)
        }
        do {
            let got = phase.served(0)
            #expect(got == .nothing)
        }
        do {
            let got = phase.workerDied(2)
            #expect(got == .nothing)
        }
        do {
            let got = phase.served(1)
            #expect(got == .notifyReloaded)
        }
        do {
            let got = phase.reloading([])
            #expect(got == .nothing)
        }
        #expect(phase.state == .ready)
    }

    @Test func aDeathWhileStartingIsForTheLifecycleToJudge() {
        var phase = GatewayPhase(workers: 2)
        do {
            let got = phase.workerDied(0)
            #expect(got == .nothing)
        }
        do {
            let got = phase.served(1)
            #expect(got == .nothing)
        }
    }

    @Test func aFailedStartIsReportedOnceAndSetsTheExitStatus() {
        var phase = GatewayPhase(workers: 2)
        do {
            let got = phase.startFailed(status: 1)
            #expect(got == .reportStartFailure)
        }
        do {
            let got = phase.startFailed(status: 1)
            #expect(got == .nothing)
        }
        do {
            let got = phase.stop()
            #expect(got == .nothing)
        }
        do {
            let got = phase.served(0)
            #expect(got == .nothing)
        }
        // The other worker, stopped by the parent, exits 143 (SIGTERM): the failure's status is the gateway's.
        #expect(phase.exitStatus(workers: 143) == 1)
        #expect(phase.ownsSocketFiles)
    }

    @Test func aFailureAfterServingIsNotAFailedStart() {
        var phase = GatewayPhase(workers: 1)
        _ = phase.served(0)
        do {
            let got = phase.startFailed(status: 1)
            #expect(got == .nothing)
        }
        #expect(phase.exitStatus(workers: 0) == 0)
    }

    @Test func stoppingIsNotifiedOnce() {
        var phase = GatewayPhase(workers: 2)
        _ = phase.served(0)
        _ = phase.served(1)
        do {
            let got = phase.stop()
            #expect(got == .notifyStopping)
        }
        do {
            let got = phase.stop()
            #expect(got == .nothing)
        }
        do {
            let got = phase.reloading([0, 1])
            #expect(got == .nothing)
        }
        #expect(phase.ownsSocketFiles)
    }

    @Test func aReplacedGatewayNeitherNotifiesStoppingNorRemovesItsSocketFiles() {
        var phase = GatewayPhase(workers: 2)
        _ = phase.served(0)
        _ = phase.served(1)
        phase.replaced()
        do {
            let got = phase.stop()
            #expect(got == .nothing)
        }
        #expect(!phase.ownsSocketFiles)
    }
}
