/// Incremental decoder for the frames a client sends (RFC 6455 §5.2): checks each header field as soon as its byte
/// arrives and unmasks the payload into a caller-owned buffer.
///
/// Call `decode` with whatever bytes the socket produced. It never stores the input pointer; the resume point lives
/// in `State`, so a frame may be split anywhere, down to one byte per read, and a read may hold several frames.
/// Each call stops at the first event, so the caller loops until the event is nil:
///
///     var offset = 0
///     while true {
///         let (consumed, event) = try decoder.decode(rest(from: offset), unmaskInto: &buffer)
///         offset += consumed
///         guard let event else { break }            // all input consumed, need more
///         switch event {
///         case .header(let header): ...              // choose `buffer` for this frame's payload
///         case .frame(let header): ...               // the payload is complete in `buffer`
///         }
///     }
///
/// Every frame gives exactly one `.header` and then one `.frame`, even when the payload is empty. Between the two,
/// each call appends the payload bytes it consumed (already unmasked) to `payload`; a caller that validates as data
/// arrives (UTF-8, size) looks at what was appended after each call. The caller must pass the same buffer for the
/// whole payload of one frame; it may pass a different one for the next frame (the message assembler keeps control
/// payloads apart from the message being assembled).
///
/// Rules checked here, all failing with the `WebSocketError` case named:
/// - opcode 0x3–0x7 / 0xB–0xF: `reservedOpcode` (1002)
/// - RSV2 or RSV3 set: `reservedBitsSet` (1002)
/// - RSV1 set without `allowRSV1`, or on a control or continuation frame: `unexpectedRSV1` (1002). Whether a frame
///   starts a message is visible from its opcode alone, so this needs no message state.
/// - control frame without FIN: `fragmentedControlFrame` (1002); with a length code above 125:
///   `controlFrameTooLong` (1002)
/// - no MASK bit while `requireMask`: `unmaskedFrame` (1002)
/// - 64-bit length with the top bit set: `invalidPayloadLength` (1002)
/// - length above `maxFrameSize`: `frameTooLarge` (1009), raised before any payload byte is read.
///
/// Non-minimal length encodings (e.g. code 126 with a length of 5) are accepted. RFC 6455 §5.2 puts the "minimal
/// number of bytes" MUST on the sender but asks no check of the receiver; nio, Autobahn and browsers accept them,
/// and rejecting them protects nothing.
///
/// After an error the decoder stays failed: every later call throws the same error again.
package struct WebSocketFrameDecoder {
    /// What a `decode` call stopped at.
    package enum Event: Equatable, Sendable {
        /// The header is complete and valid; `header.payloadLength` payload bytes follow.
        case header(WebSocketFrameHeader)
        /// The last payload byte of the frame has been appended.
        case frame(WebSocketFrameHeader)
    }

    /// Where decoding resumes. Each case holds only what is known at that point.
    private enum State {
        /// Between frames: waiting for FIN/RSV/opcode.
        case idle
        /// The first byte arrived and passed its checks; waiting for MASK + 7-bit length.
        case firstByteReceived(firstByte: UInt8)
        /// The 7-bit length was 126 or 127: `remaining` of the 2 or 8 extended length bytes are still due.
        case extendedLength(firstByte: UInt8, masked: Bool, isQWord: Bool, remaining: Int, value: UInt64)
        /// The length is known; `remaining` of the 4 masking-key bytes are still due.
        case maskingKey(header: WebSocketFrameHeader, remaining: Int, key: UInt32)
        /// `.header` has been returned; `remaining` payload bytes are due. `key` is nil for an unmasked frame.
        case payload(header: WebSocketFrameHeader, key: UInt32?, remaining: Int)
        /// A rule was broken; the connection is being failed.
        case failed(WebSocketError)
    }

    package let maxFrameSize: Int
    package let requireMask: Bool
    package let allowRSV1: Bool
    private var state: State = .idle

    /// - Parameters:
    ///   - maxFrameSize: largest payload accepted in one frame, in bytes.
    ///   - requireMask: true on the server (client frames must be masked). False accepts masked and unmasked frames.
    ///   - allowRSV1: true when permessage-deflate was negotiated.
    package init(maxFrameSize: Int, requireMask: Bool = true, allowRSV1: Bool = false) {
        precondition(maxFrameSize >= WebSocketFrameLimits.maxControlPayload, "maxFrameSize must allow control frames")
        self.maxFrameSize = maxFrameSize
        self.requireMask = requireMask
        self.allowRSV1 = allowRSV1
    }

    /// True between frames: no partial header or payload is pending (a connection that ends here ended cleanly at
    /// the frame level).
    package var isAtFrameBoundary: Bool {
        if case .idle = self.state { return true }
        return false
    }

    /// Consumes bytes from the start of `input` up to the next event and appends unmasked payload bytes to `payload`.
    ///
    /// - Returns: how many bytes of `input` were consumed, and the event, or nil once all of `input` is consumed
    ///   and more is needed. A non-nil event may leave input unconsumed; call again with the rest (even when the
    ///   rest is empty: a `.header` for an empty payload is followed by its `.frame` without any more input).
    package mutating func decode(
        _ input: UnsafeRawBufferPointer,
        unmaskInto payload: inout [UInt8]
    ) throws(WebSocketError) -> (consumed: Int, event: Event?) {
        var index = 0
        while true {
            switch self.state {
            case .failed(let error):
                throw error

            case .idle:
                guard index < input.count else { return (index, nil) }
                let firstByte = input[index]
                index += 1
                try self.checkFirstByte(firstByte)
                self.state = .firstByteReceived(firstByte: firstByte)

            case .firstByteReceived(let firstByte):
                guard index < input.count else { return (index, nil) }
                let byte = input[index]
                index += 1
                let masked = byte & 0x80 != 0
                if self.requireMask && !masked {
                    throw self.fail(.unmaskedFrame)
                }
                let lengthCode = byte & 0x7F
                switch lengthCode {
                case 126, 127:
                    if let opcode = WebSocketOpcode(rawValue: firstByte & 0x0F), opcode.isControl {
                        throw self.fail(.controlFrameTooLong(opcode))
                    }
                    let isQWord = lengthCode == 127
                    self.state = .extendedLength(
                        firstByte: firstByte,
                        masked: masked,
                        isQWord: isQWord,
                        remaining: isQWord ? 8 : 2,
                        value: 0
                    )
                default:
                    if let event = try self.lengthKnown(
                        firstByte: firstByte,
                        masked: masked,
                        length: UInt64(lengthCode)
                    ) {
                        return (index, event)
                    }
                }

            case .extendedLength(let firstByte, let masked, let isQWord, var remaining, var value):
                while remaining > 0 && index < input.count {
                    value = value << 8 | UInt64(input[index])
                    index += 1
                    remaining -= 1
                }
                guard remaining == 0 else {
                    self.state = .extendedLength(
                        firstByte: firstByte,
                        masked: masked,
                        isQWord: isQWord,
                        remaining: remaining,
                        value: value
                    )
                    return (index, nil)
                }
                if isQWord && value & (1 << 63) != 0 {
                    throw self.fail(.invalidPayloadLength)
                }
                if let event = try self.lengthKnown(firstByte: firstByte, masked: masked, length: value) {
                    return (index, event)
                }

            case .maskingKey(let header, var remaining, var key):
                while remaining > 0 && index < input.count {
                    key = key << 8 | UInt32(input[index])
                    index += 1
                    remaining -= 1
                }
                guard remaining == 0 else {
                    self.state = .maskingKey(header: header, remaining: remaining, key: key)
                    return (index, nil)
                }
                self.state = .payload(header: header, key: key, remaining: header.payloadLength)
                return (index, .header(header))

            case .payload(let header, let key, let remaining):
                if remaining == 0 {
                    self.state = .idle
                    return (index, .frame(header))
                }
                guard index < input.count else { return (index, nil) }
                let count = min(remaining, input.count - index)
                let chunk = UnsafeRawBufferPointer(rebasing: input[index..<(index + count)])
                if let key {
                    Self.appendUnmasked(chunk, key: key, position: header.payloadLength - remaining, to: &payload)
                } else {
                    payload.append(contentsOf: chunk)
                }
                index += count
                self.state = .payload(header: header, key: key, remaining: remaining - count)
            }
        }
    }

    /// Checks FIN, RSV1–3 and the opcode, all of which are in the first byte.
    private mutating func checkFirstByte(_ firstByte: UInt8) throws(WebSocketError) {
        guard let opcode = WebSocketOpcode(rawValue: firstByte & 0x0F) else {
            throw self.fail(.reservedOpcode(firstByte & 0x0F))
        }
        if firstByte & 0x30 != 0 {
            throw self.fail(.reservedBitsSet)
        }
        if firstByte & 0x40 != 0 {
            switch opcode {
            case .text, .binary:
                if !self.allowRSV1 { throw self.fail(.unexpectedRSV1(opcode)) }
            case .continuation, .close, .ping, .pong:
                throw self.fail(.unexpectedRSV1(opcode))
            }
        }
        if opcode.isControl && firstByte & 0x80 == 0 {
            throw self.fail(.fragmentedControlFrame(opcode))
        }
    }

    /// Moves on once the payload length is known; returns `.header` when no masking key follows.
    private mutating func lengthKnown(firstByte: UInt8, masked: Bool, length: UInt64) throws(WebSocketError) -> Event? {
        guard length <= UInt64(self.maxFrameSize) else {
            throw self.fail(.frameTooLarge(limit: self.maxFrameSize))
        }
        // checkFirstByte has rejected reserved opcodes.
        let opcode = WebSocketOpcode(rawValue: firstByte & 0x0F)!
        let header = WebSocketFrameHeader(
            fin: firstByte & 0x80 != 0,
            rsv1: firstByte & 0x40 != 0,
            opcode: opcode,
            payloadLength: Int(length)
        )
        if masked {
            self.state = .maskingKey(header: header, remaining: 4, key: 0)
            return nil
        }
        self.state = .payload(header: header, key: nil, remaining: header.payloadLength)
        return .header(header)
    }

    private mutating func fail(_ error: WebSocketError) -> WebSocketError {
        self.state = .failed(error)
        return error
    }

    /// Appends `chunk` XOR the masking key, where `chunk[0]` is payload byte number `position`.
    ///
    /// Works 8 bytes at a time: 8 is a multiple of the key length, so the key's phase is the same at every step.
    private static func appendUnmasked(
        _ chunk: UnsafeRawBufferPointer,
        key: UInt32,
        position: Int,
        to payload: inout [UInt8]
    ) {
        // Rotate the big-endian key so its first byte is the one for `position`.
        let shift = UInt32(position & 3) * 8
        let rotated = shift == 0 ? key : (key << shift) | (key >> (32 - shift))
        let maskBytes: (UInt8, UInt8, UInt8, UInt8) = (
            UInt8(truncatingIfNeeded: rotated >> 24), UInt8(truncatingIfNeeded: rotated >> 16),
            UInt8(truncatingIfNeeded: rotated >> 8), UInt8(truncatingIfNeeded: rotated)
        )
        // The same 8 bytes in memory order, whatever the host's endianness.
        var pattern: UInt64 = 0
        withUnsafeMutableBytes(of: &pattern) { bytes in
            for index in 0..<8 {
                switch index & 3 {
                case 0: bytes[index] = maskBytes.0
                case 1: bytes[index] = maskBytes.1
                case 2: bytes[index] = maskBytes.2
                default: bytes[index] = maskBytes.3
                }
            }
        }
        let start = payload.count
        payload.append(contentsOf: chunk)
        payload.withUnsafeMutableBytes { buffer in
            let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[start...])
            var index = 0
            while index + 8 <= bytes.count {
                let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                bytes.storeBytes(of: word ^ pattern, toByteOffset: index, as: UInt64.self)
                index += 8
            }
            while index < bytes.count {
                switch index & 3 {
                case 0: bytes[index] ^= maskBytes.0
                case 1: bytes[index] ^= maskBytes.1
                case 2: bytes[index] ^= maskBytes.2
                default: bytes[index] ^= maskBytes.3
                }
                index += 1
            }
        }
    }
}
