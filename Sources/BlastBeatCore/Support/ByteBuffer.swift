/// Bytes waiting to be consumed: appended at the end, read from `readerIndex`. Consuming a prefix moves
/// the index instead of moving the rest of the bytes (`Array.removeFirst`), and once everything is read
/// the buffer starts over, keeping its storage only up to a size the owner chooses, so an idle
/// connection holds no large buffer.
public struct ByteBuffer {
    @usableFromInline var storage: [UInt8] = []
    @usableFromInline var readerIndex = 0

    public init() {}

    /// Bytes appended and not yet consumed.
    @inlinable @inline(__always) public var readableCount: Int { storage.count - readerIndex }

    @inlinable @inline(__always) public var isEmpty: Bool { readerIndex == storage.count }

    @inlinable @inline(__always)
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        storage.appendBytes(bytes)
    }

    @inlinable @inline(__always)
    public mutating func append(_ bytes: [UInt8]) {
        storage.append(contentsOf: bytes)
    }

    @inlinable @inline(__always)
    public mutating func append(_ bytes: RawSpan) {
        bytes.withUnsafeBytes { storage.appendBytes($0) }
    }

    /// `SIZE\r\n`, the line that starts a chunk (RFC 9112 §7.1), the size in hex, without an allocation.
    public mutating func appendChunkSize(_ size: Int) {
        precondition(size >= 0, "negative chunk size")
        var shift = 0
        while shift < 60 && size >> (shift + 4) != 0 { shift += 4 }
        while shift >= 0 {
            let digit = UInt8((size >> shift) & 15)
            storage.append(digit < 10 ? 0x30 + digit : 0x41 + digit - 10)
            shift -= 4
        }
        storage.append(0x0D)
        storage.append(0x0A)
    }

    /// Lets `body` append to the end of the storage (a TLS engine writing its records, say).
    @inlinable
    public mutating func appending<R>(_ body: (inout [UInt8]) throws -> R) rethrows -> R {
        try body(&storage)
    }

    /// The unconsumed bytes, valid only inside `body`.
    @inlinable @inline(__always)
    public func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[readerIndex...])) }
    }

    /// The unconsumed bytes as a span, valid only inside `body`.
    @inlinable @inline(__always)
    public func withReadableSpan<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try body(storage.span.bytes.extracting(droppingFirst: readerIndex))
    }

    /// Copies readable bytes to the start of `target`, as many as fit, and consumes them (see `consume`);
    /// returns how many. HTTP/2's data provider fills the memory nghttp2 lends for a DATA frame this way.
    @inlinable
    public mutating func move(into target: inout MutableRawSpan, keepingCapacity limit: Int) -> Int {
        let n = min(target.byteCount, readableCount)
        guard n > 0 else { return 0 }
        withReadableBytes { source in
            target.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[..<n])) }
        }
        consume(n, keepingCapacity: limit)
        return n
    }

    /// Marks `count` bytes read. When nothing is left the buffer starts over (see `clear`); a large
    /// consumed prefix is dropped once it is more than half of the storage, so a buffer that is never
    /// quite empty does not grow without end.
    @inlinable @inline(__always)
    public mutating func consume(_ count: Int, keepingCapacity limit: Int) {
        precondition(count >= 0 && count <= readableCount, "consumed more than was readable")
        readerIndex += count
        if readerIndex == storage.count {
            clear(keepingCapacity: limit)
        } else if readerIndex > 4096 && readerIndex > storage.count / 2 {
            storage.removeFirst(readerIndex)
            readerIndex = 0
        }
    }

    /// Drops every byte; the storage is kept when its capacity is at most `limit` bytes, else released.
    @inlinable
    public mutating func clear(keepingCapacity limit: Int) {
        readerIndex = 0
        if storage.capacity <= limit {
            storage.removeAll(keepingCapacity: true)
        } else {
            storage = []
        }
    }
}
