@testable import BlastBeatSystem
import Glibc
import Testing

/// The native engine's per-peer output queue against a real socket: a Unix socket pair whose writing end
/// is non-blocking with a small send buffer, so `write(to:)` meets short writes and EAGAIN.
@Suite struct ZMTPOutputQueueTests {
    /// (writing end, reading end); both non-blocking.
    static func socketPair(sendBuffer: Int32) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        let created = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
        precondition(created == 0, "socketpair failed")
        var size = sendBuffer
        setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return (fds[0], fds[1])
    }

    /// Reads everything the socket holds now.
    static func drain(_ fd: Int32, into received: inout [UInt8]) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            received += chunk[0..<n]
        }
    }

    /// A `HandOverBuffer` of `size` bytes following a pattern, and those bytes.
    static func handOver(_ size: Int, seed: Int) -> (UnsafeMutableRawPointer, [UInt8]) {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) }
        let buffer = HandOverBuffer.allocate(size)!
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: size) }
        return (buffer, bytes)
    }

    @Test func shortWritesResumeWhereTheyStoppedAndTheMeterCountsUntilWritten() throws {
        let (writer, reader) = Self.socketPair(sendBuffer: 4096)
        defer {
            close(writer)
            close(reader)
        }
        var queue = ZMTPOutputQueue()
        let meter = NodeQueueMeter()
        var expected: [UInt8] = []
        var handedOver = 0
        for round in 0..<6 {
            // Copied bytes (into a chunk) and handed-over bodies (queued as they are), interleaved.
            let small = (0..<(100 + round)).map { UInt8(truncatingIfNeeded: $0 &+ round) }
            small.withUnsafeBytes { queue.append($0) }
            expected += small
            let (buffer, bytes) = Self.handOver(50_000 + round, seed: round)
            queue.append(CountedBody(handingOver: buffer, count: bytes.count, meter: meter))
            expected += bytes
            handedOver += bytes.count
        }
        let queued = queue.count
        #expect(queued == expected.count)
        #expect(meter.queuedBytes == handedOver)

        var received: [UInt8] = []
        var shortWrites = 0
        var lastMeter = meter.queuedBytes
        while try !queue.write(to: writer) {
            shortWrites += 1
            Self.drain(reader, into: &received)
            // Nothing lost or repeated: what arrived plus what is queued is everything, in order.
            let left = queue.count
            #expect(received.count + left == expected.count)
            #expect(meter.queuedBytes <= lastMeter && meter.queuedBytes >= 0)
            lastMeter = meter.queuedBytes
            #expect(shortWrites < 10_000)
            if shortWrites >= 10_000 { break }
        }
        Self.drain(reader, into: &received)
        #expect(shortWrites > 0, "the small send buffer should have forced short writes")
        #expect(received == expected)
        let empty = queue.isEmpty
        #expect(empty)
        #expect(meter.queuedBytes == 0)
    }

    @Test func moreThanOneSendmsgOfPiecesGoesOutWhole() throws {
        let (writer, reader) = Self.socketPair(sendBuffer: 1 << 20)
        defer {
            close(writer)
            close(reader)
        }
        var queue = ZMTPOutputQueue()
        let meter = NodeQueueMeter()
        var expected: [UInt8] = []
        // 200 pieces: more than the 64 vectors one `sendmsg` takes.
        for i in 0..<200 {
            let (buffer, bytes) = Self.handOver(10 + i % 3, seed: i)
            queue.append(CountedBody(handingOver: buffer, count: bytes.count, meter: meter))
            expected += bytes
        }
        let done = try queue.write(to: writer)
        #expect(done)
        var received: [UInt8] = []
        Self.drain(reader, into: &received)
        #expect(received == expected)
        #expect(meter.queuedBytes == 0)
    }

    @Test func removeAllAndDestructionReleaseUnwrittenBodies() {
        let meter = NodeQueueMeter()
        var queue = ZMTPOutputQueue()
        queue.append(CountedBody(handingOver: Self.handOver(1000, seed: 1).0, count: 1000, meter: meter))
        [UInt8](repeating: 1, count: 10).withUnsafeBytes { queue.append($0) }
        #expect(meter.queuedBytes == 1000)
        queue.removeAll()
        let empty = queue.isEmpty
        #expect(meter.queuedBytes == 0 && empty)

        do {
            var dropped = ZMTPOutputQueue()
            dropped.append(CountedBody(handingOver: Self.handOver(300, seed: 2).0, count: 300, meter: meter))
            dropped.append(CountedBody(handingOver: Self.handOver(200, seed: 3).0, count: 200, meter: meter))
            #expect(meter.queuedBytes == 500)
        }
        // The queue's deinit freed both bodies (a leak here would also show under the sanitizers).
        #expect(meter.queuedBytes == 0)
    }

    @Test func aFullyWrittenQueueReusesItsLastChunk() throws {
        let (writer, reader) = Self.socketPair(sendBuffer: 1 << 16)
        defer {
            close(writer)
            close(reader)
        }
        var queue = ZMTPOutputQueue()
        let first = queue.reserve(100)
        queue.commit(100)
        let done = try queue.write(to: writer)
        #expect(done)
        let second = queue.reserve(100)
        #expect(first == second)
        queue.commit(0)
    }
}
