import BlastBeatCore
import Testing

/// What a worker sends its parent: request bytes, serving, and a bounded start failure, in pieces or together.
struct WorkerReportsTests {
    @Test func singleBytesAndAFailureInOrder() {
        var reader = WorkerReports()
        let failure = WorkerReports.encodeFailure("c.ini: error-log: open(/x): No such file or directory")
        let bytes = Array("RSU".utf8) + failure + Array("S".utf8)
        let reports = reader.feed(bytes)
        #expect(
            reports == [
                .reload, .serving, .upgrade, .startFailed(Array("c.ini: error-log: open(/x): No such file or directory".utf8)),
                .serving,
            ])
    }

    @Test func aFailureSplitAcrossReadsArrivesWhole() {
        var reader = WorkerReports()
        let failure = WorkerReports.encodeFailure("bad certificate")
        var reports: [WorkerReports.Report] = []
        for byte in failure { reports += reader.feed([byte]) }
        #expect(reports == [.startFailed(Array("bad certificate".utf8))])
    }

    @Test func unknownBytesAreSkippedAndAnOverlongFailureIsDropped() {
        var reader = WorkerReports()
        // F with a length past the limit: not something a worker sends; the bytes after it read as single bytes.
        let overlong: [UInt8] = [UInt8(ascii: "F"), 0xFF, 0xFF]
        do {
            let got = reader.feed(Array("xyz".utf8) + overlong + Array("S".utf8))
            #expect(got == [.serving])
        }
        do {
            let got = reader.feed(WorkerReports.encodeFailure(""))
            #expect(got == [.startFailed([])])
        }
    }

    @Test func theEncoderCutsTheTextAtTheLimit() {
        var reader = WorkerReports()
        let long = String(repeating: "a", count: WorkerReports.maxFailureBytes + 100)
        do {
            let got = reader.feed(WorkerReports.encodeFailure(long))
            #expect(got == [.startFailed(Array(repeating: UInt8(ascii: "a"), count: WorkerReports.maxFailureBytes))])
        }
    }
}
