package import BlastBeatCore
internal import CZlib

/// The server's permessage-deflate compressor (RFC 7692 §7.2.1): one raw-deflate z_stream per WebSocket connection.
///
/// Each message is compressed with Z_SYNC_FLUSH and the trailing `00 00 ff ff` of the flush is removed, as the RFC
/// asks. With context takeover the LZ77 window carries over to the next message; with `noContextTakeover` the
/// stream is reset after each message. The z_stream lives in memory allocated here, because zlib keeps a pointer
/// to it in its internal state; it is freed in deinit. Not thread-safe: one connection, one loop thread.
package final class DeflateStream {
    private let stream: UnsafeMutablePointer<z_stream>
    private let noContextTakeover: Bool

    /// - Parameters:
    ///   - windowBits: 9...15 (use `PerMessageDeflateParameters.deflateWindowBits`, which maps an agreed 8 to 9).
    ///   - level: zlib compression level, 0...9 or -1 for zlib's default (6).
    ///   - memoryLevel: 1...9; zlib's default 8 costs 128 KiB of state per connection, lower saves memory.
    package init(windowBits: Int, noContextTakeover: Bool, level: Int = -1, memoryLevel: Int = 8) throws(ZlibError) {
        precondition((9...15).contains(windowBits), "raw deflate windowBits must be 9...15")
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let code = CZlib_deflateInit2(
            stream,
            Int32(level),
            Z_DEFLATED,
            -Int32(windowBits),
            Int32(memoryLevel),
            Z_DEFAULT_STRATEGY
        )
        guard code == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw .initializationFailed(call: "deflateInit2", code: code)
        }
        self.stream = stream
        self.noContextTakeover = noContextTakeover
    }

    /// The compressor for the server side of `parameters`.
    package convenience init(
        parameters: PerMessageDeflateParameters,
        level: Int = -1,
        memoryLevel: Int = 8
    )
        throws(ZlibError)
    {
        try self.init(
            windowBits: parameters.deflateWindowBits,
            noContextTakeover: parameters.serverNoContextTakeover,
            level: level,
            memoryLevel: memoryLevel
        )
    }

    deinit {
        deflateEnd(self.stream)
        self.stream.deinitialize(count: 1)
        self.stream.deallocate()
    }

    /// Compresses one whole message and appends the frame payload (to be sent with RSV1 on its first frame).
    ///
    /// An empty message becomes the single byte `00` (RFC 7692 §7.2.3.6) without touching the stream: a second
    /// sync flush with no input in between would produce nothing at all, and `00` is valid in any stream state.
    /// After a throw the stream is unusable; the connection is closed anyway.
    package func compressMessage(_ input: RawSpan, into output: inout [UInt8]) throws(ZlibError) {
        try input.withUnsafeBytes { (input) throws(ZlibError) in try compressMessage(input, into: &output) }
    }

    package func compressMessage(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws(ZlibError) {
        guard !input.isEmpty else {
            output.append(0x00)
            return
        }
        defer {
            self.stream.pointee.next_in = nil
            self.stream.pointee.avail_in = 0
        }
        let start = output.count
        var offset = 0
        // Incompressible input grows by 5 bytes per stored block of up to 64 KiB, plus the flush marker, so this
        // is nearly always one call.
        var room = input.count + input.count / 4096 + 64
        while true {
            if self.stream.pointee.avail_in == 0 {
                offset += self.stream.setInput(input, from: offset)
            }
            let (code, _, filled) = self.stream.callWithOutput(room: room, appendingTo: &output) {
                deflate($0, Z_SYNC_FLUSH)
            }
            switch code {
            case Z_OK, Z_BUF_ERROR:
                // Z_BUF_ERROR: no progress possible, i.e. everything was already flushed into the last room.
                let allInputGiven = self.stream.pointee.avail_in == 0 && offset == input.count
                if allInputGiven && (!filled || code == Z_BUF_ERROR) {
                    break
                }
                room = max(room, 4096)
                continue
            default:
                throw .failed(call: "deflate", code: code)
            }
            break
        }

        // Z_SYNC_FLUSH always ends with an empty stored block, whose last four bytes are 00 00 ff ff.
        let end = output.count
        guard end - start >= 4, output[end - 4] == 0x00, output[end - 3] == 0x00, output[end - 2] == 0xFF,
            output[end - 1] == 0xFF
        else {
            throw .failed(call: "deflate (no sync flush marker)", code: Z_STREAM_ERROR)
        }
        output.removeLast(4)

        if self.noContextTakeover {
            let code = deflateReset(self.stream)
            guard code == Z_OK else { throw .failed(call: "deflateReset", code: code) }
        }
    }
}
