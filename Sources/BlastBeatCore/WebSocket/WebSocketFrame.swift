/// A frame's opcode (RFC 6455 §5.2). The reserved values 0x3–0x7 and 0xB–0xF have no case: `init(rawValue:)`
/// returns nil for them and the decoder fails the connection with 1002.
package enum WebSocketOpcode: UInt8, Sendable, CaseIterable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Close, ping and pong: never fragmented, payload at most 125 bytes, may arrive between the fragments of a
    /// data message.
    package var isControl: Bool {
        self.rawValue & 0x8 != 0
    }
}

/// The decoded header of one frame: everything except the masking key, which the decoder has already applied.
package struct WebSocketFrameHeader: Equatable, Sendable {
    /// FIN: this is the last frame of its message.
    package var fin: Bool
    /// RSV1: for a first data frame, "this message is compressed" (permessage-deflate, RFC 7692 §6).
    package var rsv1: Bool
    package var opcode: WebSocketOpcode
    /// Payload length in bytes, as declared by the frame.
    package var payloadLength: Int

    package init(fin: Bool, rsv1: Bool = false, opcode: WebSocketOpcode, payloadLength: Int) {
        self.fin = fin
        self.rsv1 = rsv1
        self.opcode = opcode
        self.payloadLength = payloadLength
    }
}

extension WebSocketFrameHeader: CustomStringConvertible {
    package var description: String {
        "\(self.opcode)(fin: \(self.fin), rsv1: \(self.rsv1), length: \(self.payloadLength))"
    }
}

/// Limits of the frame format itself (RFC 6455 §5.2, §5.5).
package enum WebSocketFrameLimits {
    /// Largest payload of a control frame.
    package static let maxControlPayload = 125
    /// Largest frame header a server writes: 2 bytes + 8-byte length (server frames are never masked).
    package static let maxServerHeaderSize = 10
    /// Largest frame header a client writes: 2 bytes + 8-byte length + 4-byte masking key.
    package static let maxClientHeaderSize = 14
}
