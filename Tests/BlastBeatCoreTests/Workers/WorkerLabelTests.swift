import BlastBeatCore
import Testing

/// Where a worker puts a backend connection by its `X-BlastBeat-Worker` label (README.md, "Worker processes").
struct WorkerLabelTests {
    @Test(arguments: [
        // label, this worker, workers, home of an unlabelled connection, placement
        (WorkerLabel.absent, 0, 2, 0, WorkerLabel.Placement.stay),
        (.absent, 0, 2, 1, .handOver(to: 1)),
        (.absent, 1, 2, 1, .stay),
        (.absent, 0, 1, 0, .stay),
        (.index(0), 0, 2, 1, .stay),
        (.index(1), 1, 2, 0, .stay),
        (.index(1), 0, 2, 0, .handOver(to: 1)),
        (.index(0), 3, 4, 3, .handOver(to: 0)),
        (.index(2), 0, 2, 0, .stayMislabelled),
        (.index(1), 0, 1, 0, .stayMislabelled),
        (.index(0), 0, 1, 0, .stay),
        (.malformed(Array("x".utf8)), 1, 2, 0, .stayMislabelled),
    ])
    func placement(_ row: (WorkerLabel, Int, Int, Int, WorkerLabel.Placement)) {
        #expect(row.0.placement(at: row.1, of: row.2, home: row.3) == row.4)
    }

    @Test func unlabelledConnectionsOfOneIdentityShareAHomeAndIdentitiesSpread() {
        func home(_ identity: String, _ workers: Int) -> Int {
            Array(identity.utf8).withUnsafeBytes { WorkerLabel.home(of: $0, workers: workers) }
        }
        // FNV-1a, the same in every process: fixed values, not only self-consistent ones.
        #expect(home("beta", 2) == 1 && home("beta", 3) == 2 && home("NODE1", 2) == 0 && home("beta", 1) == 0)
        #expect(home("", 2) == 1)
        for workers in [2, 3, 4, 16] {
            let homes = (0..<64).map { home("node\($0)", workers) }
            #expect(homes.allSatisfy { $0 >= 0 && $0 < workers })
            #expect(Set(homes).count == workers, "64 identities reach every one of \(workers) workers")
        }
    }

    @Test func parsesOnlyShortDecimalNumbers() {
        func parse(_ text: String) -> WorkerLabel { Array(text.utf8).withUnsafeBytes { WorkerLabel.parse($0) } }
        #expect(parse("7") == .index(7) && parse("012") == .index(12))
        #expect(parse("1234") == .malformed(Array("1234".utf8)) && parse("") == .malformed([]))
        #expect(parse(String(repeating: "y", count: 100)) == .malformed(Array(repeating: 0x79, count: 32)))
        #expect(parse("\u{1}").logText == "\"\\x01\"")
    }
}
