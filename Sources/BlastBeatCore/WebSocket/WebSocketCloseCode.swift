/// A close status code (RFC 6455 §7.4), as sent in the first two bytes of a close frame's payload.
///
/// A struct rather than an enum because any 16-bit value can arrive on the wire; `isValidInCloseFrame` decides
/// whether a peer may send it.
package struct WebSocketCloseCode: RawRepresentable, Hashable, Sendable {
    package var rawValue: UInt16

    package init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    package init(_ rawValue: UInt16) {
        self.rawValue = rawValue
    }

    package static let normalClosure = Self(1000)
    package static let goingAway = Self(1001)
    package static let protocolError = Self(1002)
    package static let unsupportedData = Self(1003)
    /// Reserved: means "no code in the close frame". Never sent on the wire.
    package static let noStatusReceived = Self(1005)
    /// Reserved: means "closed without a close frame". Never sent on the wire.
    package static let abnormalClosure = Self(1006)
    package static let invalidFramePayloadData = Self(1007)
    package static let policyViolation = Self(1008)
    package static let messageTooBig = Self(1009)
    package static let mandatoryExtension = Self(1010)
    package static let internalServerError = Self(1011)

    /// Whether a peer may put this code in a close frame.
    ///
    /// Accepted: 1000–1003, 1007–1011 (the RFC 6455 codes that are not reserved-for-local-use), 3000–3999
    /// (IANA-registered for libraries and frameworks) and 4000–4999 (private use). Everything else is a protocol
    /// error (1002): 0–999, 1004 (reserved), 1005, 1006 and 1015 (never on the wire), 1012–1014 and the rest of
    /// 1016–2999 (reserved for future protocol versions; 1012–1014 were IANA-registered later, but this follows
    /// the RFC text and the Autobahn 7.9.x table, which treat them as invalid), and 5000+.
    package var isValidInCloseFrame: Bool {
        switch self.rawValue {
        case 1000...1003, 1007...1011, 3000...4999: return true
        default: return false
        }
    }
}

extension WebSocketCloseCode: CustomStringConvertible {
    package var description: String {
        String(self.rawValue)
    }
}

extension WebSocketCloseCode {
    /// The code in a received close frame's payload, or nil for an empty payload (RFC 6455 §5.5.1).
    ///
    /// Throws `closePayloadTooShort` for 1 byte, `invalidCloseCode` for a code a peer may not send (both 1002) and
    /// `invalidUTF8` (1007, offset counted from the start of the reason) for a reason that is not UTF-8.
    package init?(closePayload payload: UnsafeRawBufferPointer) throws(WebSocketError) {
        switch payload.count {
        case 0:
            return nil
        case 1:
            throw .closePayloadTooShort
        default:
            let code = WebSocketCloseCode(UInt16(payload[0]) << 8 | UInt16(payload[1]))
            guard code.isValidInCloseFrame else {
                throw .invalidCloseCode(code.rawValue)
            }
            var validator = UTF8Validator()
            let reason = UnsafeRawBufferPointer(rebasing: payload[2...])
            guard validator.feed(unchecked: reason) else {
                throw .invalidUTF8(offset: validator.validatedCount)
            }
            guard validator.isComplete else {
                throw .invalidUTF8(offset: reason.count)
            }
            self = code
        }
    }
}
