/// The invariant checks behind the libFuzzer drivers in `Tests/Fuzz/` and the regression replay in
/// `Tests/FuzzRegressionTests/` (see `Tests/Fuzz/README.md`).
///
/// Each check takes one input and traps (`fatalError`) when an invariant fails, so libFuzzer reports
/// the input and `swift test` crashes on a regression. Inputs the code under test refuses are fine:
/// refusing is what it should do; only a crash, a broken limit or a round trip that is not the
/// identity is a finding.
///
/// This is the only target with `public` API outside BlastBeatBackend: `package` access does not cross
/// packages, and the drivers live in the separate package `Tests/Fuzz/`, so they reach the parsers
/// through these functions. Nothing in the gateway or the SDK depends on this target.
public enum FuzzChecks {
    /// Every check by driver name: the name of its executable in `Tests/Fuzz/`, of its corpus
    /// folder `Tests/Fuzz/Corpus/<name>/` and of its crash folder `Tests/Fuzz/FailCases/<name>/`.
    public static let all: [(name: String, check: @Sendable (UnsafeRawBufferPointer) -> Void)] = [
        ("http-request-head", httpRequestHead),
        ("http-body", httpBody),
        ("http-response-head", httpResponseHead),
        ("websocket-frames", webSocketFrames),
        ("websocket-messages", webSocketMessages),
        ("inflate", inflate),
        ("uwsgi", uwsgi),
        ("backend-message", backendMessage),
        ("zmtp", zmtp),
        ("curve-server", curveServer),
        ("curve-keys", curveKeys),
        ("config", config),
        ("file-bundle", fileBundle),
        ("worker-message", workerMessage),
        ("worker-reports", workerReports),
        ("http2-server", http2Server),
    ]

    /// The check named `name`; nil for an unknown name.
    public static func check(named name: String) -> (@Sendable (UnsafeRawBufferPointer) -> Void)? {
        all.first { $0.name == name }?.check
    }
}

/// Traps with `message` when `condition` is false; the fuzzers' assertion (kept in release builds).
@inline(__always)
func invariant(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { fatalError("fuzz invariant: \(message())", file: file, line: line) }
}

/// Reads a structured input front to back; every read succeeds (running out yields zeros / empty),
/// so any byte string is a valid input and the fuzzer never wastes runs on framing.
struct FuzzReader {
    private let bytes: UnsafeRawBufferPointer
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { position >= bytes.count }
    var remainingCount: Int { max(0, bytes.count - position) }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func uint16() -> Int { Int(byte()) << 8 | Int(byte()) }

    /// Up to `count` bytes (fewer at the end).
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + max(0, count))
        defer { position = end }
        return position < end ? Array(bytes[position..<end]) : []
    }

    /// Everything not read yet.
    mutating func rest() -> [UInt8] { take(remainingCount) }
}

/// Cut points for feeding `count` bytes in pieces: every byte when short, else pieces whose sizes
/// come from `seed` (deterministic, so a crash reproduces).
func splitPoints(count: Int, seed: UInt64) -> [Int] {
    if count <= 512 { return count == 0 ? [] : Array(1...count) }
    var state = seed | 1
    var points: [Int] = []
    var at = 0
    while at < count {
        // xorshift64
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        at = min(count, at + 1 + Int(state % 97))
        points.append(at)
    }
    return points
}

/// FNV-1a of the input: a seed for `splitPoints` that depends on the whole input.
func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return hash
}
