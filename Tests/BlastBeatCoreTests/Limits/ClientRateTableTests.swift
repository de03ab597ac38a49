import Testing

@testable import BlastBeatCore

@Suite struct TokenBucketTests {
    @Test func burstThenRefusedWithTheWaitForTheNextToken() {
        var bucket = TokenBucket(burst: 3, now: 100)
        for _ in 0..<3 { #expect(bucket.take(now: 100, rate: 2, burst: 3) == nil) }
        // Empty: at 2 per second the next token is half a second away, and Retry-After says at least 1.
        #expect(bucket.take(now: 100, rate: 2, burst: 3) == 1)
        #expect(bucket.take(now: 100.49, rate: 2, burst: 3) == 1)
        #expect(bucket.take(now: 100.5, rate: 2, burst: 3) == nil)
        #expect(bucket.take(now: 100.5, rate: 2, burst: 3) == 1)
    }

    @Test(arguments: [
        // (rate, tokens short of one, expected Retry-After)
        (0.5, 1.0, 2), (0.1, 1.0, 10), (0.25, 0.5, 2), (10.0, 1.0, 1), (1.0 / 3, 1.0, 3),
    ])
    func retryAfterRoundsUpToWholeSeconds(rate: Double, short: Double, expected: Int) {
        var bucket = TokenBucket(burst: 1, now: 0)
        #expect(bucket.take(now: 0, rate: rate, burst: 1) == nil)
        // `short` tokens missing: the wait is short / rate, rounded up.
        let now = (1 - short) / rate
        #expect(bucket.take(now: now, rate: rate, burst: 1) == expected)
    }

    @Test func refillStopsAtTheBurstAndTimeNeverRunsBackward() {
        var bucket = TokenBucket(burst: 2, now: 0)
        #expect(bucket.take(now: 0, rate: 1, burst: 2) == nil)
        #expect(bucket.take(now: 1000, rate: 1, burst: 2) == nil)  // refilled to 2 (not 1001), took one
        #expect(bucket.tokens == 1)
        #expect(bucket.take(now: 999, rate: 1, burst: 2) == nil)  // an earlier `now` adds nothing
        #expect(bucket.take(now: 999, rate: 1, burst: 2) == 1)
        #expect(!bucket.isFull(now: 1000, rate: 1, burst: 2))
        #expect(bucket.isFull(now: 1002, rate: 1, burst: 2))
    }
}

@Suite struct ClientRateTableTests {
    static func key(_ address: UInt32, vhost: Int = 0) -> ClientRateTable.Key {
        .init(prefix: ClientPrefix(ipv4: address), vhost: vhost)
    }

