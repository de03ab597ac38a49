/// Writes the frames a server sends (RFC 6455 §5.2): never masked, with the shortest length encoding.
///
/// Every function appends to an `inout [UInt8]` that the caller owns and reuses (typically a connection's output
/// buffer). For data frames the caller may write only the header with `writeHeader` and append or `writev` the payload
/// from where it already is, so a large message is not copied twice.
///
/// Misuse (a control frame over 125 bytes or without FIN, RSV1 on a control or continuation frame, a reserved close
/// code) is our bug and traps; nothing a peer sends reaches these preconditions.
package enum WebSocketFrameEncoder {
    /// Bytes `writeHeader` appends for a payload of `payloadLength` bytes: 2, 4 or 10.
    package static func headerSize(payloadLength: Int) -> Int {
        switch payloadLength {
        case ..<126: return 2
        case ..<65536: return 4
        default: return 10
        }
    }

    /// Appends a frame header. `rsv1` marks the first frame of a compressed message (permessage-deflate).
    package static func writeHeader(
        into output: inout [UInt8],
        opcode: WebSocketOpcode,
        fin: Bool = true,
        rsv1: Bool = false,
        payloadLength: Int
    ) {
        precondition(payloadLength >= 0, "negative payload length")
        if opcode.isControl {
            precondition(fin, "control frames cannot be fragmented")
            precondition(payloadLength <= WebSocketFrameLimits.maxControlPayload, "control payload over 125 bytes")
        }
        precondition(!rsv1 || opcode == .text || opcode == .binary, "RSV1 only on the first frame of a data message")
        var firstByte = opcode.rawValue
        if fin { firstByte |= 0x80 }
        if rsv1 { firstByte |= 0x40 }
        output.append(firstByte)
        switch payloadLength {
        case ..<126:
            output.append(UInt8(payloadLength))
        case ..<65536:
            output.append(126)
            output.append(UInt8(truncatingIfNeeded: payloadLength >> 8))
            output.append(UInt8(truncatingIfNeeded: payloadLength))
        default:
            output.append(127)
            let length = UInt64(payloadLength)
            for shift in stride(from: 56, through: 0, by: -8) {
                output.append(UInt8(truncatingIfNeeded: length >> UInt64(shift)))
            }
        }
    }

    /// Appends a whole frame: header, then `payload`.
    package static func writeFrame(
        into output: inout [UInt8],
        opcode: WebSocketOpcode,
        fin: Bool = true,
        rsv1: Bool = false,
        payload: UnsafeRawBufferPointer
    ) {
        Self.writeHeader(into: &output, opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payload.count)
        output.append(contentsOf: payload)
    }

    /// Appends a ping frame; `payload` is at most 125 bytes.
    package static func writePing(into output: inout [UInt8], payload: RawSpan) {
        payload.withUnsafeBytes { Self.writeFrame(into: &output, opcode: .ping, payload: $0) }
    }

    /// Appends a pong frame; `payload` is at most 125 bytes (echo the ping's payload, RFC 6455 §5.5.3).
    package static func writePong(into output: inout [UInt8], payload: RawSpan) {
        payload.withUnsafeBytes { Self.writeFrame(into: &output, opcode: .pong, payload: $0) }
    }

    /// Appends a close frame.
    ///
    /// - Parameters:
    ///   - code: nil sends an empty payload (then `reason` must be empty). 1005, 1006 and 1015 are reserved for
    ///     local use and trap.
    ///   - reason: UTF-8 text. Cut to 123 bytes at a character boundary so the payload fits a control frame;
    ///     a close reason is for humans, so losing its tail beats failing the close.
    package static func writeClose(into output: inout [UInt8], code: WebSocketCloseCode?, reason: RawSpan) {
        reason.withUnsafeBytes { writeClose(into: &output, code: code, reason: $0) }
    }

    package static func writeClose(
        into output: inout [UInt8],
        code: WebSocketCloseCode?,
        reason: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) {
        guard let code else {
            precondition(reason.isEmpty, "a close reason needs a close code")
            Self.writeHeader(into: &output, opcode: .close, payloadLength: 0)
            return
        }
        precondition(
            code != .noStatusReceived && code != .abnormalClosure && code.rawValue != 1015,
            "close code \(code) is reserved for local use"
        )
        let maxReason = WebSocketFrameLimits.maxControlPayload - 2
        var reasonCount = reason.count
        if reasonCount > maxReason {
            reasonCount = maxReason
            // Step back over continuation bytes so no character is split.
            while reasonCount > 0 && reason[reasonCount] & 0xC0 == 0x80 {
                reasonCount -= 1
            }
        }
        Self.writeHeader(into: &output, opcode: .close, payloadLength: 2 + reasonCount)
        output.append(UInt8(truncatingIfNeeded: code.rawValue >> 8))
        output.append(UInt8(truncatingIfNeeded: code.rawValue))
        output.append(contentsOf: UnsafeRawBufferPointer(rebasing: reason[0..<reasonCount]))
    }
}
