/// The 16 random bytes that name a client connection on the wire (frame 1 of every message).
package struct SessionID: Hashable, Sendable {
    package var high: UInt64
    package var low: UInt64

    package init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads a sid frame; nil unless it is exactly 16 bytes.
    package init?(_ bytes: RawSpan) {
        guard bytes.byteCount == 16 else { return nil }
        high = bytes.unsafeLoadUnaligned(fromByteOffset: 0, as: UInt64.self)
        low = bytes.unsafeLoadUnaligned(fromByteOffset: 8, as: UInt64.self)
    }

    package init?(_ bytes: UnsafeRawBufferPointer) {
        self.init(bytes.bytes)
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(high)
        hasher.combine(low)
    }

    /// The session table's hash. Session ids come from the kernel's CSPRNG and a peer never
    /// chooses the ones stored, so their own bits hash well (no flooding a bucket); this skips
    /// SipHash, which cost about 700 instructions per request in two lookups (callgrind).
    package func _rawHashValue(seed: Int) -> Int {
        Int(truncatingIfNeeded: low ^ (high &* 0x9E37_79B9_7F4A_7C15)) ^ seed
    }

    /// The 16 wire bytes, valid only inside `body`.
    package func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var copy = self
        return try withUnsafeBytes(of: &copy) { try body($0) }
    }

    /// The 16 wire bytes as a span, valid only inside `body`.
    package func withSpan<R>(_ body: (RawSpan) -> R) -> R {
        withBytes { body($0.bytes) }
    }

    /// Lowercase hex, for logs.
    package var hex: String {
        withBytes { raw in
            let digits: [UInt8] = Array("0123456789abcdef".utf8)
            var out: [UInt8] = []
            out.reserveCapacity(32)
            for b in raw {
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 15)])
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
