import BlastBeatFuzzChecks
import Foundation
import Testing

/// Replays every input under `Tests/Fuzz/FailCases/<driver>/` through the check that driver runs: each
/// file is a crash a fuzzer once found, so a regression traps here as it did under libFuzzer. The fuzzers
/// themselves run with `make fuzz` / `make fuzz-replay` (see `Tests/Fuzz/README.md`).
@Suite struct FuzzRegressionTests {
    static let failCases = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/FailCases")

    @Test(arguments: FuzzChecks.all.map(\.name))
    func failCasesStayFixed(driver: String) throws {
        let check = try #require(FuzzChecks.check(named: driver))
        let folder = Self.failCases.appendingPathComponent(driver)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for file in files.sorted() where !file.hasPrefix(".") {
            let data = try Data(contentsOf: folder.appendingPathComponent(file))
            data.withUnsafeBytes { check($0) }
        }
    }

    /// The seeds of each driver's corpus (`Tests/Fuzz/Corpus/<driver>/seed-*`, written by make-seeds.py) pass
    /// its check too: a seed for a new message kind (a worker mesh handover, say) is replayed with every
    /// `swift test`, not only under libFuzzer.
    @Test(arguments: FuzzChecks.all.map(\.name))
    func seedsPassTheirChecks(driver: String) throws {
        let check = try #require(FuzzChecks.check(named: driver))
        let folder = Self.failCases.deletingLastPathComponent().appendingPathComponent("Corpus/\(driver)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for file in files.sorted() where file.hasPrefix("seed-") {
            let data = try Data(contentsOf: folder.appendingPathComponent(file))
            data.withUnsafeBytes { check($0) }
        }
    }

    /// Every FailCases folder belongs to a driver (a renamed driver must take its cases along).
    @Test func failCaseFoldersNameDrivers() throws {
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: Self.failCases.path)) ?? []
        for folder in folders where !folder.hasPrefix(".") {
            #expect(FuzzChecks.check(named: folder) != nil, "Tests/Fuzz/FailCases/\(folder) names no driver")
        }
    }
}
