import BlastBeatCore
import BlastBeatSystem
import Testing

@Suite struct DeflateTests {
    // MARK: RFC 7692 §7.2.3 examples

    @Test func rfc7692CompressHello() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        #expect(try compress(deflater, "Hello") == bytes("f2 48 cd c9 c9 07 00"))
        // §7.2.3.2: the second "Hello" refers back to the first through the shared window.
        #expect(try compress(deflater, "Hello") == bytes("f2 00 11 00 00"))
    }

    @Test func rfc7692CompressHelloWithoutContextTakeover() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: true)
        #expect(try compress(deflater, "Hello") == bytes("f2 48 cd c9 c9 07 00"))
        #expect(try compress(deflater, "Hello") == bytes("f2 48 cd c9 c9 07 00"))
    }

    struct InflateCase: Sendable, CustomTestStringConvertible {
        var name: String
        var messages: [[UInt8]]
        var expected: [String]
        var testDescription: String { self.name }
    }

    static let inflateCases: [InflateCase] = [
        InflateCase(
            name: "7.2.3.1 one compressed block",
            messages: [bytes("f2 48 cd c9 c9 07 00")],
            expected: ["Hello"]
        ),
        InflateCase(
            name: "7.2.3.2 sharing the LZ77 window",
            messages: [bytes("f2 48 cd c9 c9 07 00"), bytes("f2 00 11 00 00")],
            expected: ["Hello", "Hello"]
        ),
        InflateCase(
            name: "7.2.3.3 stored block",
            messages: [bytes("00 05 00 fa ff 48 65 6c 6c 6f 00")],
            expected: ["Hello"]
        ),
        InflateCase(
            name: "7.2.3.4 BFINAL set, then another message",
            messages: [bytes("f3 48 cd c9 c9 07 00 00"), bytes("f2 48 cd c9 c9 07 00")],
            expected: ["Hello", "Hello"]
        ),
        InflateCase(
            name: "7.2.3.5 two DEFLATE blocks",
            messages: [bytes("f2 48 05 00 00 00 ff ff ca c9 c9 07 00")],
            expected: ["Hello"]
        ),
        InflateCase(name: "7.2.3.6 empty message", messages: [bytes("00")], expected: [""]),
        InflateCase(name: "empty message with no payload at all", messages: [[]], expected: [""]),
    ]

    @Test(arguments: inflateCases, [0, 1])
    func rfc7692Inflate(_ row: InflateCase, chunkSize: Int) throws {
        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        var results: [String] = []
        for message in row.messages {
            var output: [UInt8] = []
            if chunkSize == 0 {
                try message.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 1000) }
            } else {
                for byte in message {
                    try [byte].withUnsafeBytes { try inflater.decompress($0, into: &output, limit: 1000) }
                }
                try inflater.finishMessage(into: &output, limit: 1000)
            }
            results.append(String(decoding: output, as: UTF8.self))
        }
        #expect(results == row.expected)
    }

    @Test func emptyMessageCompressesToOneZeroByte() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        #expect(try compress(deflater, "") == [0x00])
        #expect(try compress(deflater, "") == [0x00])
        #expect(try compress(deflater, "Hello") == bytes("f2 48 cd c9 c9 07 00"))
        #expect(try compress(deflater, "") == [0x00])
    }

    // MARK: Round trips

    struct RoundTripCase: Sendable, CustomTestStringConvertible {
        var deflateBits: Int
        var inflateBits: Int
        var serverNoContext: Bool
        var clientNoContext: Bool
        var testDescription: String {
            "deflate \(self.deflateBits) / inflate \(self.inflateBits), no context: \(self.serverNoContext)/\(self.clientNoContext)"
        }
    }

    static let roundTripCases: [RoundTripCase] = [
        RoundTripCase(deflateBits: 15, inflateBits: 15, serverNoContext: false, clientNoContext: false),
        RoundTripCase(deflateBits: 15, inflateBits: 15, serverNoContext: true, clientNoContext: true),
        RoundTripCase(deflateBits: 12, inflateBits: 12, serverNoContext: false, clientNoContext: false),
        // The compressor resets but the decompressor keeps its window: still fine.
        RoundTripCase(deflateBits: 15, inflateBits: 15, serverNoContext: true, clientNoContext: false),
        // An agreed window of 8 is deflated with 9 (zlib refuses 8) and must inflate with 8.
        RoundTripCase(deflateBits: 9, inflateBits: 8, serverNoContext: false, clientNoContext: false),
        RoundTripCase(deflateBits: 9, inflateBits: 8, serverNoContext: true, clientNoContext: true),
        RoundTripCase(deflateBits: 10, inflateBits: 15, serverNoContext: false, clientNoContext: false),
    ]

    static let messages: [[UInt8]] = {
        var messages: [[UInt8]] = [[], Array("a".utf8), Array("Hello".utf8)]
        let text = Array(String(repeating: "The quick brown fox jumps over the lazy dog. 0123456789 ", count: 40).utf8)
        messages.append(text)
        messages.append(text)  // repeated: compresses to almost nothing with context takeover
        messages.append(pseudoRandom(count: 100_000, seed: 3))  // incompressible: output larger than input
        var varied: [UInt8] = []
        for index in 0..<20_000 {
            varied.append(contentsOf: Array("w\(index % 613)x\(index % 97) ".utf8))
        }
        messages.append(varied)  // matches at every distance
        messages.append([UInt8](repeating: 0, count: 300_000))
        return messages
    }()

    @Test(arguments: roundTripCases)
    func roundTrips(_ row: RoundTripCase) throws {
        let deflater = try DeflateStream(windowBits: row.deflateBits, noContextTakeover: row.serverNoContext)
        let inflater = try InflateStream(windowBits: row.inflateBits, noContextTakeover: row.clientNoContext)
        for (index, message) in Self.messages.enumerated() {
            var compressed: [UInt8] = [0xEE]  // appends after existing bytes
            try message.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
            #expect(compressed.first == 0xEE)
            compressed.removeFirst()
            #expect(!compressed.isEmpty)
            var output: [UInt8] = []
            try compressed.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 1 << 20) }
            #expect(output == message, "message \(index)")
        }
    }

    @Test func inflatesAFragmentedMessagePieceByPiece() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        for message in Self.messages {
            var compressed: [UInt8] = []
            try message.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
            var output: [UInt8] = []
            var offset = 0
            var piece = 1
            while offset < compressed.count {
                let end = min(offset + piece, compressed.count)
                try compressed[offset..<end].withUnsafeBytes {
                    try inflater.decompress($0, into: &output, limit: 1 << 20)
                }
                offset = end
                piece = piece * 3 + 1
            }
            try inflater.finishMessage(into: &output, limit: 1 << 20)
            #expect(output == message)
        }
    }

    @Test func parametersBuildMatchingStreams() throws {
        let header = Array("permessage-deflate; server_max_window_bits=8; client_max_window_bits=8".utf8)
        let parameters = try #require(
            header.withUnsafeBytes {
                PerMessageDeflateOffer.negotiate(headerValue: $0, configuration: PerMessageDeflateConfiguration())
            }
        )
        #expect(parameters.deflateWindowBits == 9)
        let deflater = try DeflateStream(parameters: parameters)
        // The client's side: it inflates what we send with the agreed 8-bit window.
        let clientInflater = try InflateStream(windowBits: parameters.serverMaxWindowBits, noContextTakeover: false)
        let message = Self.messages[6]
        var compressed: [UInt8] = []
        try message.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
        var output: [UInt8] = []
        try compressed.withUnsafeBytes { try clientInflater.decompressMessage($0, into: &output, limit: 1 << 20) }
        #expect(output == message)
        _ = try InflateStream(parameters: parameters)
    }

    // MARK: Limits and bad input

    @Test func zipBombStopsAtTheLimit() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false, level: 9)
        let bomb = [UInt8](repeating: 0, count: 10 << 20)
        var compressed: [UInt8] = []
        try bomb.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
        #expect(compressed.count < 20_000, "10 MiB of zeros compresses to \(compressed.count) bytes")

        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        var output: [UInt8] = []
        let error = catchZlib {
            try compressed.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 1 << 20) }
        }
        #expect(error == .outputLimitExceeded(limit: 1 << 20))
        #expect(error?.closeCode == .messageTooBig)
        #expect(output.count <= (1 << 20) + 1, "output never grows past the limit + 1")
        #expect(output.capacity < 4 << 20)
    }

    @Test(arguments: [(1000, 1000, true), (1000, 999, false), (0, 0, true), (1, 0, false)])
    func limitIsInclusive(size: Int, limit: Int, accepted: Bool) throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        let message = [UInt8](repeating: 0x61, count: size)
        var compressed: [UInt8] = []
        try message.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
        var output: [UInt8] = []
        let error = catchZlib {
            try compressed.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: limit) }
        }
        #expect((error == nil) == accepted)
        if accepted { #expect(output == message) }
    }

    @Test func limitCountsAllPiecesOfAMessageButResetsBetweenMessages() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        let message = pseudoRandom(count: 600, seed: 9)
        for _ in 0..<3 {
            var compressed: [UInt8] = []
            try message.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
            var output: [UInt8] = []
            try compressed.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 600) }
            #expect(output == message)
        }
        var compressed: [UInt8] = []
        try message.withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
        var output: [UInt8] = []
        let half = compressed.count / 2
        try compressed[..<half].withUnsafeBytes { try inflater.decompress($0, into: &output, limit: 599) }
        let error = catchZlib {
            try compressed[half...].withUnsafeBytes { try inflater.decompress($0, into: &output, limit: 599) }
            try inflater.finishMessage(into: &output, limit: 599)
        }
        #expect(error == .outputLimitExceeded(limit: 599))
    }

    /// Corrupt data, a message cut in the middle of a block, and a BFINAL block without the RFC's trailing 00.
    @Test(arguments: [
        bytes("ff ff ff ff"), bytes("f2 48 cd c9 c9 07 00 ff"), bytes("07 00 00 00"), bytes("f2 48 cd c9"),
        bytes("f3 48 cd c9 c9 07 00"),
    ])
    func corruptDataIsInvalid(_ input: [UInt8]) throws {
        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        var output: [UInt8] = []
        let error = catchZlib {
            try input.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 1000) }
        }
        guard case .invalidData = error else {
            Issue.record("expected invalidData, got \(String(describing: error))")
            return
        }
        #expect(error?.closeCode == .invalidFramePayloadData)
    }

    @Test func distanceBeyondTheAgreedWindowIsInvalid() throws {
        // The second message repeats the first, 2 KiB back in the shared window; a 9-bit (512-byte) inflater has
        // not kept that much and must refuse it.
        let block = pseudoRandom(count: 2048, seed: 11)
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        let inflater = try InflateStream(windowBits: 9, noContextTakeover: false)
        var first: [UInt8] = []
        try block.withUnsafeBytes { try deflater.compressMessage($0, into: &first) }
        var output: [UInt8] = []
        try first.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 1 << 20) }
        #expect(output == block)
        var second: [UInt8] = []
        try block.withUnsafeBytes { try deflater.compressMessage($0, into: &second) }
        #expect(second.count < 100)
        output.removeAll()
        let error = catchZlib {
            try second.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 1 << 20) }
        }
        #expect(error == .invalidData(message: "invalid distance too far back"))
    }

    @Test func emptyPayloadIsAnEmptyMessageAndLeavesTheStreamAlone() throws {
        let deflater = try DeflateStream(windowBits: 15, noContextTakeover: false)
        let inflater = try InflateStream(windowBits: 15, noContextTakeover: false)
        for text in ["Hello", "", "Hello", "", "", "world"] {
            var compressed: [UInt8] = []
            try Array(text.utf8).withUnsafeBytes { try deflater.compressMessage($0, into: &compressed) }
            // Send an empty message as zero bytes instead of 00: both must work.
            if text.isEmpty { compressed.removeAll() }
            var output: [UInt8] = []
            try compressed.withUnsafeBytes { try inflater.decompressMessage($0, into: &output, limit: 100) }
            #expect(String(decoding: output, as: UTF8.self) == text)
        }
    }

    @Test func errorDescriptions() {
        #expect(ZlibError.outputLimitExceeded(limit: 5).description == "message decompresses to more than 5 bytes")
        #expect(ZlibError.failed(call: "deflate", code: -2).description == "deflate failed: Z_STREAM_ERROR")
        #expect(ZlibError.initializationFailed(call: "inflateInit2", code: -4).closeCode == .internalServerError)
    }

    // MARK: Helpers

    private func compress(_ deflater: DeflateStream, _ text: String) throws -> [UInt8] {
        var output: [UInt8] = []
        try Array(text.utf8).withUnsafeBytes { try deflater.compressMessage($0, into: &output) }
        return output
    }
}

private func bytes(_ hex: String) -> [UInt8] {
    hex.split(separator: " ").map { UInt8($0, radix: 16)! }
}

private func catchZlib(_ body: () throws -> Void) -> ZlibError? {
    do {
        try body()
        return nil
    } catch let error as ZlibError {
        return error
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
}

/// Deterministic pseudo-random bytes (SplitMix64).
private func pseudoRandom(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count)
    while bytes.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        for shift in stride(from: 0, to: 64, by: 8) where bytes.count < count {
            bytes.append(UInt8(truncatingIfNeeded: z >> UInt64(shift)))
        }
    }
    return bytes
}
