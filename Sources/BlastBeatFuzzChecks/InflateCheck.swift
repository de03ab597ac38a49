import BlastBeatCore
import BlastBeatSystem

extension FuzzChecks {
    /// `InflateStream` (permessage-deflate). Input: a byte for the window (8 + low 3 bits) and
    /// no-context-takeover (bit 3), a byte for the per-message limit (64 × (it + 1)), then messages as
    /// `length (2 bytes) · compressed payload`, until the input ends.
    /// - a message's output never exceeds the limit (and holds at most limit + 1 bytes when it is refused);
    /// - the peer's bytes fail only as `invalidData` or `outputLimitExceeded`, never as a zlib misuse (`failed`);
    /// - each message fed in parts of random sizes gives the same output and the same failure as fed in
    ///   64-byte parts;
    /// - the messages that inflated, deflated again by `DeflateStream` and inflated, are the identity.
    @Sendable public static func inflate(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let settings = reader.byte()
        let windowBits = 8 + Int(settings & 7)
        let noContextTakeover = settings & 8 != 0
        let limit = 64 * (Int(reader.byte()) + 1)
        var messages: [[UInt8]] = []
        while !reader.isAtEnd && messages.count < 64 {
            messages.append(reader.take(reader.uint16()))
        }

        guard let whole = try? InflateStream(windowBits: windowBits, noContextTakeover: noContextTakeover),
            let parts = try? InflateStream(windowBits: windowBits, noContextTakeover: noContextTakeover)
        else { fatalError("fuzz invariant: inflateInit2 failed") }
        var inflated: [[UInt8]] = []
        for message in messages {
            // Whole: the message in one call, as the gateway inflates a complete frame (one call over many
            // back-to-back final blocks is what overflowed `room`: FailCases/inflate). Parts: random sizes.
            let maxCall = 64
            var output: [UInt8] = []
            let wholeResult = message.withUnsafeBytes { bytes in
                Result { () throws(ZlibError) in try whole.decompressMessage(bytes, into: &output, limit: limit) }
            }
            var partsOutput: [UInt8] = []
            let partsResult = message.withUnsafeBytes { bytes in
                Result { () throws(ZlibError) in
                    var at = 0
                    var state = fnv1a(bytes) | 1
                    while at < bytes.count {
                        state = state &* 6_364_136_223_846_793_005 &+ 1
                        let end = min(bytes.count, at + 1 + Int((state >> 33) % UInt64(maxCall)))
                        try parts.decompress(UnsafeRawBufferPointer(rebasing: bytes[at..<end]), into: &partsOutput, limit: limit)
                        at = end
                    }
                    try parts.finishMessage(into: &partsOutput, limit: limit)
                }
            }
            invariant(output.count <= limit + 1, "message inflated to \(output.count) bytes, limit \(limit)")
            switch (wholeResult, partsResult) {
            case (.success, .success):
                invariant(output == partsOutput, "message inflated differently in two parts")
                invariant(output.count <= limit, "accepted message of \(output.count) bytes > limit \(limit)")
                inflated.append(output)
            case (.failure(let error), .failure(let partsError)):
                checkPeerError(error)
                checkPeerError(partsError)
                if case .outputLimitExceeded = error {
                    invariant(output.count == limit + 1, "refused message left \(output.count) bytes, limit \(limit)")
                }
                invariant(
                    sameKind(error, partsError), "whole failed with \(error), in two parts with \(partsError)")
            default:
                // Where the output limit strikes may depend on how far inflate got; both must be peer errors.
                if case .failure(let error) = wholeResult { checkPeerError(error) }
                if case .failure(let error) = partsResult { checkPeerError(error) }
                invariant(
                    isLimit(wholeResult) || isLimit(partsResult),
                    "whole gave \(wholeResult), in two parts \(partsResult)")
            }
            if case .failure = wholeResult { break }
            if case .failure = partsResult { break }
        }

        // Round trip through our own compressor.
        guard let deflate = try? DeflateStream(windowBits: max(9, windowBits), noContextTakeover: noContextTakeover),
            let inflate = try? InflateStream(windowBits: 15, noContextTakeover: noContextTakeover)
        else { fatalError("fuzz invariant: deflateInit2 failed") }
        for message in inflated {
            var compressed: [UInt8] = []
            var output: [UInt8] = []
            let deflated = message.withUnsafeBytes { bytes in
                Result { () throws(ZlibError) in try deflate.compressMessage(bytes, into: &compressed) }
            }
            let inflatedAgain = compressed.withUnsafeBytes { bytes in
                Result { () throws(ZlibError) in try inflate.decompressMessage(bytes, into: &output, limit: limit) }
            }
            if case .failure(let error) = deflated.flatMap({ inflatedAgain }) {
                fatalError("fuzz invariant: round trip of an inflated message failed: \(error)")
            }
            invariant(output == message, "deflate + inflate is not the identity")
        }
    }

    private static func checkPeerError(_ error: ZlibError) {
        switch error {
        case .invalidData, .outputLimitExceeded: return
        case .initializationFailed, .failed: fatalError("fuzz invariant: the peer's bytes caused \(error)")
        }
    }

    private static func sameKind(_ a: ZlibError, _ b: ZlibError) -> Bool {
        switch (a, b) {
        case (.invalidData, .invalidData), (.outputLimitExceeded, _), (_, .outputLimitExceeded): return true
        default: return false
        }
    }

    private static func isLimit(_ result: Result<Void, ZlibError>) -> Bool {
        if case .failure(.outputLimitExceeded) = result { return true }
        return false
    }
}
