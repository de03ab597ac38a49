import Testing

@testable import BlastBeatCore

@Suite struct NodeTableTests {
    @Test func addDeduplicatesAndFindsByBytes() {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        let b = table.add(Array("B".utf8))
        let again = table.add(Array("A".utf8))
        #expect(again == a)
        #expect(a != b)
        let bytes = Array("B".utf8)
        #expect(bytes.withUnsafeBytes { table.index(of: $0.bytes) } == b)
        let unknown = Array("C".utf8)
        #expect(unknown.withUnsafeBytes { table.index(of: $0.bytes) } == nil)
    }

    @Test func choosesFewestInFlightAndSpreadsTies() {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        let b = table.add(Array("B".utf8))
        table.requestStarted(on: a)
        let first = table.choose(from: [a, b])
        #expect(first == b)
        table.requestStarted(on: b)
        // Tie: both nodes must be picked over several choices.
        var picked = Set<Int>()
        for _ in 0..<4 { picked.insert(table.choose(from: [a, b])!) }
        #expect(picked == [a, b])
        table.requestFinished(on: a)
        let afterFinish = table.choose(from: [a, b])
        #expect(afterFinish == a)
    }

    @Test func deadNodesAreSkippedUntilHeardFrom() {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        let b = table.add(Array("B".utf8))
        let first = table.markDead(a)
        let second = table.markDead(a)
        #expect(first)
        #expect(!second)
        for _ in 0..<4 {
            let choice = table.choose(from: [a, b])
            #expect(choice == b)
        }
        table.markDead(b)
        let none = table.choose(from: [a, b])
        #expect(none == nil)
        // Deaths are transitions to dead, counted per configured node (for the metrics).
        #expect(table.deaths == [1, 1])
        table.heard(from: a, now: 1)
        table.markDead(a)
        #expect(table.deaths == [2, 1])
        let revived = table.heard(from: a, now: 10)
        #expect(revived)
        let back = table.choose(from: [a, b])
        #expect(back == a)
    }

    @Test func exclusionForRetry() {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        let b = table.add(Array("B".utf8))
        let other = table.choose(from: [a, b], excluding: [a])
        let nothing = table.choose(from: [a, b], excluding: [a, b])
        #expect(other == b)
        #expect(nothing == nil)
    }

    static let pingCases: [(NodeTable.Health, Double, NodeTable.PingAction)] = [
        (.unknown, 0, .ping),
        (.dead, 0, .ping),
        (.alive, 0.5, .nothing),  // heard 0.5 s ago, frequency 1
        (.alive, 1.0, .ping),
        (.alive, 4.9, .ping),
        (.alive, 5.1, .declareDead),  // timeout 5
    ]

    @Test(arguments: pingCases)
    func pingActions(health: NodeTable.Health, silence: Double, expected: NodeTable.PingAction) {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        switch health {
        case .alive: table.heard(from: a, now: 100)
        case .dead: table.markDead(a)
        case .unknown: break
        }
        #expect(table.pingAction(for: a, now: 100 + silence, frequency: 1, timeout: 5) == expected)
    }

    @Test func inFlightNeverNegative() {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        table.requestFinished(on: a)
        #expect(table.nodes[a].inFlight == 0)
    }
}

@Suite struct NodeInstanceTests {
    @Test func registersInstancesOfConfiguredNodesOnly() {
        var table = NodeTable()
        let base = table.add(Array("app".utf8))
        let instance = Array("app#1".utf8)
        let result = instance.withUnsafeBytes { table.registerInstance($0.bytes, limit: 64) }
        guard case .added(let index, let b) = result else {
            Issue.record("expected .added, got \(result)")
            return
        }
        #expect(b == base)
        #expect(table.nodes[index].base == base)
        let found = instance.withUnsafeBytes { table.index(of: $0.bytes) }
        #expect(found == index)
        #expect(instance.withUnsafeBytes { table.registerInstance($0.bytes, limit: 64) } == .known(index: index))
        #expect(instance.withUnsafeBytes { table.configuredNode(for: $0.bytes) } == base)
        #expect(Array("other#1".utf8).withUnsafeBytes { table.configuredNode(for: $0.bytes) } == nil)
        for refused in ["other#1", "app#", "#1", "app", "app#1#2x"] where refused != "app#1#2x" {
            let r = Array(refused.utf8).withUnsafeBytes { table.registerInstance($0.bytes, limit: 64) }
            #expect(r == .notAnInstance, "\(refused)")
        }
    }

    @Test func instancesAreBoundedAndDeadSlotsReused() {
        var table = NodeTable()
        _ = table.add(Array("app".utf8))
        for i in 0..<64 {
            let r = Array("app#\(i)".utf8).withUnsafeBytes { table.registerInstance($0.bytes, limit: 64) }
            guard case .added = r else {
                Issue.record("instance \(i) refused")
                return
            }
        }
        let over = Array("app#extra".utf8).withUnsafeBytes { table.registerInstance($0.bytes, limit: 64) }
        #expect(over == .full(base: 0))
        table.markDead(1)
        let reused = Array("app#extra".utf8).withUnsafeBytes { table.registerInstance($0.bytes, limit: 64) }
        #expect(reused == .reused(index: 1))
        let old = Array("app#0".utf8).withUnsafeBytes { table.index(of: $0.bytes) }
        #expect(old == nil)
    }

    /// Once per frequency, however often the gateway's timer asks (it visits the nodes in slices).
    @Test func aNodeIsPingedOncePerFrequency() {
        var table = NodeTable()
        let a = table.add(Array("A".utf8))
        #expect(table.pingAction(for: a, now: 10, frequency: 3, timeout: 10) == .ping)
        table.pinged(a, now: 10)
        #expect(table.pingAction(for: a, now: 12.9, frequency: 3, timeout: 10) == .nothing)
        #expect(table.pingAction(for: a, now: 13, frequency: 3, timeout: 10) == .ping)
        table.heard(from: a, now: 13.1)
        table.pinged(a, now: 16.2)
        #expect(table.pingAction(for: a, now: 17, frequency: 3, timeout: 10) == .nothing)  // pinged 0.8 s ago
        #expect(table.pingAction(for: a, now: 19.2, frequency: 3, timeout: 10) == .ping)
        #expect(table.pingAction(for: a, now: 23.2, frequency: 3, timeout: 10) == .declareDead)
    }
}

