/// The worker process a backend connection asks for, and where the worker that accepted it puts it
/// (docs/PROTOCOL.md, "Worker processes"; README.md, "Worker processes").
///
/// With several workers every backend connection lands in whichever worker accepts it first. A backend that
/// opens one connection per worker labels each with the ZMTP metadata property `X-BlastBeat-Worker` (in its
/// READY, or in CURVE's INITIATE metadata): the decimal index of the worker the connection is for. The
/// gateway's own READY says how many workers there are (`X-BlastBeat-Workers`), so the backend knows how many
/// connections to open.
package enum WorkerLabel: Equatable, Sendable {
    /// No `X-BlastBeat-Worker` property: a backend that knows nothing of workers.
    case absent
    case index(Int)
    /// Not 1 to 3 decimal digits (the value, cut to `maxKept` bytes, for the log line).
    case malformed([UInt8])

    /// The property a backend sets (libzmq: `ZMQ_METADATA` "X-BlastBeat-Worker:K").
    package static let propertyName = "X-BlastBeat-Worker"
    /// The property of the gateway's READY: how many workers serve.
    package static let countPropertyName = "X-BlastBeat-Workers"
    static let maxKept = 32

    /// Reads a property value: decimal ASCII digits only (no sign, no spaces), at most 3 of them (the
    /// gateway has at most 64 workers).
    package static func parse(_ value: UnsafeRawBufferPointer) -> WorkerLabel {
        guard !value.isEmpty, value.count <= 3, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return .malformed(Array(value.prefix(maxKept)))
        }
        return .index(value.reduce(0) { $0 * 10 + Int($1 - 0x30) })
    }

    /// Where the worker that finished a connection's handshake puts it.
    package enum Placement: Equatable, Sendable {
        /// Kept: no label, or this worker's own index.
        case stay
        /// Handed over to that worker (another one), which adopts it.
        case handOver(to: Int)
        /// Kept, and logged: the label names no worker (out of range, or not a number).
        case stayMislabelled
    }

    /// Where a connection with this label goes when it arrives at worker `index` of `count`. `home`: where an
    /// unlabelled one goes (`home(of:workers:)`, or `index` while that worker is not running).
    package func placement(at index: Int, of count: Int, home: Int) -> Placement {
        switch self {
        case .absent: home == index || home < 0 || home >= count ? .stay : .handOver(to: home)
        case .index(let k) where k == index: .stay
        case .index(let k) where k >= 0 && k < count: .handOver(to: k)
        case .index, .malformed: .stayMislabelled
        }
    }

    /// The worker every unlabelled connection claiming `identity` is placed at: the same for all of them, so
    /// that two connections claiming one identity (two copies of one backend, a restarted process beside its
    /// predecessor's hung connection, another key) meet in one worker, which settles them as a lone gateway
    /// does (docs/PROTOCOL.md, "Sessions and ownership"). Landing wherever the kernel put them, each worker
    /// would take its own as the node's. FNV-1a of the identity (the same in every process, unlike Swift's
    /// seeded hashing), so raw backends spread over the workers by name.
    package static func home(of identity: UnsafeRawBufferPointer, workers count: Int) -> Int {
        guard count > 1 else { return 0 }
        var hash: UInt32 = 2_166_136_261
        for byte in identity { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return Int(hash % UInt32(count))
    }

    /// The label as it was sent, for a log line.
    package var logText: String {
        switch self {
        case .absent: "none"
        case .index(let k): "\(k)"
        case .malformed(let value): LogText.quoted(value)
        }
    }
}