    @Test func eachClientAndVhostHasItsOwnBucket() {
        var table = ClientRateTable()
        let limited = Self.key(0x7F00_0002)
        for _ in 0..<5 { #expect(table.admit(limited, rate: 1, burst: 5, now: 10) == nil) }
        #expect(table.admit(limited, rate: 1, burst: 5, now: 10) == 1)
        #expect(table.admit(Self.key(0x7F00_0003), rate: 1, burst: 5, now: 10) == nil)
        #expect(table.admit(Self.key(0x7F00_0002, vhost: 1), rate: 1, burst: 5, now: 10) == nil)
        #expect(table.count == 3)
        #expect(table.admit(limited, rate: 1, burst: 5, now: 11) == nil)  // one token back after a second
    }

    @Test func aScanOfManyAddressesStaysWithinCapacityAndEvictsTheLeastRecentlyUsed() {
        var table = ClientRateTable(capacity: 100)
        let regular = Self.key(1)
        // The regular client drains its bucket, then 10,000 scanning addresses each send one request.
        #expect(table.admit(regular, rate: 0.001, burst: 1, now: 0) == nil)
        #expect(table.admit(regular, rate: 0.001, burst: 1, now: 0) != nil)
        for address in 0..<10_000 {
            _ = table.admit(Self.key(0x0A00_0000 + UInt32(address)), rate: 0.001, burst: 2, now: 1)
            if address % 10 == 0 { #expect(table.admit(regular, rate: 0.001, burst: 1, now: 1) != nil) }
            #expect(table.count <= 100)
        }
        // The regular client was used all along, so it kept its (empty) bucket.
        #expect(table.admit(regular, rate: 0.001, burst: 1, now: 1) != nil)
        // The first scanning addresses were the least recently used: evicted, they start full again.
        #expect(table.admit(Self.key(0x0A00_0000), rate: 0.001, burst: 2, now: 1) == nil)
    }

    @Test func bucketsThatRefilledAreForgottenSoTheTableShrinks() {
        var table = ClientRateTable(capacity: 1000)
        for address in 0..<500 { _ = table.admit(Self.key(UInt32(address)), rate: 10, burst: 2, now: 0) }
        #expect(table.count == 500)
        // A second later every bucket is full again; lookups (two clients taking turns) forget them one by one.
        for i in 0..<600 { _ = table.admit(Self.key(9998 + UInt32(i % 2)), rate: 10, burst: 2, now: 1) }
        #expect(table.count == 2)
        // A forgotten client starts with a full burst, the same as if it had been kept.
        #expect(table.admit(Self.key(7), rate: 10, burst: 2, now: 1) == nil)
        #expect(table.admit(Self.key(7), rate: 10, burst: 2, now: 1) == nil)
        #expect(table.admit(Self.key(7), rate: 10, burst: 2, now: 1) == 1)
    }

    @Test func refusalsAreLoggedOncePerIntervalPerBucket() {
        var table = ClientRateTable()
        #expect(table.admit(Self.key(1), rate: 1, burst: 1, now: 0) == nil)
        #expect(table.admit(Self.key(1), rate: 1, burst: 1, now: 0) != nil)
        var log = table.shouldLogLastRefusal(now: 0, interval: 10)
        #expect(log)
        #expect(table.admit(Self.key(1), rate: 1, burst: 1, now: 0.5) != nil)
        log = table.shouldLogLastRefusal(now: 0.5, interval: 10)
        #expect(!log)
        // Another client's refusal is its own.
        #expect(table.admit(Self.key(2), rate: 1, burst: 1, now: 0.6) == nil)
        #expect(table.admit(Self.key(2), rate: 1, burst: 1, now: 0.6) != nil)
        log = table.shouldLogLastRefusal(now: 0.6, interval: 10)
        #expect(log)
        #expect(table.admit(Self.key(1), rate: 0.01, burst: 1, now: 10) != nil)
        log = table.shouldLogLastRefusal(now: 10, interval: 10)
        #expect(log)
    }

    @Test func capacityOneStillWorks() {
        var table = ClientRateTable(capacity: 1)
        #expect(table.admit(Self.key(1), rate: 1, burst: 1, now: 0) == nil)
        #expect(table.admit(Self.key(2), rate: 1, burst: 1, now: 0) == nil)
        #expect(table.count == 1)
        #expect(table.admit(Self.key(2), rate: 1, burst: 1, now: 0) == 1)
    }
}

@Suite struct ClientPrefixTests {
    static func ipv6(_ bytes: [UInt8]) -> ClientPrefix { bytes.withUnsafeBytes { ClientPrefix(ipv6: $0) } }

    @Test func ipv6IsKeyedByItsSlash64() {
        let a = Self.ipv6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1] + [0, 0, 0, 0, 0, 0, 0, 1])
        let sameSubnet = Self.ipv6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1] + [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        let otherSubnet = Self.ipv6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2] + [0, 0, 0, 0, 0, 0, 0, 1])
        #expect(a == sameSubnet)
        #expect(a != otherSubnet)
        #expect(a.isIPv6)
    }

    @Test func ipv4MappedAddressesAreTheirIPv4Address() {
        let mapped = Self.ipv6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 2])
        #expect(mapped == ClientPrefix(ipv4: 0x7F00_0002))
        #expect(!mapped.isIPv6)
        // An IPv6 /64 whose bits equal an IPv4 address is still another client.
        #expect(Self.ipv6([0, 0, 0, 0, 0x7F, 0, 0, 2] + [UInt8](repeating: 0, count: 8)) != ClientPrefix(ipv4: 0x7F00_0002))
    }
}
