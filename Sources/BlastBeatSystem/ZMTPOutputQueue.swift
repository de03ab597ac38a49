import Glibc
internal import CSystem

/// The bytes waiting to be written to one ZMTP peer, in order.
///
/// Frame headers and small bodies are copied into 64 KiB chunks; large bodies are `HandOverBuffer`s
/// queued as they are (no copy) and counted in their node's meter until written. One `sendmsg`
/// writes up to 64 pieces at a time. It owns its memory, freed by `removeAll()` or at the latest when
/// it is destroyed; being `~Copyable`, it cannot be copied into a second owner that would free the
/// same pieces again. (Swift 6.1 iterated a slice of `pieces` in a noncopyable type's `removeAll`
/// twice, freeing every piece twice: hence the explicit index loops.)
struct ZMTPOutputQueue: ~Copyable {
    private struct Piece {
        var base: UnsafeMutableRawPointer
        var start: Int
        var end: Int
        /// Room of a copy chunk; 0 for a handed-over body.
        var capacity: Int
        /// For a handed-over body: the meter its bytes are counted in.
        unowned(unsafe) var meter: NodeQueueMeter?
    }

    static let chunkSize = 64 * 1024
    private static let maxVectors = 64

    private var pieces: [Piece] = []
    private var head = 0
    /// Bytes queued and not yet written.
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    init() {}

    deinit {
        var i = head
        while i < pieces.count {
            Self.release(pieces[i])
            i += 1
        }
    }

    /// Room for `size` bytes at the end of the queue, to be filled and then `commit`ted.
    mutating func reserve(_ size: Int) -> UnsafeMutableRawPointer {
        if head < pieces.count, let last = pieces.last, last.capacity - last.end >= size {
            return last.base + last.end
        }
        let capacity = max(Self.chunkSize, size)
        guard let base = malloc(capacity) else { fatalError("out of memory for a ZMTP output chunk") }
        pieces.append(Piece(base: base, start: 0, end: 0, capacity: capacity, meter: nil))
        return base
    }

    /// Adds `size` bytes written into the last `reserve`d room.
    mutating func commit(_ size: Int) {
        pieces[pieces.count - 1].end += size
        count += size
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count).copyMemory(from: source, byteCount: bytes.count)
        commit(bytes.count)
    }

    /// Queues a counted body as it is (no copy); it stays counted in its meter until written.
    mutating func append(_ body: consuming CountedBody) {
        let (buffer, size, meter) = body.release()
        pieces.append(Piece(base: buffer, start: 0, end: size, capacity: 0, meter: meter))
        count += size
    }

    /// A copy of the bytes not yet written, in order (for a connection handed to another worker: a few hundred
    /// handshake bytes).
    func copiedBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        var i = head
        while i < pieces.count {
            bytes += UnsafeRawBufferPointer(start: pieces[i].base + pieces[i].start, count: pieces[i].end - pieces[i].start)
            i += 1
        }
        return bytes
    }

    /// Writes the first queued piece alone, with `descriptors` attached (SCM_RIGHTS on a Unix socket: they arrive
    /// with its first byte). False when the socket takes nothing now: then nothing was sent, descriptors included.
    mutating func writeFirstPiece(to fd: Int32, attaching descriptors: [Int32]) throws(SystemError) -> Bool {
        precondition(count > 0, "descriptors need at least one byte to travel with")
        let piece = pieces[head]
        let result = try Posix.send(
            fd, UnsafeRawBufferPointer(start: piece.base + piece.start, count: piece.end - piece.start),
            attaching: descriptors)
        guard case .processed(let written) = result else { return false }
        consume(written)
        return true
    }

    /// Writes as much as the socket takes; true when the queue is empty afterwards.
    mutating func write(to fd: Int32) throws(SystemError) -> Bool {
        while count > 0 {
            let vectorCount = min(pieces.count - head, Self.maxVectors)
            var offered = 0
            let result = try withUnsafeTemporaryAllocation(of: iovec.self, capacity: vectorCount) { vectors throws(SystemError) -> IOResult in
                for i in 0..<vectorCount {
                    let piece = pieces[head + i]
                    vectors[i] = iovec(iov_base: piece.base + piece.start, iov_len: piece.end - piece.start)
                    offered += piece.end - piece.start
                }
                return try Posix.write(fd, vectors: vectors.baseAddress!, count: vectorCount)
            }
            guard case .processed(let written) = result else { return false }
            consume(written)
            if written < offered { return false }  // a short write: the socket buffer is full
        }
        return true
    }

    private mutating func consume(_ written: Int) {
        var left = written
        count -= written
        while left > 0 {
            let size = pieces[head].end - pieces[head].start
            if left < size {
                pieces[head].start += left
                return
            }
            left -= size
            finishHead()
        }
    }

    /// Drops the head piece once its bytes are written, keeping the last copy chunk for reuse.
    private mutating func finishHead() {
        let piece = pieces[head]
        if piece.capacity > 0 && head == pieces.count - 1 {
            pieces[head].start = 0
            pieces[head].end = 0
            compact()
            return
        }
        Self.release(piece)
        head += 1
        compact()
    }

    private mutating func compact() {
        if head == pieces.count {
            pieces.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 32 && head * 2 >= pieces.count {
            pieces.removeFirst(head)
            head = 0
        }
    }

    private static func release(_ piece: Piece) {
        if let meter = piece.meter {
            meter.subtract(HandOverBuffer.queuedCount(piece.base))
            HandOverBuffer.release(piece.base)
        } else {
            free(piece.base)
        }
    }

    /// Frees everything, written or not (the peer is gone).
    mutating func removeAll() {
        var i = head
        while i < pieces.count {
            Self.release(pieces[i])
            i += 1
        }
        pieces.removeAll()
        head = 0
        count = 0
    }
}
