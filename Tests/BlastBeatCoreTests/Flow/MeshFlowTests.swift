import Testing

@testable import BlastBeatCore

struct ConnectionReadHoldsTests {
    @Test func theFirstHoldStopsReadingAndTheLastReleaseResumes() {
        var holds = ConnectionReadHolds()
        #expect(holds.isReading)
        #expect(holds.hold(.budget(worker: 0)) == .stopReading)
        #expect(holds.hold(.budget(worker: 3)) == .none)
        #expect(holds.isHeld(.budget(worker: 0)) && holds.isHeld(.budget(worker: 3)) && !holds.isHeld(.budget(worker: 1)))
        #expect(holds.release(.budget(worker: 0)) == .none)
        #expect(!holds.isReading)
        #expect(holds.release(.budget(worker: 3)) == .resumeReading)
        #expect(holds.isReading)
    }

    @Test func aLinkThatDrainsDoesNotEndTheSameWorkersBudgetHold() {
        var holds = ConnectionReadHolds()
        #expect(holds.hold(.budget(worker: 1)) == .stopReading)
        #expect(holds.hold(.link(worker: 1)) == .none)
        #expect(holds.release(.link(worker: 1)) == .none)
        #expect(holds.isHeld(.budget(worker: 1)) && !holds.isHeld(.link(worker: 1)))
        #expect(holds.release(.budget(worker: 1)) == .resumeReading)
    }

    @Test func releasingAHoldNeverTakenChangesNothing() {
        var holds = ConnectionReadHolds()
        #expect(holds.release(.budget(worker: 2)) == .none)
        #expect(holds.hold(.link(worker: 1)) == .stopReading)
        #expect(holds.release(.budget(worker: 2)) == .none)
        #expect(holds.state == .held(budgets: 0, links: 0b10))
    }

    @Test func holdingTwiceByOneWorkerNeedsOneRelease() {
        var holds = ConnectionReadHolds()
        #expect(holds.hold(.budget(worker: 63)) == .stopReading)
        #expect(holds.hold(.budget(worker: 63)) == .none)
        #expect(holds.release(.budget(worker: 63)) == .resumeReading)
    }

    @Test func holdsOfOtherWorkersAreToldApartFromThisWorkersBudget() {
        var holds = ConnectionReadHolds()
        _ = holds.hold(.budget(worker: 0))
        #expect(!holds.isHeld(byOtherThan: 0))
        _ = holds.hold(.link(worker: 0))
        #expect(holds.isHeld(byOtherThan: 0))
        _ = holds.release(.link(worker: 0))
        _ = holds.hold(.budget(worker: 2))
        #expect(holds.isHeld(byOtherThan: 0))
    }
}

struct MeshLinkFlowTests {
    @Test func sendersAreHeldFromTheHighWaterMarkUntilTheLowWaterMark() {
        var flow = MeshLinkFlow(highWater: 1000)
        #expect(flow.queued(999) == .none)
        #expect(flow.written(0) == .none)
        #expect(flow.queued(1000) == .holdSender)
        #expect(flow.state == .congested)
        // Every sender queuing into a congested link is held, even one whose message did not reach the mark.
        #expect(flow.queued(600) == .holdSender)
        #expect(flow.written(251) == .none)
        #expect(flow.written(250) == .releaseSenders)
        #expect(flow.state == .flowing)
        #expect(flow.written(0) == .none)
    }
}

struct ForwardedSessionsTests {
    static func sid(worker: UInt8, _ n: UInt8) -> SessionID {
        [worker, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n].withUnsafeBytes { SessionID($0)! }
    }

    @Test func aRequestIsInFlightUntilItsEnd() {
        var sessions = ForwardedSessions()
        #expect(sessions.isEmpty)
        sessions.requestSent(Self.sid(worker: 1, 1))
        sessions.requestSent(Self.sid(worker: 1, 1))  // the next request of a keep-alive session
        sessions.requestSent(Self.sid(worker: 2, 2))
        #expect(sessions.count == 2)
        sessions.ended(Self.sid(worker: 1, 1))
        #expect(sessions.count == 1)
        sessions.ended(Self.sid(worker: 1, 1))
        #expect(sessions.count == 1)
        sessions.workerGone(2)
        #expect(sessions.isEmpty)
    }
}
