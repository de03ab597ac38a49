/// SHA-1 (FIPS 180-4), kept only for the WebSocket accept value (RFC 6455 §4.2.2).
///
/// SHA-1 is broken for collision resistance, but RFC 6455 uses it only to prove that the server understood the
/// handshake, not for security. Having it here keeps BlastBeatCore free of Foundation and OpenSSL.
/// Not for anything else: no constant-time guarantees, no streaming beyond what the handshake needs.
package struct SHA1 {
    /// Size of a digest in bytes.
    package static let digestSize = 20

    private var h0: UInt32 = 0x6745_2301
    private var h1: UInt32 = 0xEFCD_AB89
    private var h2: UInt32 = 0x98BA_DCFE
    private var h3: UInt32 = 0x1032_5476
    private var h4: UInt32 = 0xC3D2_E1F0
    /// Bytes of the current, incomplete 64-byte block.
    private var block: [UInt8] = []
    /// Total message length in bytes.
    private var length: UInt64 = 0

    package init() {
        self.block.reserveCapacity(64)
    }

    /// Hashes `bytes` in one go.
    package static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var sha = SHA1()
        sha.update(bytes)
        return sha.finalize()
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        self.length &+= UInt64(bytes.count)
        for byte in bytes {
            self.block.append(byte)
            if self.block.count == 64 {
                self.compressBlock()
                self.block.removeAll(keepingCapacity: true)
            }
        }
    }

    /// Pads, processes the last block and returns the 20-byte digest. The hasher must not be used afterwards.
    package mutating func finalize() -> [UInt8] {
        let bitLength = self.length &* 8
        self.block.append(0x80)
        if self.block.count > 56 {
            while self.block.count < 64 { self.block.append(0) }
            self.compressBlock()
            self.block.removeAll(keepingCapacity: true)
        }
        while self.block.count < 56 { self.block.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) {
            self.block.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        self.compressBlock()
        self.block.removeAll(keepingCapacity: true)

        var digest: [UInt8] = []
        digest.reserveCapacity(Self.digestSize)
        for word in [self.h0, self.h1, self.h2, self.h3, self.h4] {
            digest.append(UInt8(truncatingIfNeeded: word >> 24))
            digest.append(UInt8(truncatingIfNeeded: word >> 16))
            digest.append(UInt8(truncatingIfNeeded: word >> 8))
            digest.append(UInt8(truncatingIfNeeded: word))
        }
        return digest
    }

    private mutating func compressBlock() {
        precondition(self.block.count == 64)
        // The 80-word message schedule lives on the stack, not in a heap array per block.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
            for i in 0..<16 {
                w[i] =
                    UInt32(self.block[4 * i]) << 24 | UInt32(self.block[4 * i + 1]) << 16
                    | UInt32(self.block[4 * i + 2]) << 8 | UInt32(self.block[4 * i + 3])
            }
            for i in 16..<80 {
                w[i] = rotateLeft(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
            }
            var a = self.h0
            var b = self.h1
            var c = self.h2
            var d = self.h3
            var e = self.h4
            for i in 0..<80 {
                let f: UInt32
                let k: UInt32
                switch i {
                case 0..<20:
                    f = (b & c) | (~b & d)
                    k = 0x5A82_7999
                case 20..<40:
                    f = b ^ c ^ d
                    k = 0x6ED9_EBA1
                case 40..<60:
                    f = (b & c) | (b & d) | (c & d)
                    k = 0x8F1B_BCDC
                default:
                    f = b ^ c ^ d
                    k = 0xCA62_C1D6
                }
                let temp = rotateLeft(a, 5) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = rotateLeft(b, 30)
                b = a
                a = temp
            }
            self.h0 &+= a
            self.h1 &+= b
            self.h2 &+= c
            self.h3 &+= d
            self.h4 &+= e
        }
    }
}

private func rotateLeft(_ value: UInt32, _ count: UInt32) -> UInt32 {
    (value << count) | (value >> (32 - count))
}
