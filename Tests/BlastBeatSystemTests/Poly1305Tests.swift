import BlastBeatSystem
import CSodium
import Testing

/// The gateway's own Poly1305 (Curve/Poly1305.swift) against RFC 8439's vector and libsodium's.
struct Poly1305Tests {
    private static func hex(_ text: String) -> [UInt8] {
        let digits = Array(text.filter { !$0.isWhitespace && $0 != ":" }.utf8)
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    private static func ours(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: Poly1305.tagSize)
        tag.withUnsafeMutableBytes { tagBytes in
            message.withUnsafeBytes { messageBytes in
                key.withUnsafeBytes { keyBytes in
                    // A non-nil base for the empty message too.
                    let base = messageBytes.baseAddress ?? keyBytes.baseAddress!
                    Poly1305.authenticate(tag: tagBytes.baseAddress!, message: base, count: message.count, key: keyBytes.baseAddress!)
                }
            }
        }
        return tag
    }

    private static func oursVerify(_ tag: [UInt8], _ message: [UInt8], key: [UInt8]) -> Bool {
        tag.withUnsafeBytes { tagBytes in
            message.withUnsafeBytes { messageBytes in
                key.withUnsafeBytes { keyBytes in
                    let base = messageBytes.baseAddress ?? keyBytes.baseAddress!
                    return Poly1305.verify(tag: tagBytes.baseAddress!, message: base, count: message.count, key: keyBytes.baseAddress!)
                }
            }
        }
    }

    private static func libsodium(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: 16)
        _ = crypto_onetimeauth_poly1305(&tag, message, UInt64(message.count), key)
        return tag
    }

    private static func random(_ count: Int, _ generator: inout some RandomNumberGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    @Test func rfc8439Vector() {
        // RFC 8439, 2.5.2.
        let key = Self.hex("85:d6:be:78:57:55:6d:33:7f:44:52:fe:42:d5:06:a8:01:03:80:8a:fb:0d:b2:fd:4a:bf:f6:af:41:49:f5:1b")
        let message = Array("Cryptographic Forum Research Group".utf8)
        let expected = Self.hex("a8:06:1d:c1:30:51:36:c6:c2:2b:8b:af:0c:01:27:a9")
        #expect(Self.ours(message, key: key) == expected)
        #expect(Self.oursVerify(expected, message, key: key))
    }

    @Test func sameTagsAsLibsodiumForEveryLengthUpTo1KiB() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...1024 {
            for _ in 0..<4 {
                let key = Self.random(32, &generator), message = Self.random(length, &generator)
                let tag = Self.ours(message, key: key)
                #expect(tag == Self.libsodium(message, key: key), "length \(length)")
                #expect(Self.oursVerify(tag, message, key: key))
            }
        }
    }

    /// Limbs at their largest: all-ones keys and messages, which the random ones rarely reach, exercise
    /// every carry and the final reduction (h ≥ 2^130 − 5 before it).
    @Test func sameTagsAsLibsodiumAtTheLimbLimits() {
        for keyByte: UInt8 in [0x00, 0xff, 0x0f, 0xf0] {
            for messageByte: UInt8 in [0x00, 0xff] {
                for length in [0, 1, 15, 16, 17, 31, 32, 33, 64, 255, 256, 1000] {
                    let key = [UInt8](repeating: keyByte, count: 32), message = [UInt8](repeating: messageByte, count: length)
                    #expect(Self.ours(message, key: key) == Self.libsodium(message, key: key), "key \(keyByte) message \(messageByte) × \(length)")
                }
            }
        }
    }

    @Test func verifyRefusesAnyChangedBitOfTagOrMessage() {
        var generator = SystemRandomNumberGenerator()
        let key = Self.random(32, &generator), message = Self.random(40, &generator)
        let tag = Self.ours(message, key: key)
        for bit in 0..<128 {
            var changed = tag
            changed[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(!Self.oursVerify(changed, message, key: key), "tag bit \(bit)")
        }
        for bit in 0..<(message.count * 8) {
            var changed = message
            changed[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(!Self.oursVerify(tag, changed, key: key), "message bit \(bit)")
        }
    }
}
