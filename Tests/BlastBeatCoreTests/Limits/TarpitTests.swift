import Testing

@testable import BlastBeatCore

@Suite struct TarpitTests {
    @Test func holdsUpToItsCapacityAndReleasesInOrderWhenDue() {
        var tarpit = Tarpit(capacity: 3)
        #expect(tarpit.hold(10, until: 1.0))
        #expect(tarpit.hold(11, until: 1.5))
        #expect(tarpit.hold(12, until: 1.2))
        #expect(!tarpit.hold(13, until: 1.0), "full: the caller resets it at once")
        #expect(tarpit.release(now: 0.9) == nil)
        #expect(tarpit.release(now: 1.0) == 10)
        // 12 is due at 1.2 but waits behind 11 (due at 1.5): released in the order they came.
        #expect(tarpit.release(now: 1.3) == nil)
        #expect(tarpit.release(now: 1.5) == 11)
        #expect(tarpit.release(now: 1.5) == 12)
        #expect(tarpit.release(now: 9) == nil)
        #expect(tarpit.isEmpty)
    }

    @Test func wrapsAroundAndEmptiesAtShutdown() {
        var tarpit = Tarpit(capacity: 2)
        for round in 0..<5 {
            let fd = Int32(round)
            #expect(tarpit.hold(fd, until: Double(round)))
            #expect(tarpit.release(now: Double(round)) == fd)
        }
        #expect(tarpit.hold(7, until: 100))
        #expect(tarpit.hold(8, until: 100))
        #expect(tarpit.releaseAny() == 7)
        #expect(tarpit.releaseAny() == 8)
        #expect(tarpit.releaseAny() == nil)
        #expect(tarpit.count == 0)
    }

    @Test func aTarpitWithoutRoomHoldsNothing() {
        var tarpit = Tarpit(capacity: 0)
        #expect(!tarpit.hold(3, until: 1))
        #expect(tarpit.release(now: 2) == nil)
        #expect(tarpit.releaseAny() == nil)
    }
}
