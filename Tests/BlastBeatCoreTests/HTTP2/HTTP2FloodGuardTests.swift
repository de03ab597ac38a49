import BlastBeatCore
import Testing

struct HTTP2FloodGuardTests {
    @Test func overTheBudgetWithinTheWindow() {
        var guardian = HTTP2FloodGuard(budget: .init(resets: 3, pings: 2, settings: 2, emptyFrames: 2, window: 10))
        do { let over = guardian.record(.reset, now: 0); #expect(!over) }
        do { let over = guardian.record(.reset, now: 1); #expect(!over) }
        do { let over = guardian.record(.reset, now: 2); #expect(!over) }
        do { let over = guardian.record(.reset, now: 3); #expect(over) }
        #expect(guardian.count(.reset) == 4)
    }

    @Test func eachKindHasItsOwnCount() {
        var guardian = HTTP2FloodGuard(budget: .init(resets: 1, pings: 1, settings: 1, emptyFrames: 1, window: 10))
        for event in HTTP2FloodGuard.Event.allCases { do { let over = guardian.record(event, now: 0); #expect(!over) } }
        for event in HTTP2FloodGuard.Event.allCases { do { let over = guardian.record(event, now: 1); #expect(over) } }
    }

    @Test func aNewWindowStartsAfresh() {
        var guardian = HTTP2FloodGuard(budget: .init(resets: 2, pings: 2, settings: 2, emptyFrames: 2, window: 10))
        do { let over = guardian.record(.ping, now: 0); #expect(!over) }
        do { let over = guardian.record(.ping, now: 5); #expect(!over) }
        do { let over = guardian.record(.ping, now: 10); #expect(!over) }  // the window of 0 ended
        do { let over = guardian.record(.ping, now: 11); #expect(!over) }
        do { let over = guardian.record(.ping, now: 12); #expect(over) }
    }

    @Test func defaultsLetABrowserThrough() {
        var guardian = HTTP2FloodGuard()
        for i in 0..<50 { let over = guardian.record(.reset, now: Double(i) * 0.1); #expect(!over) }
        for i in 0..<20 { let over = guardian.record(.ping, now: Double(i) * 0.1); #expect(!over) }
    }
}
