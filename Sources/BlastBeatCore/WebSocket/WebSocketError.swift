/// Why a client's WebSocket input is refused; `closeCode` is the code the gateway sends in its close frame before
/// closing the connection (RFC 6455 §7.1.7 "fail the WebSocket connection").
package enum WebSocketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A client frame without the MASK bit (RFC 6455 §5.1).
    case unmaskedFrame
    /// RSV2 or RSV3 set: no negotiated extension defines them.
    case reservedBitsSet
    /// RSV1 set although permessage-deflate was not negotiated, or on a control or continuation frame.
    case unexpectedRSV1(WebSocketOpcode)
    /// Opcode 0x3–0x7 or 0xB–0xF.
    case reservedOpcode(UInt8)
    /// A close, ping or pong frame without FIN.
    case fragmentedControlFrame(WebSocketOpcode)
    /// A control frame whose payload is longer than 125 bytes.
    case controlFrameTooLong(WebSocketOpcode)
    /// A 64-bit payload length with the most significant bit set.
    case invalidPayloadLength
    /// The frame declares a payload longer than `limit` bytes.
    case frameTooLarge(limit: Int)
    /// The fragments of one message add up to more than `limit` bytes.
    case messageTooLarge(limit: Int)
    /// A continuation frame with no fragmented message in progress.
    case unexpectedContinuation
    /// A text or binary frame while a fragmented message is still waiting for its last fragment.
    case expectedContinuation(WebSocketOpcode)
    /// A text message (or a close reason) that is not valid UTF-8. `offset` counts from the start of the message
    /// (or of the close payload) to the first byte that cannot be part of a valid sequence; for a message cut off
    /// in the middle of a sequence it is the message length.
    case invalidUTF8(offset: Int)
    /// A close frame whose payload is 1 byte long.
    case closePayloadTooShort
    /// A close frame with a code a peer may not send (see `WebSocketCloseCode.isValidInCloseFrame`).
    case invalidCloseCode(UInt16)

    /// The code of the close frame that fails the connection.
    package var closeCode: WebSocketCloseCode {
        switch self {
        case .frameTooLarge, .messageTooLarge:
            return .messageTooBig
        case .invalidUTF8:
            return .invalidFramePayloadData
        case .unmaskedFrame, .reservedBitsSet, .unexpectedRSV1, .reservedOpcode, .fragmentedControlFrame,
            .controlFrameTooLong, .invalidPayloadLength, .unexpectedContinuation, .expectedContinuation,
            .closePayloadTooShort, .invalidCloseCode:
            return .protocolError
        }
    }

    package var description: String {
        switch self {
        case .unmaskedFrame: return "client frame is not masked"
        case .reservedBitsSet: return "frame has RSV2 or RSV3 set"
        case .unexpectedRSV1(let opcode): return "\(opcode) frame has RSV1 set but no extension allows it there"
        case .reservedOpcode(let value): return "reserved opcode 0x\(String(value, radix: 16))"
        case .fragmentedControlFrame(let opcode):
            return "\(opcode) frame without FIN (control frames cannot be fragmented)"
        case .controlFrameTooLong(let opcode): return "\(opcode) frame payload longer than 125 bytes"
        case .invalidPayloadLength: return "64-bit payload length has its most significant bit set"
        case .frameTooLarge(let limit): return "frame payload larger than \(limit) bytes"
        case .messageTooLarge(let limit): return "message larger than \(limit) bytes"
        case .unexpectedContinuation: return "continuation frame without a fragmented message in progress"
        case .expectedContinuation(let opcode): return "\(opcode) frame inside a fragmented message"
        case .invalidUTF8(let offset): return "invalid UTF-8 at byte \(offset) of a text message or close reason"
        case .closePayloadTooShort: return "close frame payload of 1 byte"
        case .invalidCloseCode(let code): return "close code \(code) may not be sent by a peer"
        }
    }
}
