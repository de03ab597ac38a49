import Testing

@testable import BlastBeatCore

@Suite struct ByteBufferTests {
    func readable(_ buffer: ByteBuffer) -> [UInt8] { buffer.withReadableBytes { Array($0) } }

    @Test func consumingAPrefixLeavesTheRest() {
        var buffer = ByteBuffer()
        Array("hello world".utf8).withUnsafeBytes { buffer.append($0) }
        buffer.consume(6, keepingCapacity: 0)
        #expect(readable(buffer) == Array("world".utf8))
        #expect(buffer.readableCount == 5)
        buffer.append(Array("!".utf8))
        #expect(readable(buffer) == Array("world!".utf8))
    }

    /// As HTTP/2's data provider uses it: frames smaller than what is readable take a prefix each, the last one
    /// the rest, and nothing is written past what was readable.
    @Test func moveFillsTheTargetFromItsStartAndConsumes() {
        var buffer = ByteBuffer()
        buffer.append(Array("abcdefghij".utf8))
        var frame = [UInt8](repeating: 0x2E, count: 4)
        var moved: [Int] = []
        var frames: [[UInt8]] = []
        for _ in 0..<4 {
            for i in frame.indices { frame[i] = 0x2E }
            do {
                var elements = frame.mutableSpan
                var room = elements.mutableBytes
                moved.append(buffer.move(into: &room, keepingCapacity: 1024))
            }
            frames.append(frame)
        }
        #expect(moved == [4, 4, 2, 0])
        #expect(frames.map { String(decoding: $0, as: UTF8.self) } == ["abcd", "efgh", "ij..", "...."])
        #expect(buffer.isEmpty)
    }

    @Test func emptiedBufferKeepsOnlySmallStorage() {
        var small = ByteBuffer()
        small.append([UInt8](repeating: 1, count: 100))
        small.consume(100, keepingCapacity: 1024)
        #expect(small.isEmpty)
        #expect(small.storage.capacity >= 100)
        var big = ByteBuffer()
        big.append([UInt8](repeating: 1, count: 100_000))
        big.consume(100_000, keepingCapacity: 1024)
        #expect(big.isEmpty)
        #expect(big.storage.capacity == 0)
    }

    @Test func aLargeConsumedPrefixIsDropped() {
        var buffer = ByteBuffer()
        buffer.append([UInt8](0..<200) + [UInt8](repeating: 7, count: 9_800))
        buffer.consume(6_000, keepingCapacity: 0)
        #expect(buffer.readerIndex == 0)
        #expect(buffer.readableCount == 4_000)
        #expect(readable(buffer).allSatisfy { $0 == 7 })
        buffer.consume(10, keepingCapacity: 0)
        #expect(buffer.readerIndex == 10)  // a small prefix only moves the index
    }

    @Test func appendingWritesAfterTheUnreadBytes() {
        var buffer = ByteBuffer()
        buffer.append(Array("ab".utf8))
        buffer.consume(1, keepingCapacity: 0)
        buffer.appending { $0.append(contentsOf: Array("cd".utf8)) }
        #expect(readable(buffer) == Array("bcd".utf8))
        buffer.clear(keepingCapacity: 0)
        #expect(buffer.isEmpty && buffer.readableCount == 0)
    }

    @Test(arguments: [(0, "0"), (9, "9"), (10, "A"), (255, "FF"), (4096, "1000"), (65_535, "FFFF"), (1 << 40, "10000000000")])
    func chunkSizeLines(size: Int, hex: String) {
        var buffer = ByteBuffer()
        buffer.appendChunkSize(size)
        #expect(readable(buffer) == Array((hex + "\r\n").utf8))
    }
}
