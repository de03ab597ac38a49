package import BlastBeatCore
internal import CZlib

/// Why zlib refused to compress or decompress; shared by DeflateStream and InflateStream.
package enum ZlibError: Error, Equatable, Sendable, CustomStringConvertible {
    /// deflateInit2 / inflateInit2 failed: `code` is Z_MEM_ERROR (out of memory), Z_STREAM_ERROR (bad parameters)
    /// or Z_VERSION_ERROR (header and library disagree).
    case initializationFailed(call: String, code: Int32)
    /// The peer's compressed data is corrupt (Z_DATA_ERROR, or a preset dictionary was asked for). `message` is
    /// zlib's own, e.g. "invalid distance too far back".
    case invalidData(message: String)
    /// The message decompresses to more than `limit` bytes (zip-bomb protection); decompression stopped there.
    case outputLimitExceeded(limit: Int)
    /// Any other return code: zlib misuse or out of memory, i.e. our problem rather than the peer's.
    case failed(call: String, code: Int32)

    /// The WebSocket close code for this failure while handling a client's message: corrupt data is bad payload
    /// (1007), too much of it is 1009, everything else is on our side (1011).
    package var closeCode: WebSocketCloseCode {
        switch self {
        case .invalidData: return .invalidFramePayloadData
        case .outputLimitExceeded: return .messageTooBig
        case .initializationFailed, .failed: return .internalServerError
        }
    }

    package var description: String {
        switch self {
        case .initializationFailed(let call, let code): return "\(call) failed: \(Self.name(code))"
        case .invalidData(let message): return "invalid deflate data: \(message)"
        case .outputLimitExceeded(let limit): return "message decompresses to more than \(limit) bytes"
        case .failed(let call, let code): return "\(call) failed: \(Self.name(code))"
        }
    }

    private static func name(_ code: Int32) -> String {
        switch code {
        case Z_STREAM_ERROR: return "Z_STREAM_ERROR"
        case Z_DATA_ERROR: return "Z_DATA_ERROR"
        case Z_MEM_ERROR: return "Z_MEM_ERROR"
        case Z_BUF_ERROR: return "Z_BUF_ERROR"
        case Z_VERSION_ERROR: return "Z_VERSION_ERROR"
        case Z_NEED_DICT: return "Z_NEED_DICT"
        default: return "zlib code \(code)"
        }
    }

    /// zlib's message for the last error on `stream`, or the code's name.
    static func message(_ stream: UnsafeMutablePointer<z_stream>, code: Int32) -> String {
        if let msg = stream.pointee.msg {
            return String(cString: msg)
        }
        return Self.name(code)
    }
}

extension UnsafeMutablePointer where Pointee == z_stream {
    /// Appends `room` bytes to `output`, points the stream's next_out/avail_out at them for one zlib `call`, and
    /// trims what the call left unused. next_out is cleared afterwards: the array may move.
    ///
    /// - Returns: zlib's return code, the bytes produced, and whether the room was filled completely.
    func callWithOutput(
        room: Int,
        appendingTo output: inout [UInt8],
        _ call: (UnsafeMutablePointer<z_stream>) -> Int32
    ) -> (code: Int32, produced: Int, filled: Bool) {
        let room = Swift.min(room, Int(UInt32.max))
        // zlib writes into scratch memory; only what it produced is appended (one memcpy). Growing the array
        // with `repeatElement(0, count: room)` first is an element-by-element loop in debug builds.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: room) { scratch in
            self.pointee.next_out = scratch.baseAddress!
            self.pointee.avail_out = UInt32(room)
            let code = call(self)
            let unused = Int(self.pointee.avail_out)
            self.pointee.next_out = nil
            self.pointee.avail_out = 0
            output.appendBytes(UnsafeRawBufferPointer(start: scratch.baseAddress!, count: room - unused))
            return (code, room - unused, unused == 0)
        }
    }

    /// Points next_in/avail_in at up to 4 GiB of `input` from `offset`; returns how many bytes that is.
    /// The pointer is valid only while `input` is, so callers clear next_in before returning.
    func setInput(_ input: UnsafeRawBufferPointer, from offset: Int) -> Int {
        let count = Swift.min(input.count - offset, Int(UInt32.max))
        if count == 0 {
            self.pointee.next_in = nil
        } else {
            let start = input.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self)
            self.pointee.next_in = UnsafeMutablePointer<Bytef>(mutating: start)
        }
        self.pointee.avail_in = UInt32(count)
        return count
    }
}
