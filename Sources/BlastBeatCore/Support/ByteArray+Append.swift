extension Array where Element == UInt8 {
    /// Appends raw bytes with one `memcpy`.
    ///
    /// `append(contentsOf:)` with an `UnsafeRawBufferPointer` iterates byte by byte (the raw buffer
    /// offers no contiguous-storage fast path); on the hot path that was 5% of all instructions
    /// (callgrind, keep-alive GET). Viewing the bytes as `UnsafeBufferPointer<UInt8>` takes the
    /// contiguous path.
    @inlinable
    package mutating func appendBytes(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }

    /// Appends bytes lent as a span.
    @inlinable
    package mutating func appendBytes(_ bytes: RawSpan) {
        bytes.withUnsafeBytes { appendBytes($0) }
    }

    /// Whether the array holds exactly the bytes of `span`.
    package func equals(_ span: RawSpan) -> Bool {
        span.withUnsafeBytes { $0.elementsEqual(self) }
    }

    /// The bytes of `span`, copied.
    package init(copying span: RawSpan) {
        self = span.withUnsafeBytes { Array($0) }
    }

    /// Appends a static string's UTF-8 bytes.
    @inlinable
    package mutating func appendBytes(_ text: StaticString) {
        appendBytes(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}
