/// Salsa20/20 keystream (Bernstein's "Salsa20 specification"), four 64-byte blocks per call: one SIMD lane
/// per block, so the four blocks' rounds run side by side in the vector unit.
///
/// Why not libsodium's: CurveZMQ seals every frame on its own, and a frame of a request is one to seven
/// blocks. libsodium computes such short streams one block at a time (its four- and eight-block code starts
/// at 256 bytes), each block a chain of dependent operations. Four blocks of one frame, or the first blocks
/// of several frames, are independent: computed together they cost little more than one. The unit tests
/// compare every block with libsodium's `crypto_stream_salsa20`.
///
/// Timing: the same operations for every key, nonce and counter (no branch or index on secret data).
package enum Salsa20 {
    package static let blockSize = 64

    /// Writes `count` (1...4) keystream blocks to `out` (64 bytes each, in order): block i is the one at
    /// `counters[i]` of the stream of `nonces[i]` (the 8 nonce bytes as they are sent, read little-endian),
    /// under the 32-byte `key`.
    package static func blocks(
        key: UnsafeRawPointer, nonces: SIMD4<UInt64>, counters: SIMD4<UInt64>, count: Int, into out: UnsafeMutableRawPointer
    ) {
        precondition(count >= 1 && count <= 4)
        func word(_ i: Int) -> SIMD4<UInt32> {
            SIMD4(repeating: UInt32(littleEndian: key.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        }
        // The input block: constants on the diagonal, key, nonce and counter (section 10 of the spec).
        let j0 = SIMD4<UInt32>(repeating: 0x6170_7865), j5 = SIMD4<UInt32>(repeating: 0x3320_646e)
        let j10 = SIMD4<UInt32>(repeating: 0x7962_2d32), j15 = SIMD4<UInt32>(repeating: 0x6b20_6574)
        let j1 = word(0), j2 = word(1), j3 = word(2), j4 = word(3)
        let j11 = word(4), j12 = word(5), j13 = word(6), j14 = word(7)
        let j6 = SIMD4<UInt32>(truncatingIfNeeded: nonces)
        let j7 = SIMD4<UInt32>(truncatingIfNeeded: nonces &>> 32)
        let j8 = SIMD4<UInt32>(truncatingIfNeeded: counters)
        let j9 = SIMD4<UInt32>(truncatingIfNeeded: counters &>> 32)

        var x0 = j0, x1 = j1, x2 = j2, x3 = j3, x4 = j4, x5 = j5, x6 = j6, x7 = j7
        var x8 = j8, x9 = j9, x10 = j10, x11 = j11, x12 = j12, x13 = j13, x14 = j14, x15 = j15
        for _ in 0..<10 {
            // Column round: the four quarter-rounds are independent of each other.
            mix(&x4, x0 &+ x12, 7); mix(&x9, x5 &+ x1, 7); mix(&x14, x10 &+ x6, 7); mix(&x3, x15 &+ x11, 7)
            mix(&x8, x4 &+ x0, 9); mix(&x13, x9 &+ x5, 9); mix(&x2, x14 &+ x10, 9); mix(&x7, x3 &+ x15, 9)
            mix(&x12, x8 &+ x4, 13); mix(&x1, x13 &+ x9, 13); mix(&x6, x2 &+ x14, 13); mix(&x11, x7 &+ x3, 13)
            mix(&x0, x12 &+ x8, 18); mix(&x5, x1 &+ x13, 18); mix(&x10, x6 &+ x2, 18); mix(&x15, x11 &+ x7, 18)
            // Row round.
            mix(&x1, x0 &+ x3, 7); mix(&x6, x5 &+ x4, 7); mix(&x11, x10 &+ x9, 7); mix(&x12, x15 &+ x14, 7)
            mix(&x2, x1 &+ x0, 9); mix(&x7, x6 &+ x5, 9); mix(&x8, x11 &+ x10, 9); mix(&x13, x12 &+ x15, 9)
            mix(&x3, x2 &+ x1, 13); mix(&x4, x7 &+ x6, 13); mix(&x9, x8 &+ x11, 13); mix(&x14, x13 &+ x12, 13)
            mix(&x0, x3 &+ x2, 18); mix(&x5, x4 &+ x7, 18); mix(&x10, x9 &+ x8, 18); mix(&x15, x14 &+ x13, 18)
        }
        x0 &+= j0; x1 &+= j1; x2 &+= j2; x3 &+= j3; x4 &+= j4; x5 &+= j5; x6 &+= j6; x7 &+= j7
        x8 &+= j8; x9 &+= j9; x10 &+= j10; x11 &+= j11; x12 &+= j12; x13 &+= j13; x14 &+= j14; x15 &+= j15

        // Lane i of word w is word w of block i.
        let words = (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)
        withUnsafeBytes(of: words) { lanes in
            for block in 0..<count {
                let base = out + block * blockSize
                for w in 0..<16 {
                    let value = lanes.load(fromByteOffset: 16 * w + 4 * block, as: UInt32.self)
                    base.storeBytes(of: value.littleEndian, toByteOffset: 4 * w, as: UInt32.self)
                }
            }
        }
    }

    /// `x ^= (sum <<< n)`, as two shifts xored in one at a time: written as a rotation, LLVM turns it into
    /// scalar `rol`s lane by lane (SSE2 has no vector rotate), which made the kernel three times slower.
    @inline(__always)
    private static func mix(_ x: inout SIMD4<UInt32>, _ sum: SIMD4<UInt32>, _ n: UInt32) {
        x ^= sum &<< SIMD4(repeating: n)
        x ^= sum &>> SIMD4(repeating: 32 - n)
    }
}
