/// One valid permessage-deflate offer from a client's `Sec-WebSocket-Extensions` header (RFC 7692 §7.1).
///
/// The header is a comma-separated list of offers in the client's order of preference (RFC 6455 §9.1):
///
///     Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate
///
/// An offer with an unknown parameter, a parameter given twice, a value where none is allowed, a missing or
/// out-of-range window size, or a syntax error is declined (RFC 7692 §5, §7.1) and the next one is tried; other
/// extensions are skipped. Names compare ASCII case-insensitively. Values may be quoted (`"10"`); window sizes are
/// 8–15 without leading zeros. Several header lines are one list: the caller joins them with ", " (RFC 9110 §5.3) or
/// negotiates each line in order.
package struct PerMessageDeflateOffer: Equatable, Sendable {
    /// The offer's `client_max_window_bits`.
    package enum ClientMaxWindowBits: Equatable, Sendable {
        /// Not offered: the response must not name it, and the client may use a 15-bit window.
        case absent
        /// Offered without a value: the client can use whatever window the server names.
        case supported
        /// Offered with a value: the client will not use a larger window, whatever the response says.
        case limit(Int)
    }

    package var serverNoContextTakeover = false
    package var clientNoContextTakeover = false
    package var serverMaxWindowBits: Int? = nil
    package var clientMaxWindowBits: ClientMaxWindowBits = .absent

    package init(
        serverNoContextTakeover: Bool = false,
        clientNoContextTakeover: Bool = false,
        serverMaxWindowBits: Int? = nil,
        clientMaxWindowBits: ClientMaxWindowBits = .absent
    ) {
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
    }

    /// Negotiates permessage-deflate: the first offer in `headerValue` that `configuration` can accept, or nil (then
    /// the response carries no `Sec-WebSocket-Extensions` header and RSV1 stays forbidden).
    package static func negotiate(
        headerValue: RawSpan, configuration: PerMessageDeflateConfiguration
    ) -> PerMessageDeflateParameters? {
        headerValue.withUnsafeBytes { negotiate(headerValue: $0, configuration: configuration) }
    }

    package static func negotiate(
        headerValue: UnsafeRawBufferPointer,
        configuration: PerMessageDeflateConfiguration
    ) -> PerMessageDeflateParameters? {
        guard configuration.isEnabled else { return nil }
        for offer in Self.parse(headerValue) {
            if let parameters = offer.accept(configuration) {
                return parameters
            }
        }
        return nil
    }

    /// The parameters the server answers this offer with, or nil to decline it.
    package func accept(_ configuration: PerMessageDeflateConfiguration) -> PerMessageDeflateParameters? {
        guard configuration.isEnabled else { return nil }
        let allowed = configuration.allowedServerWindowBits
        let serverBits: Int
        let announceServer: Bool
        if let requested = self.serverMaxWindowBits {
            // §7.1.2.1: answer with the same or a smaller value; decline if we cannot go that small.
            guard requested >= allowed.lowerBound else { return nil }
            serverBits = min(requested, allowed.upperBound)
            announceServer = true
        } else {
            // §7.1.2.1: the server may name it even when not offered; do so only when it tells the client something.
            serverBits = allowed.upperBound
            announceServer = serverBits < 15
        }

        let clientBits: Int
        let announceClient: Bool
        switch self.clientMaxWindowBits {
        case .absent:
            // §7.1.2.2: the response must not name it; the client may use the full window.
            clientBits = 15
            announceClient = false
        case .supported:
            clientBits = configuration.clientMaxWindowBits
            announceClient = clientBits < 15
        case .limit(let offered):
            clientBits = min(offered, configuration.clientMaxWindowBits)
            announceClient = clientBits < offered
        }

        return PerMessageDeflateParameters(
            serverNoContextTakeover: self.serverNoContextTakeover || configuration.serverNoContextTakeover,
            clientNoContextTakeover: self.clientNoContextTakeover || configuration.clientNoContextTakeover,
            serverMaxWindowBits: serverBits,
            clientMaxWindowBits: clientBits,
            announcesServerMaxWindowBits: announceServer,
            announcesClientMaxWindowBits: announceClient
        )
    }

    /// The valid permessage-deflate offers in `headerValue`, in order.
    package static func parse(_ headerValue: UnsafeRawBufferPointer) -> [PerMessageDeflateOffer] {
        var scanner = ExtensionListScanner(bytes: headerValue)
        var offers: [PerMessageDeflateOffer] = []
        while let element = scanner.nextElement() {
            guard let element, element.name.withUnsafeBytes({ HTTPSyntax.equalsIgnoringCase($0, "permessage-deflate") }) else { continue }
            if let offer = Self.interpret(element.parameters) {
                offers.append(offer)
            }
        }
        return offers
    }

    /// Builds an offer from its parameters, or nil if any is unknown, repeated or badly valued.
    private static func interpret(_ parameters: [ExtensionListScanner.Parameter]) -> PerMessageDeflateOffer? {
        var offer = PerMessageDeflateOffer()
        var seen = (serverNoContext: false, clientNoContext: false, serverBits: false, clientBits: false)
        for parameter in parameters {
            if parameter.name.withUnsafeBytes { HTTPSyntax.equalsIgnoringCase($0, "server_no_context_takeover") } {
                guard !seen.serverNoContext, parameter.value == nil else { return nil }
                seen.serverNoContext = true
                offer.serverNoContextTakeover = true
            } else if parameter.name.withUnsafeBytes { HTTPSyntax.equalsIgnoringCase($0, "client_no_context_takeover") } {
                guard !seen.clientNoContext, parameter.value == nil else { return nil }
                seen.clientNoContext = true
                offer.clientNoContextTakeover = true
            } else if parameter.name.withUnsafeBytes { HTTPSyntax.equalsIgnoringCase($0, "server_max_window_bits") } {
                guard !seen.serverBits, let value = parameter.value, let bits = Self.windowBits(value) else {
                    return nil
                }
                seen.serverBits = true
                offer.serverMaxWindowBits = bits
            } else if parameter.name.withUnsafeBytes { HTTPSyntax.equalsIgnoringCase($0, "client_max_window_bits") } {
                guard !seen.clientBits else { return nil }
                seen.clientBits = true
                if let value = parameter.value {
                    guard let bits = Self.windowBits(value) else { return nil }
                    offer.clientMaxWindowBits = .limit(bits)
                } else {
                    offer.clientMaxWindowBits = .supported
                }
            } else {
                return nil
            }
        }
        return offer
    }

    /// 8...15 written without leading zeros (RFC 7692 §7.1.2.1), else nil.
    private static func windowBits(_ value: [UInt8]) -> Int? {
        switch value.count {
        case 1 where value[0] == UInt8(ascii: "8") || value[0] == UInt8(ascii: "9"):
            return Int(value[0] - UInt8(ascii: "0"))
        case 2 where value[0] == UInt8(ascii: "1") && (UInt8(ascii: "0")...UInt8(ascii: "5")).contains(value[1]):
            return 10 + Int(value[1] - UInt8(ascii: "0"))
        default:
            return nil
        }
    }

}

