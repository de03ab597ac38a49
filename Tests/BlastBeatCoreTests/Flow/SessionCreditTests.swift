import Testing

@testable import BlastBeatCore

struct SessionCreditTests {
    @Test func uncreditedSessionsGetNoGrants() {
        var credit = SessionCredit()
        #expect(credit.start(credited: false) == 0)
        #expect(credit.grant(queued: 0, share: 1 << 20, room: 1 << 30) == .none)
        #expect(credit.received(100) == .uncredited)
        #expect(credit.finish() == 0)
    }

    @Test func firstGrantIsTheShareWithinTheRoom() {
        var credit = SessionCredit()
        #expect(credit.start(credited: true) == 0)
        #expect(credit.grant(queued: 0, share: 1 << 20, room: 1 << 30) == .grant(bytes: 1 << 20, reservationChange: 1 << 20))
        #expect(credit.state == .credited(outstanding: 1 << 20))
        var small = SessionCredit()
        _ = small.start(credited: true)
        #expect(small.grant(queued: 0, share: 1 << 20, room: 100 << 10) == .grant(bytes: 100 << 10, reservationChange: 100 << 10))
    }

    @Test func usingCreditReleasesItsReservation() {
        var credit = SessionCredit()
        _ = credit.start(credited: true)
        _ = credit.grant(queued: 0, share: 100_000, room: .max)
        #expect(credit.received(30_000) == .withinCredit(reservationChange: -30_000))
        // A message larger than what is left (a head, a WebSocket message) takes it below zero.
        #expect(credit.received(80_000) == .withinCredit(reservationChange: -70_000))
        #expect(credit.state == .credited(outstanding: -10_000))
        // Anything more is an overrun.
        #expect(credit.received(1) == .overrun(reservationChange: 0))
    }

    @Test func topsUpOnlyAsTheQueueDrains() {
        var credit = SessionCredit()
        _ = credit.start(credited: true)
        #expect(credit.grant(queued: 0, share: 1 << 20, room: .max) == .grant(bytes: 1 << 20, reservationChange: 1 << 20))
        _ = credit.received(1 << 20)
        // All of it queued for a client that does not read: nothing more.
        #expect(credit.grant(queued: 1 << 20, share: 1 << 20, room: .max) == .none)
        // A little written: still below the top-up threshold.
        #expect(credit.grant(queued: (1 << 20) - 1000, share: 1 << 20, room: .max) == .none)
        // A quarter written: that quarter comes back as credit.
        #expect(credit.grant(queued: 3 << 18, share: 1 << 20, room: .max) == .grant(bytes: 1 << 18, reservationChange: 1 << 18))
    }

    @Test func waitsForRoomWhenTheBudgetIsFull() {
        var credit = SessionCredit()
        _ = credit.start(credited: true)
        #expect(credit.grant(queued: 0, share: 1 << 20, room: 0) == .waitForRoom)
        #expect(credit.grant(queued: 0, share: 1 << 20, room: 1000) == .waitForRoom)
        #expect(credit.grant(queued: 0, share: 1 << 20, room: 1 << 20) == .grant(bytes: 1 << 20, reservationChange: 1 << 20))
        // With credit left, a full budget is no reason to wait: the backend still has some.
        _ = credit.received(1000)
        #expect(credit.grant(queued: 1 << 19, share: 1 << 20, room: 0) == .none)
    }

    @Test func aGrantAfterAnOverdraftReservesOnlyWhatIsAboveZero() {
        var credit = SessionCredit()
        _ = credit.start(credited: true)
        _ = credit.grant(queued: 0, share: 100_000, room: .max)
        // A head with 64 KiB of body on 100,000 bytes of credit, then a 70,000-byte WebSocket message.
        #expect(credit.received(170_000) == .withinCredit(reservationChange: -100_000))
        #expect(credit.state == .credited(outstanding: -70_000))
        // The next grant pays the overdraft back first: only what ends above zero is reserved.
        #expect(credit.grant(queued: 0, share: 100_000, room: .max) == .grant(bytes: 100_000, reservationChange: 30_000))
        #expect(credit.finish() == -30_000)
    }

    @Test func finishingReleasesUnusedCredit() {
        var credit = SessionCredit()
        _ = credit.start(credited: true)
        _ = credit.grant(queued: 0, share: 100_000, room: .max)
        _ = credit.received(40_000)
        #expect(credit.finish() == -60_000)
        #expect(credit.state == .uncredited)
        // A new request releases the previous one's credit too.
        _ = credit.start(credited: true)
        _ = credit.grant(queued: 0, share: 100_000, room: .max)
        #expect(credit.start(credited: true) == -100_000)
        #expect(credit.state == .credited(outstanding: 0))
        // Overdrawn credit reserves nothing.
        _ = credit.grant(queued: 0, share: 100_000, room: .max)
        _ = credit.received(150_000)
        #expect(credit.finish() == 0)
    }
}
