import Testing

@testable import BlastBeatCore

@Suite struct TarpitTests {
    @Test func holdsUpToItsCapacityAndReleasesInOrderWhenDue() {
        var tarpit = Tarpit(capacity: 3)
        let held = [tarpit.hold(10, until: 1.0), tarpit.hold(11, until: 1.5), tarpit.hold(12, until: 1.2)]
        #expect(held == [true, true, true])
        let full = tarpit.hold(13, until: 1.0)
        #expect(!full, "full: the caller resets it at once")
        // 12 is due at 1.2 but waits behind 11 (due at 1.5): released in the order they came.
        var released: [Int32?] = []
        for now in [0.9, 1.0, 1.3, 1.5, 1.5, 9] { released.append(tarpit.release(now: now)) }
        #expect(released == [nil, 10, nil, 11, 12, nil])
        #expect(tarpit.isEmpty)
    }

    @Test func wrapsAroundAndEmptiesAtShutdown() {
        var tarpit = Tarpit(capacity: 2)
        for round in 0..<5 {
            let fd = Int32(round)
            let held = tarpit.hold(fd, until: Double(round))
            let released = tarpit.release(now: Double(round))
            #expect(held && released == fd)
        }
        let held = [tarpit.hold(7, until: 100), tarpit.hold(8, until: 100)]
        let drained = [tarpit.releaseAny(), tarpit.releaseAny(), tarpit.releaseAny()]
        #expect(held == [true, true])
        #expect(drained == [7, 8, nil])
        #expect(tarpit.count == 0)
    }

    @Test func aTarpitWithoutRoomHoldsNothing() {
        var tarpit = Tarpit(capacity: 0)
        let held = tarpit.hold(3, until: 1)
        let released = [tarpit.release(now: 2), tarpit.releaseAny()]
        #expect(!held)
        #expect(released == [nil, nil])
    }
}
