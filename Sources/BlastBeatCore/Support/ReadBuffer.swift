/// A fixed block of bytes that each read fills from the start: the gateway's shared read buffer. Every
/// client socket is read into it (`fill`), and what the read brought is lent out as a span until the next
/// one (`withBytes`); a connection copies out only what it cannot use at once, so idle connections own no
/// buffer.
///
/// Unlike `ByteBuffer` it never grows, moves or empties its storage: a read costs no allocation, no zeroing
/// and no reset of an array (the bytes are zeroed once, when the buffer is made).
public struct ReadBuffer {
    @usableFromInline var storage: [UInt8]
    /// Bytes the last fill wrote, from the start.
    @usableFromInline var filled = 0

    public init(capacity: Int) {
        storage = [UInt8](repeating: 0, count: capacity)
    }

    @inlinable public var capacity: Int { storage.count }

    /// Bytes the last fill wrote.
    @inlinable public var count: Int { filled }

    /// Lets `body` write over the buffer from its start; it returns how many bytes it wrote, which become the
    /// buffer's contents (none if it throws).
    @inlinable
    public mutating func fill<E: Error>(_ body: (inout MutableSpan<UInt8>) throws(E) -> Int) throws(E) {
        filled = 0
        var span = storage.mutableSpan
        let written = try body(&span)
        precondition(written >= 0 && written <= span.count, "a read past the read buffer")
        filled = written
    }

    /// The bytes of the last fill, valid only inside `body`.
    @inlinable
    public func withBytes<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try body(storage.span.bytes.extracting(first: filled))
    }
}
