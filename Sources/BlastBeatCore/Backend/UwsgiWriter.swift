/// Writes a uwsgi packet into memory sized in advance (`UwsgiEncoder.sizeBound`).
///
/// Appending to an `[UInt8]` one field at a time cost a capacity and uniqueness check per append
/// (about a tenth of the gateway's instructions per request, callgrind). Here every write is one
/// bounds comparison and a store or `memcpy`. The bound is still checked on each write: a wrong
/// size estimate must stop the process, not write past the buffer.
struct UwsgiWriter {
    private let base: UnsafeMutableRawPointer?
    private let capacity: Int
    private(set) var count = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.base = buffer.baseAddress
        self.capacity = buffer.count
    }

    @inline(__always)
    private func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        precondition(n <= capacity - count, "uwsgi packet larger than its size bound")
        return base.unsafelyUnwrapped + count
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        reserve(1).storeBytes(of: value, as: UInt8.self)
        count += 1
    }

    /// A little-endian 16-bit length prefix. Longer lengths are truncated here, but they also
    /// push the pairs past `UwsgiEncoder.maxPairsLength`, so the packet is refused as a whole.
    @inline(__always)
    mutating func length(_ value: Int) {
        let at = reserve(2)
        at.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        (at + 1).storeBytes(of: UInt8(truncatingIfNeeded: value >> 8), as: UInt8.self)
        count += 2
    }

    @inline(__always)
    mutating func bytes(_ source: UnsafeRawBufferPointer) {
        guard let from = source.baseAddress, source.count > 0 else { return }
        reserve(source.count).copyMemory(from: from, byteCount: source.count)
        count += source.count
    }

    @inline(__always)
    mutating func bytes(_ text: StaticString) {
        bytes(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inline(__always)
    mutating func bytes(_ array: [UInt8]) {
        array.withUnsafeBytes { bytes($0) }
    }

    /// A length-prefixed field.
    @inline(__always)
    mutating func field(_ text: StaticString) {
        length(text.utf8CodeUnitCount)
        bytes(text)
    }

    @inline(__always)
    mutating func field(_ source: UnsafeRawBufferPointer) {
        length(source.count)
        bytes(source)
    }

    @inline(__always)
    mutating func field(_ array: [UInt8]) {
        length(array.count)
        bytes(array)
    }

    /// Reserves a value's length prefix when the length is known only after writing; see `endValue`.
    mutating func beginValue() -> Int {
        length(0)
        return count - 2
    }

    mutating func endValue(lengthAt position: Int) {
        patchLength(at: position, count - position - 2)
    }

    /// Overwrites two bytes written earlier with a little-endian length.
    mutating func patchLength(at position: Int, _ value: Int) {
        precondition(position >= 0 && position + 2 <= count, "length patch outside the written bytes")
        let at = base.unsafelyUnwrapped + position
        at.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        (at + 1).storeBytes(of: UInt8(truncatingIfNeeded: value >> 8), as: UInt8.self)
    }

    mutating func decimal(_ value: Int) {
        withDecimalDigits(value) { bytes($0) }
    }
}
