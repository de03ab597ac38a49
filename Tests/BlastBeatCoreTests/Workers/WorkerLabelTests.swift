import BlastBeatCore
import Testing

/// Where a worker puts a backend connection by its `X-BlastBeat-Worker` label (README.md, "Worker processes").
struct WorkerLabelTests {
    @Test(arguments: [
        // label, this worker, workers, placement
        (WorkerLabel.absent, 0, 2, WorkerLabel.Placement.stay),
        (.index(0), 0, 2, .stay),
        (.index(1), 1, 2, .stay),
        (.index(1), 0, 2, .handOver(to: 1)),
        (.index(0), 3, 4, .handOver(to: 0)),
        (.index(2), 0, 2, .stayMislabelled),
        (.index(1), 0, 1, .stayMislabelled),
        (.index(0), 0, 1, .stay),
        (.malformed(Array("x".utf8)), 1, 2, .stayMislabelled),
    ])
    func placement(_ row: (WorkerLabel, Int, Int, WorkerLabel.Placement)) {
        #expect(row.0.placement(at: row.1, of: row.2) == row.3)
    }

    @Test func parsesOnlyShortDecimalNumbers() {
        func parse(_ text: String) -> WorkerLabel { Array(text.utf8).withUnsafeBytes { WorkerLabel.parse($0) } }
        #expect(parse("7") == .index(7) && parse("012") == .index(12))
        #expect(parse("1234") == .malformed(Array("1234".utf8)) && parse("") == .malformed([]))
        #expect(parse(String(repeating: "y", count: 100)) == .malformed(Array(repeating: 0x79, count: 32)))
        #expect(parse("\u{1}").logText == "\"\\x01\"")
    }
}
