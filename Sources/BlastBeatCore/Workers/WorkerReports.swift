/// What a serving process tells the privileged parent over its channel (PrivilegedChannel.swift in
/// BlastBeatSystem; README.md, "Worker processes"): single bytes `R` (reload, please), `U` (upgrade, please),
/// `S` (serving: started, or a reload applied), and `F`, a two-byte little-endian length and at most
/// `maxFailureBytes` of text: why the process could not start (it exits next).
///
/// A serving process may be compromised through its clients, so the parent trusts none of it: unknown bytes
/// are skipped, the text is bounded and escaped before it is printed, and the parent takes a failure only
/// from a worker that has not reported serving yet (WorkerLifecycle), one that has served no client. The reader
/// is fuzzed (WorkerReportsCheck.swift).
package struct WorkerReports {
    package enum Report: Equatable, Sendable {
        case reload
        case upgrade
        case serving
        /// The start failure's text, as sent (escape it before printing).
        case startFailed([UInt8])
    }

    package static let reload = UInt8(ascii: "R")
    package static let upgrade = UInt8(ascii: "U")
    package static let serving = UInt8(ascii: "S")
    package static let failure = UInt8(ascii: "F")
    /// The longest failure text (a startup error is one line naming a file and a line of the configuration).
    package static let maxFailureBytes = 4096

    /// An incomplete failure report (never more than 3 + `maxFailureBytes` bytes).
    private var pending: [UInt8] = []

    package init() {}

    /// The encoded failure report for `text`, cut to `maxFailureBytes`.
    package static func encodeFailure(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8.prefix(maxFailureBytes))
        return [failure, UInt8(bytes.count & 0xFF), UInt8(bytes.count >> 8)] + bytes
    }

    /// The complete reports in `bytes` after what came before, in order.
    package mutating func feed(_ bytes: some Collection<UInt8>) -> [Report] {
        var reports: [Report] = []
        for byte in bytes {
            if !pending.isEmpty {
                pending.append(byte)
                if pending.count < 3 { continue }
                let length = Int(pending[1]) | Int(pending[2]) << 8
                if length > Self.maxFailureBytes {
                    pending.removeAll()  // not a report this side sends: dropped
                    continue
                }
                if pending.count == 3 + length {
                    reports.append(.startFailed(Array(pending[3...])))
                    pending.removeAll()
                }
                continue
            }
            switch byte {
            case Self.reload: reports.append(.reload)
            case Self.upgrade: reports.append(.upgrade)
            case Self.serving: reports.append(.serving)
            case Self.failure: pending.append(byte)
            default: break
            }
        }
        return reports
    }
}
