/// Poly1305 (RFC 8439 section 2.5) in 64-bit limbs: 44 + 44 + 42 bits, products in 128 bits.
///
/// Why not libsodium's: on x86-64 libsodium picks its SSE2 Poly1305, which prepares powers of the key for
/// long messages and costs about 1,000 instructions per call. CurveZMQ boxes every frame on its own, and
/// most frames of a request (the sid, the type, a short body) are under 64 bytes. callgrind counted 9 MACs
/// per keep-alive request and 9,300 instructions for them, a quarter of the gateway's work per request with
/// CURVE. These limbs take under 200 for a short frame. The result is the same 16 bytes; the unit tests
/// compare it with libsodium's over random keys and every length up to 1 KiB, and with RFC 8439's vector.
///
/// Timing: the same operations for every key and message of a length (no branch or index on secret data);
/// `verify` compares all 16 bytes before deciding.
package enum Poly1305 {
    package static let keySize = 32
    package static let tagSize = 16

    private static let mask44: UInt64 = 0xfff_ffff_ffff
    private static let mask42: UInt64 = 0x3ff_ffff_ffff

    /// Writes the tag of `count` bytes at `message` under the one-time `key` (32 bytes) to `tag` (16 bytes).
    package static func authenticate(
        tag: UnsafeMutableRawPointer, message: UnsafeRawPointer, count: Int, key: UnsafeRawPointer
    ) {
        var state = State(key: key)
        state.absorb(message, count: count)
        state.finish(key: key, into: tag)
    }

    /// Whether `tag` is the tag of the message, compared in constant time.
    package static func verify(
        tag: UnsafeRawPointer, message: UnsafeRawPointer, count: Int, key: UnsafeRawPointer
    ) -> Bool {
        var state = State(key: key)
        state.absorb(message, count: count)
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2) { computed in
            let base = UnsafeMutableRawPointer(computed.baseAddress!)
            state.finish(key: key, into: base)
            let difference = (base.load(as: UInt64.self) ^ tag.loadUnaligned(as: UInt64.self))
                | (base.load(fromByteOffset: 8, as: UInt64.self) ^ tag.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            return difference == 0
        }
    }

    /// The accumulator h and the clamped key r, in limbs; s1, s2 are 20·r1, 20·r2 (5·4: the limbs' reduction
    /// by 2^130 − 5 folded into the multiplication).
    private struct State {
        var h0: UInt64 = 0, h1: UInt64 = 0, h2: UInt64 = 0
        let r0: UInt64, r1: UInt64, r2: UInt64
        let s1: UInt64, s2: UInt64

        @inline(__always)
        init(key: UnsafeRawPointer) {
            let t0 = key.loadUnaligned(as: UInt64.self).littleEndian
            let t1 = key.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
            r0 = t0 & 0xffc_0fff_ffff
            r1 = ((t0 >> 44) | (t1 << 20)) & 0xfff_ffc0_ffff
            r2 = (t1 >> 24) & 0x00f_ffff_fc0f
            s1 = r1 &* 20
            s2 = r2 &* 20
        }

        @inline(__always)
        mutating func absorb(_ message: UnsafeRawPointer, count: Int) {
            var offset = 0
            while count - offset >= 16 {
                block(message.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian,
                      message.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self).littleEndian,
                      highBit: 1 << 40)
                offset += 16
            }
            let rest = count - offset
            guard rest > 0 else { return }
            // The last partial block: its bytes, a 1 after them, zeros to 16, and no 2^128 bit.
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2) { words in
                let base = UnsafeMutableRawPointer(words.baseAddress!)
                base.initializeMemory(as: UInt64.self, repeating: 0, count: 2)
                base.copyMemory(from: message + offset, byteCount: rest)
                base.storeBytes(of: 1, toByteOffset: rest, as: UInt8.self)
                block(base.load(as: UInt64.self).littleEndian,
                      base.load(fromByteOffset: 8, as: UInt64.self).littleEndian, highBit: 0)
            }
        }

        /// h = (h + block) · r mod 2^130 − 5, partially reduced.
        @inline(__always)
        mutating func block(_ t0: UInt64, _ t1: UInt64, highBit: UInt64) {
            h0 &+= t0 & mask44
            h1 &+= ((t0 >> 44) | (t1 << 20)) & mask44
            h2 &+= ((t1 >> 24) & mask42) | highBit

            let d0 = Wide(h0, r0) + Wide(h1, s2) + Wide(h2, s1)
            var d1 = Wide(h0, r1) + Wide(h1, r0) + Wide(h2, s2)
            var d2 = Wide(h0, r2) + Wide(h1, r1) + Wide(h2, r0)

            var carry = d0.shifted(44)
            h0 = d0.low & mask44
            d1 = d1 + carry
            carry = d1.shifted(44)
            h1 = d1.low & mask44
            d2 = d2 + carry
            carry = d2.shifted(42)
            h2 = d2.low & mask42
            h0 &+= carry &* 5
            carry = h0 >> 44
            h0 &= mask44
            h1 &+= carry
        }

        /// Full reduction, h + s (the key's second half), and the low 128 bits little-endian to `tag`.
        @inline(__always)
        mutating func finish(key: UnsafeRawPointer, into tag: UnsafeMutableRawPointer) {
            var carry = h1 >> 44
            h1 &= mask44
            h2 &+= carry; carry = h2 >> 42; h2 &= mask42
            h0 &+= carry &* 5; carry = h0 >> 44; h0 &= mask44
            h1 &+= carry; carry = h1 >> 44; h1 &= mask44
            h2 &+= carry; carry = h2 >> 42; h2 &= mask42
            h0 &+= carry &* 5; carry = h0 >> 44; h0 &= mask44
            h1 &+= carry

            // g = h + 5 − 2^130; keep g when it did not go below zero (h ≥ p), else h.
            var g0 = h0 &+ 5; carry = g0 >> 44; g0 &= mask44
            var g1 = h1 &+ carry; carry = g1 >> 44; g1 &= mask44
            var g2 = h2 &+ carry &- (1 << 42)
            let keepG = (g2 >> 63) &- 1
            g0 &= keepG; g1 &= keepG; g2 &= keepG
            let keepH = ~keepG
            h0 = (h0 & keepH) | g0
            h1 = (h1 & keepH) | g1
            h2 = (h2 & keepH) | g2

            let s0 = key.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian
            let s1 = key.loadUnaligned(fromByteOffset: 24, as: UInt64.self).littleEndian
            h0 &+= s0 & mask44; carry = h0 >> 44; h0 &= mask44
            h1 &+= (((s0 >> 44) | (s1 << 20)) & mask44) &+ carry; carry = h1 >> 44; h1 &= mask44
            h2 &+= ((s1 >> 24) & mask42) &+ carry; h2 &= mask42

            tag.storeBytes(of: (h0 | (h1 << 44)).littleEndian, as: UInt64.self)
            tag.storeBytes(of: ((h1 >> 20) | (h2 << 24)).littleEndian, toByteOffset: 8, as: UInt64.self)
        }
    }

    /// A 128-bit sum of 64 × 64-bit products (three of them never exceed 2^128: limbs are under 2^44 and
    /// 20·r under 2^49).
    private struct Wide {
        var high: UInt64
        var low: UInt64

        @inline(__always)
        init(_ a: UInt64, _ b: UInt64) {
            (high, low) = a.multipliedFullWidth(by: b)
        }

        @inline(__always)
        init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        @inline(__always)
        static func + (a: Wide, b: Wide) -> Wide {
            let (low, overflow) = a.low.addingReportingOverflow(b.low)
            return Wide(high: a.high &+ b.high &+ (overflow ? 1 : 0), low: low)
        }

        @inline(__always)
        static func + (a: Wide, b: UInt64) -> Wide {
            let (low, overflow) = a.low.addingReportingOverflow(b)
            return Wide(high: a.high &+ (overflow ? 1 : 0), low: low)
        }

        /// The value shifted right by `bits` (< 64), as 64 bits (the callers' values fit).
        @inline(__always)
        func shifted(_ bits: UInt64) -> UInt64 {
            (low >> bits) | (high << (64 - bits))
        }
    }
}
