import BlastBeatSystem
import CSodium
import Testing

/// The gateway's four-lane Salsa20 (Curve/Salsa20.swift) against libsodium's `crypto_stream_salsa20`.
struct Salsa20Tests {
    private static func random(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        randombytes_buf(&bytes, count)
        return bytes
    }

    /// libsodium's block `counter` of the stream of `nonce` (8 bytes): the stream's bytes at 64·counter.
    private static func libsodiumBlock(key: [UInt8], nonce: [UInt8], counter: UInt64) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 64)
        _ = crypto_stream_salsa20_xor_ic(&block, block, 64, nonce, counter, key)
        return block
    }

    private static func ours(key: [UInt8], nonces: [[UInt8]], counters: [UInt64]) -> [UInt8] {
        var out = [UInt8](repeating: 0xee, count: 64 * nonces.count)
        var nonceWords = SIMD4<UInt64>(repeating: 0), counterWords = SIMD4<UInt64>(repeating: 0)
        for (i, nonce) in nonces.enumerated() {
            nonceWords[i] = nonce.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            counterWords[i] = counters[i]
        }
        out.withUnsafeMutableBytes { outBytes in
            key.withUnsafeBytes { keyBytes in
                Salsa20.blocks(
                    key: keyBytes.baseAddress!, nonces: nonceWords, counters: counterWords, count: nonces.count,
                    into: outBytes.baseAddress!)
            }
        }
        return out
    }

    @Test func everyLaneMatchesLibsodium() {
        #expect(sodium_init() >= 0)
        for round in 0..<200 {
            let key = Self.random(32)
            let count = round % 4 + 1
            let nonces = (0..<count).map { _ in Self.random(8) }
            // Small counters (a frame's blocks) and ones past 32 bits (the high counter word).
            let counters: [UInt64] = (0..<count).map { lane in
                round % 3 == 0 ? UInt64(lane) : UInt64.random(in: 0...UInt64.max >> 6)
            }
            let computed = Self.ours(key: key, nonces: nonces, counters: counters)
            for lane in 0..<count {
                let expected = Self.libsodiumBlock(key: key, nonce: nonces[lane], counter: counters[lane])
                #expect(Array(computed[64 * lane..<64 * lane + 64]) == expected, "round \(round) lane \(lane)")
            }
        }
    }

    @Test func writesOnlyTheBlocksAskedFor() {
        let key = Self.random(32), nonce = Self.random(8)
        var out = [UInt8](repeating: 0xee, count: 256)
        let word = nonce.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        out.withUnsafeMutableBytes { outBytes in
            key.withUnsafeBytes { keyBytes in
                Salsa20.blocks(
                    key: keyBytes.baseAddress!, nonces: SIMD4(repeating: word), counters: SIMD4(0, 1, 2, 3), count: 2,
                    into: outBytes.baseAddress!)
            }
        }
        #expect(Array(out[0..<64]) == Self.libsodiumBlock(key: key, nonce: nonce, counter: 0))
        #expect(Array(out[64..<128]) == Self.libsodiumBlock(key: key, nonce: nonce, counter: 1))
        #expect(out[128...].allSatisfy { $0 == 0xee })
    }
}