/// Splits an RFC 6455 §9.1 extension list into elements: `name *( OWS ";" OWS param [ OWS "=" OWS value ] )`,
/// where value is a token or a quoted-string (returned unescaped).
private struct ExtensionListScanner {
    struct Parameter {
        var name: [UInt8]
        var value: [UInt8]?
    }

    struct Element {
        var name: [UInt8]
        var parameters: [Parameter]
    }

    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The next list element: `.some(nil)` for a malformed one (already skipped up to the next top-level comma),
    /// nil at the end of the list. Empty elements (`a,,b`) are skipped, as RFC 9110 §5.6.1 asks of recipients.
    mutating func nextElement() -> Element?? {
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count else { return nil }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
                continue
            }
            if let element = self.element() {
                return .some(element)
            }
            self.skipToNextElement()
            return .some(nil)
        }
    }

    /// Parses one element and the comma after it, or returns nil at the first syntax error.
    private mutating func element() -> Element? {
        guard let name = self.token() else { return nil }
        var element = Element(name: name, parameters: [])
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count else { return element }
            switch self.bytes[self.index] {
            case UInt8(ascii: ","):
                self.index += 1
                return element
            case UInt8(ascii: ";"):
                self.index += 1
                self.skipWhitespace()
                guard let parameterName = self.token() else { return nil }
                var parameter = Parameter(name: parameterName, value: nil)
                self.skipWhitespace()
                if self.index < self.bytes.count && self.bytes[self.index] == UInt8(ascii: "=") {
                    self.index += 1
                    self.skipWhitespace()
                    guard self.index < self.bytes.count else { return nil }
                    if self.bytes[self.index] == UInt8(ascii: "\"") {
                        guard let value = self.quotedString() else { return nil }
                        parameter.value = value
                    } else {
                        guard let value = self.token() else { return nil }
                        parameter.value = value
                    }
                }
                element.parameters.append(parameter)
            default:
                return nil
            }
        }
    }

    private mutating func token() -> [UInt8]? {
        let start = self.index
        while self.index < self.bytes.count && HTTPSyntax.isTokenByte(self.bytes[self.index]) {
            self.index += 1
        }
        guard self.index > start else { return nil }
        return Array(self.bytes[start..<self.index])
    }

    /// A quoted-string starting at the opening quote; nil if unterminated or holding a control byte.
    private mutating func quotedString() -> [UInt8]? {
        self.index += 1
        var value: [UInt8] = []
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return value
            case UInt8(ascii: "\\"):
                guard self.index < self.bytes.count, Self.isQuotedPairByte(self.bytes[self.index]) else { return nil }
                value.append(self.bytes[self.index])
                self.index += 1
            default:
                guard Self.isQuotedPairByte(byte) else { return nil }
                value.append(byte)
            }
        }
        return nil
    }

    /// After a syntax error: moves past the next comma that is not inside a quoted-string.
    private mutating func skipToNextElement() {
        var inQuotes = false
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            self.index += 1
            if inQuotes {
                if byte == UInt8(ascii: "\\") {
                    self.index += 1
                } else if byte == UInt8(ascii: "\"") {
                    inQuotes = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inQuotes = true
            } else if byte == UInt8(ascii: ",") {
                return
            }
        }
    }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count && (self.bytes[self.index] == 0x20 || self.bytes[self.index] == 0x09) {
            self.index += 1
        }
    }


    /// HTAB, SP, VCHAR, obs-text: what may appear inside a quoted-string (RFC 9110 §5.6.4).
    private static func isQuotedPairByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
