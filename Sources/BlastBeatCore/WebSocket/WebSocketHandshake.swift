/// The server side of the RFC 6455 §4.2 opening handshake: checking the client's key and computing the accept value.
///
/// Building and sending the 101 response is the gateway's job; this only does the byte work that needs SHA-1 and
/// base64, so that the connection code never hashes anything itself.
package enum WebSocketHandshake {
    /// The GUID that RFC 6455 §1.3 appends to the key before hashing.
    package static let guid: [UInt8] = Array("258EAFA5-E914-47DA-95CA-C5AB0DC85B11".utf8)

    /// Length of a valid `Sec-WebSocket-Key` value: base64 of 16 bytes.
    package static let keyLength = 24

    /// Length of the `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1 digest.
    package static let acceptValueLength = 28

    /// `base64(SHA1(key + GUID))`, the `Sec-WebSocket-Accept` value for `key`.
    ///
    /// `key` is used exactly as given (the HTTP parser has already trimmed optional whitespace); check it with
    /// `isValidKey` first. Always returns 28 bytes.
    package static func acceptValue(key: RawSpan) -> [UInt8] {
        var sha = SHA1()
        key.withUnsafeBytes { sha.update($0) }
        Self.guid.withUnsafeBytes { sha.update($0) }
        let digest = sha.finalize()
        return digest.withUnsafeBytes { Base64.encode($0) }
    }

    /// Whether `key` is base64 of exactly 16 bytes (RFC 6455 §4.1 item 7): 22 alphabet characters and `==`.
    ///
    /// The 4 unused low bits of the last character are not required to be zero (a non-canonical encoding still
    /// decodes to 16 bytes; Python's `websockets` and Go's `gorilla/websocket` accept it too).
    package static func isValidKey(_ key: RawSpan) -> Bool {
        key.withUnsafeBytes { key in
            guard key.count == Self.keyLength else { return false }
            guard key[22] == UInt8(ascii: "="), key[23] == UInt8(ascii: "=") else { return false }
            for index in 0..<22 where !Base64.isAlphabetByte(key[index]) {
                return false
            }
            return true
        }
    }

    /// Whether a `Sec-WebSocket-Version` value is `13`, the only version RFC 6455 defines.
    ///
    /// A server answers any other value with 426 and `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2 item 4).
    package static func isSupportedVersion(_ value: RawSpan) -> Bool {
        value.withUnsafeBytes { $0.elementsEqual("13".utf8) }
    }
}
