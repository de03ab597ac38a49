/// ZMTP 3.x frame headers: one flags byte, then the body size in one byte or, with LONG, in
/// eight (network byte order).
package enum ZMTPFrame {
    package static let more: UInt8 = 0x01
    package static let long: UInt8 = 0x02
    package static let command: UInt8 = 0x04
    /// The most a header takes: flags plus an 8-byte size.
    package static let maxHeaderSize = 9

    /// One frame header read from the front of a buffer.
    package struct Header: Equatable, Sendable {
        package var flags: UInt8
        package var bodySize: UInt64
        /// Bytes of the header itself (2 or 9).
        package var headerSize: Int

        package init(flags: UInt8, bodySize: UInt64, headerSize: Int) {
            self.flags = flags
            self.bodySize = bodySize
            self.headerSize = headerSize
        }

        package var hasMore: Bool { flags & ZMTPFrame.more != 0 }
        package var isCommand: Bool { flags & ZMTPFrame.command != 0 }
    }

    package enum Decoded: Equatable, Sendable {
        case header(Header)
        /// The buffer does not hold the whole header yet.
        case needMore
        /// Reserved flag bits set, or a command with MORE (RFC 23 forbids both).
        case invalid
    }

    /// Reads the header at the start of `bytes`. Runs once per frame on the backend read path, so it
    /// reads through the span's pointer instead of a bounds check per byte: the checks below are the
    /// only ones needed.
    package static func decodeHeader(_ bytes: RawSpan) -> Decoded {
        bytes.withUnsafeBytes { decodeHeader(unchecked: $0) }
    }

    private static func decodeHeader(unchecked bytes: UnsafeRawBufferPointer) -> Decoded {
        guard let flags = bytes.first else { return .needMore }
        if flags & 0xF8 != 0 { return .invalid }
        if flags & command != 0 && flags & more != 0 { return .invalid }
        if flags & long == 0 {
            guard bytes.count >= 2 else { return .needMore }
            return .header(Header(flags: flags, bodySize: UInt64(bytes[1]), headerSize: 2))
        }
        guard bytes.count >= 9 else { return .needMore }
        var size: UInt64 = 0
        for i in 1...8 { size = size << 8 | UInt64(bytes[i]) }
        return .header(Header(flags: flags, bodySize: size, headerSize: 9))
    }

    /// Writes a header for a body of `size` bytes at `destination` (which has room for
    /// `maxHeaderSize`); returns the bytes written. Short form up to 255 bytes, as the spec requires.
    @inline(__always)
    package static func encodeHeader(size: Int, more hasMore: Bool, command isCommand: Bool, into destination: UnsafeMutableRawPointer) -> Int {
        var flags: UInt8 = hasMore ? more : 0
        if isCommand { flags |= command }
        if size <= 255 {
            destination.storeBytes(of: flags, as: UInt8.self)
            destination.storeBytes(of: UInt8(truncatingIfNeeded: size), toByteOffset: 1, as: UInt8.self)
            return 2
        }
        destination.storeBytes(of: flags | long, as: UInt8.self)
        destination.storeBytes(of: UInt64(size).bigEndian, toByteOffset: 1, as: UInt64.self)
        return 9
    }

    /// Header size for a body of `size` bytes.
    @inline(__always)
    package static func headerSize(for size: Int) -> Int { size <= 255 ? 2 : 9 }
}
