import Testing

@testable import BlastBeatSystem

@Suite struct SecureRandomTests {
    /// Byte counts of any size, across the 4 KiB pool's refills (TLS ticket keys, WebSocket keys), and the
    /// words of `next128` from the same pool: no two draws are the same.
    @Test func drawsOfEverySizeAreFreshBytes() {
        var random = SecureRandom()
        var seen = Set<[UInt8]>()
        for count in [0, 1, 16, 80, 4095, 4096, 4097, 10_000] {
            let bytes = random.bytes(count)
            #expect(bytes.count == count)
            if count >= 16 { #expect(seen.insert(Array(bytes.prefix(16))).inserted) }
        }
        for _ in 0..<300 {  // more than a pool's worth, so next128 refills too
            let (high, low) = random.next128()
            let words = (0..<8).map { UInt8(truncatingIfNeeded: high >> (8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> (8 * $0)) }
            #expect(seen.insert(words).inserted)
        }
        // 10,000 random bytes use every byte value (the chance that one is missing is about 256·e^-39).
        #expect(Set(random.bytes(10_000)).count == 256)
    }
}
