import Testing

@testable import BlastBeatCore

struct BufferBudgetTests {
    @Test func totalCountsClientsNodesAndReservedCredit() {
        var budget = BufferBudget(limit: 1000)
        budget.clientBytesChanged(by: 300)
        budget.reservedCreditChanged(by: 200)
        #expect(budget.total(nodeBytes: 100) == 600)
        #expect(budget.room(nodeBytes: 100) == 400)
        #expect(!budget.isFull(nodeBytes: 499))
        #expect(budget.isFull(nodeBytes: 500))
        #expect(budget.room(nodeBytes: 5000) == 0)
    }

    static let mib = 1 << 20
    /// (limit, sessions, max-output-buffer, expected share)
    static let shares: [(Int, Int, Int, Int)] = [
        (256 * mib, 1, 64 * mib, 64 * mib),  // one session: max-output-buffer
        (64 * mib, 1, 64 * mib, 32 * mib),  // one session: half the budget
        (256 * mib, 16, 64 * mib, 8 * mib),  // half the budget split
        (256 * mib, 100_000, 64 * mib, BufferBudget.minimumShare),  // never below the floor
        (256 * mib, 0, mib, mib),  // no session yet
    ]

    @Test(arguments: shares)
    func share(_ limit: Int, _ sessions: Int, _ maxOutputBuffer: Int, _ expected: Int) {
        #expect(BufferBudget(limit: limit).share(sessions: sessions, maxOutputBuffer: maxOutputBuffer) == expected)
    }

    @Test func pausesAtTheBudgetAndResumesBelowLowWater() {
        var budget = BufferBudget(limit: 1000)
        budget.clientBytesChanged(by: 900)
        #expect(budget.uncreditedBytesArrived(nodeBytes: 0, now: 1) == .none)
        #expect(budget.state == .open)
        budget.clientBytesChanged(by: 100)
        #expect(budget.uncreditedBytesArrived(nodeBytes: 0, now: 2) == .pauseBackend)
        #expect(budget.state == .paused(since: 2))
        // A second connection sending at the budget pauses too; the pause keeps its start.
        #expect(budget.uncreditedBytesArrived(nodeBytes: 0, now: 3) == .pauseBackend)
        #expect(budget.state == .paused(since: 2))
        // Under the budget but above three quarters: still paused.
        budget.clientBytesChanged(by: -200)
        #expect(budget.check(nodeBytes: 0, now: 4) == .none)
        // Node bytes count too.
        budget.clientBytesChanged(by: -100)
        #expect(budget.check(nodeBytes: 100, now: 5) == .none)
        #expect(budget.check(nodeBytes: 0, now: 6) == .resumeBackends(pausedFor: 4))
        #expect(budget.state == .open)
        #expect(budget.check(nodeBytes: 0, now: 7) == .none)
    }

    @Test func aSmallerLimitAfterAReloadHoldsThePause() {
        var budget = BufferBudget(limit: 1000)
        budget.clientBytesChanged(by: 1000)
        #expect(budget.uncreditedBytesArrived(nodeBytes: 0, now: 0) == .pauseBackend)
        budget.clientBytesChanged(by: -400)
        budget.setLimit(500)
        #expect(budget.check(nodeBytes: 0, now: 1) == .none)
        budget.clientBytesChanged(by: -300)
        #expect(budget.check(nodeBytes: 0, now: 2) == .resumeBackends(pausedFor: 2))
    }
}
