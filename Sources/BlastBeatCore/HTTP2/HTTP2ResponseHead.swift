/// A backend's HTTP/1.1 response head as HTTP/2 fields (RFC 9113 §8.3.2): `:status` first, then the header
/// lines with lowercase names, without the connection-specific ones HTTP/2 forbids (§8.2.2: Connection
/// and the fields it names, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE).
///
/// Names and values are ranges into `storage`, which the conversion owns and reuses between responses.
package struct HTTP2ResponseHead: Sendable {
    package private(set) var storage: [UInt8] = []
    package private(set) var fields: [(name: Range<Int>, value: Range<Int>)] = []
    /// The backend framed the body with its own chunked encoding: its `body` bytes must be decoded.
    package private(set) var isChunked = false
    package private(set) var status = 0
    /// The head's Content-Length, when it has one (valid: the response head parser checked it).
    package private(set) var contentLength: Int?

    package init() {}

    private static let dropped: [StaticString] = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    ]

    /// Converts `head` (a complete, already validated response head ending with its blank line).
    package mutating func convert(_ head: RawSpan, status: Int) {
        head.withUnsafeBytes { convert($0, status: status) }
    }

    package mutating func convert(_ head: UnsafeRawBufferPointer, status: Int) {
        storage.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        isChunked = false
        contentLength = nil
        self.status = status
        storage.append(contentsOf: ":status".utf8)
        let digits = Array(String(status).utf8)
        storage.append(contentsOf: digits)
        fields.append((0..<7, 7..<(7 + digits.count)))

        var nominated: [[UInt8]] = []
        var lines: [(name: Range<Int>, value: Range<Int>)] = []
        var lineStart = 0
        var first = true
        while lineStart < head.count {
            var lineEnd = lineStart
            while lineEnd < head.count && head[lineEnd] != 0x0A { lineEnd += 1 }
            var end = lineEnd
            if end > lineStart && head[end - 1] == 0x0D { end -= 1 }
            defer { lineStart = lineEnd + 1 }
            if first {
                first = false  // the status line
                continue
            }
            if end == lineStart { break }  // the blank line
            guard let colon = head[lineStart..<end].firstIndex(of: 0x3A) else { continue }
            var valueStart = colon + 1
            while valueStart < end && (head[valueStart] == 0x20 || head[valueStart] == 0x09) { valueStart += 1 }
            var valueEnd = end
            while valueEnd > valueStart && (head[valueEnd - 1] == 0x20 || head[valueEnd - 1] == 0x09) { valueEnd -= 1 }
            lines.append((lineStart..<colon, valueStart..<valueEnd))
            let name = UnsafeRawBufferPointer(rebasing: head[lineStart..<colon])
            let value = UnsafeRawBufferPointer(rebasing: head[valueStart..<valueEnd])
            if HTTPSyntax.equalsIgnoringCase(name, "connection") {
                for token in value.split(separator: 0x2C) {
                    let trimmed = token.drop(while: { $0 == 0x20 || $0 == 0x09 }).reversed().drop(while: { $0 == 0x20 || $0 == 0x09 }).reversed()
                    nominated.append(trimmed.map(Self.lowercased))
                }
            } else if HTTPSyntax.equalsIgnoringCase(name, "content-length") {
                var length = 0
                for digit in value where digit >= 0x30 && digit <= 0x39 && length < Int.max / 10 - 9 {
                    length = length * 10 + Int(digit - 0x30)
                }
                contentLength = length
            } else if HTTPSyntax.equalsIgnoringCase(name, "transfer-encoding") {
                isChunked = value.split(separator: 0x2C).contains { token in
                    let t = token.drop(while: { $0 == 0x20 || $0 == 0x09 })
                    return t.count >= 7 && HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: t.prefix(7)), "chunked")
                }
            }
        }
        for line in lines {
            let name = UnsafeRawBufferPointer(rebasing: head[line.name])
            if Self.dropped.contains(where: { HTTPSyntax.equalsIgnoringCase(name, $0) }) { continue }
            let lower = name.map(Self.lowercased)
            if nominated.contains(lower) { continue }
            let nameStart = storage.count
            storage.append(contentsOf: lower)
            let valueStart = storage.count
            storage.append(contentsOf: head[line.value])
            fields.append((nameStart..<valueStart, valueStart..<storage.count))
        }
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}
