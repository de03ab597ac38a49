import BlastBeatCore

extension FuzzChecks {
    /// `WorkerReports.feed`, the privileged parent's reader of what a serving process sends on its channel
    /// (Sources/BlastBeatCore/Workers/WorkerReports.swift, PrivilegedParent.swift in BlastBeatServer): the
    /// only bytes the root parent takes from a process that may be compromised. Input: the first byte picks how
    /// the rest is cut into reads (whole, byte by byte, or pieces of 1–16 bytes); the rest is the stream. The
    /// reports are the same however the stream is cut, never more than its bytes, a failure text is at most
    /// `maxFailureBytes`, and each failure encoded again reads back the same.
    @Sendable public static func workerReports(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first else { return }
        let stream = Array(data.dropFirst())
        var whole = WorkerReports()
        let expected = whole.feed(stream)
        invariant(expected.count <= stream.count, "\(expected.count) reports from \(stream.count) bytes")
        var pieces = WorkerReports()
        var got: [WorkerReports.Report] = []
        var at = 0
        var step = UInt(first)
        while at < stream.count {
            let size = first == 0 ? 1 : 1 + Int(step % 16)
            step = step &* 31 &+ 7
            let end = min(stream.count, at + size)
            got += pieces.feed(stream[at..<end])
            at = end
        }
        invariant(got == expected, "the reports depend on how the stream was cut into reads")
        for report in expected {
            guard case .startFailed(let text) = report else { continue }
            invariant(text.count <= WorkerReports.maxFailureBytes, "a failure text of \(text.count) bytes")
            var again = WorkerReports()
            let encoded = [UInt8(ascii: "F"), UInt8(text.count & 0xFF), UInt8(text.count >> 8)] + text
            invariant(again.feed(encoded) == [report], "a failure encoded again reads back otherwise")
        }
    }
}
