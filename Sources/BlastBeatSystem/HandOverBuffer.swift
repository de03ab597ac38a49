import Glibc
import Synchronization

/// Body bytes handed to a ROUTER for one peer and not yet sent (or dropped).
///
/// libzmq gives no per-peer queue length; counting the bytes of handed-over bodies until its
/// deallocator runs (on libzmq's I/O thread, hence atomic) is how the gateway knows when a node
/// stops keeping up. A `CountedBody` is counted from its creation until it is freed (by either engine
/// once written, or unsent). Instances must outlive every body counted (the gateway keeps them for its
/// lifetime).
package final class NodeQueueMeter: Sendable {
    private let queued = Atomic<Int>(0)
    /// The meter of every node together (the memory budget's node bytes), counted along; it outlives this one.
    private let total: NodeQueueMeter?

    package init(countingAlsoIn total: NodeQueueMeter? = nil) {
        self.total = total
    }

    package var queuedBytes: Int { queued.load(ordering: .relaxed) }

    func add(_ count: Int) {
        queued.add(count, ordering: .relaxed)
        total?.add(count)
    }

    func subtract(_ count: Int) {
        queued.subtract(count, ordering: .relaxed)
        total?.subtract(count)
    }
}

/// Memory for a message body that a `BackendRouter` sends without copying (as a `CountedBody`). A
/// small header in front of the bytes remembers how many were counted by the meter.
package enum HandOverBuffer {
    private static var header: Int { 16 }

    package static func allocate(_ count: Int) -> UnsafeMutableRawPointer? {
        guard let raw = malloc(header + count) else { return nil }
        raw.storeBytes(of: 0, as: Int.self)
        return raw + header
    }

    /// For a buffer that was never handed over.
    package static func release(_ buffer: UnsafeMutableRawPointer) { free(buffer - header) }

    static func setQueuedCount(_ buffer: UnsafeMutableRawPointer, _ count: Int) {
        (buffer - header).storeBytes(of: count, as: Int.self)
    }

    static func queuedCount(_ buffer: UnsafeMutableRawPointer) -> Int {
        (buffer - header).load(as: Int.self)
    }
}

/// Request body bytes read straight from a client socket into memory a `BackendRouter` can send without a
/// copy. Owned until `counted(by:)` turns it into a `CountedBody` for a send; freed if dropped before.
package struct BodyBuffer: ~Copyable {
    private let buffer: UnsafeMutableRawPointer
    package let capacity: Int
    package private(set) var count = 0

    /// Nil without memory.
    package init?(capacity: Int) {
        guard let buffer = HandOverBuffer.allocate(capacity) else { return nil }
        self.buffer = buffer
        self.capacity = capacity
    }

    /// One read from `fd` into the buffer; `count` becomes what was read.
    package mutating func read(from fd: Int32) throws(SystemError) -> IOResult {
        let result = try Posix.read(fd, into: UnsafeMutableRawBufferPointer(start: buffer, count: capacity))
        if case .processed(let n) = result { count = n }
        return result
    }

    /// The bytes read, lent for the call.
    package func withBytes<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: buffer, count: count).bytes)
    }

    /// The bytes read, counted against `meter` from now until an engine has sent or dropped them.
    package consuming func counted(by meter: NodeQueueMeter) -> CountedBody {
        let (buffer, count) = (self.buffer, self.count)
        discard self
        return CountedBody(handingOver: buffer, count: count, meter: meter)
    }

    deinit { HandOverBuffer.release(buffer) }
}
