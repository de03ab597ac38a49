package import BlastBeatCore
internal import CZlib

/// The server's permessage-deflate decompressor (RFC 7692 §7.2.2): one raw-inflate z_stream per WebSocket
/// connection, with a hard cap on each message's decompressed size.
///
/// Feed a message's frame payloads with `decompress` as they arrive (so UTF-8 can be checked as text appears), then
/// call `finishMessage`, which appends the `00 00 ff ff` the sender removed and, with `noContextTakeover`, resets
/// the window. `decompressMessage` does both for a whole message. Output never grows past `limit + 1` bytes for a
/// message, however small the input: that is the zip-bomb protection (a 1 MiB frame can inflate to 1 GiB).
///
/// A DEFLATE block with BFINAL set ends zlib's stream; RFC 7692 §7.2.3.4 allows it, so the stream is reset there
/// and decoding goes on. The z_stream is allocated here (zlib keeps a pointer to it) and freed in deinit. After a
/// throw the stream is unusable; the connection is failed anyway. Not thread-safe: one connection, one loop thread.
package final class InflateStream {
    private let stream: UnsafeMutablePointer<z_stream>
    private let noContextTakeover: Bool
    /// Bytes produced so far for the current message.
    private var messageOutputCount = 0
    /// Whether the current message has had any compressed input.
    private var messageHasInput = false

    private static let syncFlushTail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

    /// - Parameter windowBits: 8...15, the client's agreed window (`PerMessageDeflateParameters.inflateWindowBits`);
    ///   inflating with a larger window than the sender used is always safe, a smaller one fails on far matches.
    package init(windowBits: Int, noContextTakeover: Bool) throws(ZlibError) {
        precondition((8...15).contains(windowBits), "raw inflate windowBits must be 8...15")
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let code = CZlib_inflateInit2(stream, -Int32(windowBits))
        guard code == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw .initializationFailed(call: "inflateInit2", code: code)
        }
        self.stream = stream
        self.noContextTakeover = noContextTakeover
    }

    /// The decompressor for the client side of `parameters`.
    package convenience init(parameters: PerMessageDeflateParameters) throws(ZlibError) {
        try self.init(windowBits: parameters.inflateWindowBits, noContextTakeover: parameters.clientNoContextTakeover)
    }

    deinit {
        inflateEnd(self.stream)
        self.stream.deinitialize(count: 1)
        self.stream.deallocate()
    }

    /// Decompresses a whole message (the payloads of all its frames, joined) and appends it to `output`.
    ///
    /// - Parameter limit: the largest decompressed message accepted, in bytes.
    package func decompressMessage(_ input: RawSpan, into output: inout [UInt8], limit: Int) throws(ZlibError) {
        try input.withUnsafeBytes { (input) throws(ZlibError) in try decompressMessage(input, into: &output, limit: limit) }
    }

    package func decompressMessage(
        _ input: UnsafeRawBufferPointer,
        into output: inout [UInt8],
        limit: Int
    )
        throws(ZlibError)
    {
        try self.decompress(input, into: &output, limit: limit)
        try self.finishMessage(into: &output, limit: limit)
    }

    /// Decompresses the next part of the current message and appends what it yields to `output`. Some output may
    /// be held back until more input or `finishMessage` arrives.
    ///
    /// - Parameter limit: the largest decompressed message accepted, counted over all parts of the message.
    /// - Throws: `outputLimitExceeded` once the message passes `limit` (output then holds `limit + 1` bytes of
    ///   it), `invalidData` for corrupt input.
    package func decompress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8], limit: Int) throws(ZlibError) {
        guard !input.isEmpty else { return }
        self.messageHasInput = true
        defer {
            self.stream.pointee.next_in = nil
            self.stream.pointee.avail_in = 0
        }
        var offset = 0
        // Text typically inflates 3–10x; start there and double, never past the remaining budget + 1 byte.
        var room = max(input.count * 4, 1024)
        while true {
            if self.stream.pointee.avail_in == 0 {
                offset += self.stream.setInput(input, from: offset)
            }
            let budget = limit - self.messageOutputCount
            let (code, produced, filled) = self.stream.callWithOutput(room: min(room, budget + 1), appendingTo: &output)
            {
                inflate($0, Z_SYNC_FLUSH)
            }
            self.messageOutputCount += produced
            if self.messageOutputCount > limit {
                throw .outputLimitExceeded(limit: limit)
            }
            let allInputGiven = self.stream.pointee.avail_in == 0 && offset == input.count
            switch code {
            case Z_OK:
                if allInputGiven && !filled { return }
            case Z_BUF_ERROR:
                // No progress possible: either all input is used up, or output was full (retry with room).
                if allInputGiven && !filled { return }
                if !filled {
                    throw .failed(call: "inflate", code: code)
                }
            case Z_STREAM_END:
                // The sender set BFINAL: what follows, if anything, starts a new DEFLATE stream.
                let reset = inflateReset(self.stream)
                guard reset == Z_OK else { throw .failed(call: "inflateReset", code: reset) }
                if allInputGiven { return }
            case Z_DATA_ERROR, Z_NEED_DICT:
                throw .invalidData(message: ZlibError.message(self.stream, code: code))
            default:
                throw .failed(call: "inflate", code: code)
            }
            // More room only when the output filled it, and never past the budget: a payload of many empty
            // final blocks goes round this loop once per block, and doubling on each round overflowed `room`
            // (a trap: one WebSocket frame of `03 00` × 60 stopped the gateway; found by the inflate fuzzer).
            if filled && room <= budget { room *= 2 }
        }
    }

    /// Ends the current message: appends the removed `00 00 ff ff` tail, flushes the last output, and resets the
    /// window if the client does not take over context. The next call to `decompress` starts a new message.
    ///
    /// A message whose compressed payload was empty is taken as an empty message and does not touch the stream
    /// (zlib would read the tail as the start of a stored block). A payload that, with the tail, does not end on a
    /// DEFLATE block boundary is `invalidData`: it is truncated, and the next message would be misread.
    package func finishMessage(into output: inout [UInt8], limit: Int) throws(ZlibError) {
        defer {
            self.messageOutputCount = 0
            self.messageHasInput = false
        }
        guard self.messageHasInput else { return }
        let result = Self.syncFlushTail.withUnsafeBytes { tail in
            Result { () throws(ZlibError) in try self.decompress(tail, into: &output, limit: limit) }
        }
        try result.get()
        // zlib sets bit 7 of data_type when inflate stopped between blocks.
        guard self.stream.pointee.data_type & 128 != 0 else {
            throw .invalidData(message: "message does not end on a DEFLATE block boundary")
        }
        if self.noContextTakeover {
            let code = inflateReset(self.stream)
            guard code == Z_OK else { throw .failed(call: "inflateReset", code: code) }
        }
    }
}
