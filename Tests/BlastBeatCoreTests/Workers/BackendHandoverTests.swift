import BlastBeatCore
import Testing

/// The state a backend connection takes along when it is handed to the worker its label names: what is encoded
/// decodes to the same state; every truncation, oversized length and stray byte is an error, never a trap.
struct BackendHandoverTests {
    static let curve = BackendHandover(
        security: .curve(.init(clientKey: Array(0..<32), sharedKey: Array(100..<132), lastPeerNonce: 1 << 40 | 7, nextNonce: 1)),
        address: Array("127.0.0.9:40001".utf8), unsentOutput: Array(repeating: 0xAB, count: 168),
        pendingInput: Array(repeating: 3, count: 300))
    static let null = BackendHandover(security: .null, address: Array("127.0.0.2:5".utf8), unsentOutput: [], pendingInput: [])
    static let largest = BackendHandover(
        security: .null, address: Array(repeating: 0x61, count: 255),
        unsentOutput: Array(repeating: 1, count: BackendHandover.maxUnsentOutput),
        pendingInput: Array(repeating: 2, count: BackendHandover.maxPendingInput))

    static func decode(_ bytes: [UInt8]) throws(BackendHandover.DecodeError) -> BackendHandover {
        var result: Result<BackendHandover, BackendHandover.DecodeError> = .failure(.truncated)
        bytes.withUnsafeBytes { raw in
            do throws(BackendHandover.DecodeError) { result = .success(try BackendHandover.decode(raw)) } catch {
                result = .failure(error)
            }
        }
        return try result.get()
    }

    @Test(arguments: [curve, null, largest])
    func roundTrip(_ handover: BackendHandover) throws {
        let bytes = handover.encoded()
        #expect(try Self.decode(bytes) == handover)
        #expect(bytes.count <= BackendHandover.maxEncodedSize)
        // Every proper prefix is truncated; one more byte is left over.
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 400)) {
            #expect(throws: BackendHandover.DecodeError.truncated) { try Self.decode(Array(bytes[0..<cut])) }
        }
        #expect(throws: BackendHandover.DecodeError.trailingBytes(1)) { try Self.decode(bytes + [0]) }
    }

    @Test func curveFieldsAreLittleEndianAfterTheMechanism() {
        let bytes = Self.curve.encoded()
        #expect(bytes[0] == 1 && Array(bytes[1..<33]) == Array(0..<32) && Array(bytes[33..<65]) == Array(100..<132))
        #expect(Array(bytes[65..<73]) == [7, 0, 0, 0, 0, 1, 0, 0] && Array(bytes[73..<81]) == [1, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func rejectsOversizedAndUnknownFields() {
        #expect(throws: BackendHandover.DecodeError.unknownMechanism(2)) { try Self.decode([2]) }
        // NULL, empty address, 4097 unsent bytes claimed.
        #expect(throws: BackendHandover.DecodeError.tooLarge(field: "unsent output", length: 4097, limit: 4096)) {
            try Self.decode([0, 0, 0x01, 0x10])
        }
        // NULL, empty address, nothing unsent, 65537 input bytes claimed.
        #expect(throws: BackendHandover.DecodeError.tooLarge(field: "input read ahead", length: 65537, limit: 65536)) {
            try Self.decode([0, 0, 0, 0, 0x01, 0x00, 0x01, 0x00])
        }
        #expect(throws: BackendHandover.DecodeError.truncated) { try Self.decode([]) }
    }
}
