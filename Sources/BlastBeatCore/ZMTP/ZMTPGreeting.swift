/// The 64-byte greeting that opens every ZMTP 3.x connection (RFC 23/ZMTP §"The greeting").
///
/// `signature (FF, 8 padding bytes, 7F) · version (major, minor) · mechanism (20 bytes, NUL padded) ·
/// as-server (1 byte) · filler (31 zero bytes)`. The gateway speaks ZMTP 3.1 with the NULL mechanism,
/// which is what libzmq 4.x peers (every pyzmq, czmq, ffi-rzmq of the last decade) use by default, or
/// with CURVE (RFC 26) when it has a `curve-key`: one or the other, never both.
package enum ZMTPGreeting {
    package static let size = 64

    /// The security mechanisms the gateway speaks.
    package enum Mechanism: Sendable {
        case null
        case curve

        var name: String {
            switch self {
            case .null: "NULL"
            case .curve: "CURVE"
            }
        }
    }

    /// The gateway's greeting: version 3.1, the mechanism, and as-server = 1 for CURVE (the gateway is
    /// the CURVE server; NULL has no roles, so 0).
    package static func bytes(_ mechanism: Mechanism) -> [UInt8] {
        var g = [UInt8](repeating: 0, count: size)
        g[0] = 0xFF
        g[9] = 0x7F
        g[10] = 3
        g[11] = 1
        for (i, b) in mechanism.name.utf8.enumerated() { g[12 + i] = b }
        if mechanism == .curve { g[32] = 1 }
        return g
    }

    package static let bytes = bytes(.null)

    /// Why a peer's greeting was refused.
    package enum Refusal: Equatable, Sendable, CustomStringConvertible {
        /// Not a ZMTP 2.0+ signature (a ZMTP 1.0 peer or not ZeroMQ at all).
        case notZMTP
        /// ZMTP before 3.0 (libzmq 3.x and older).
        case version(major: UInt8)
        /// A security mechanism other than the gateway's (PLAIN, or NULL/CURVE when the gateway speaks the other).
        case mechanism(String, expected: Mechanism)

        package var description: String {
            switch self {
            case .notZMTP: "not a ZMTP greeting"
            case .version(let major): "ZMTP version \(major) (3.0 or later required: libzmq 4 or later)"
            case .mechanism(let name, .null):
                "security mechanism \(name.debugDescription) (this gateway has no curve-key: only NULL is accepted)"
            case .mechanism(let name, .curve):
                "security mechanism \(name.debugDescription) (this gateway requires CURVE: give the backend its key pair and the gateway's public key)"
            }
        }
    }

    /// Checks the first 64 bytes a peer sent. Only the 10-byte signature is checked as early as
    /// it arrives (see `signatureLooksValid`), the rest once all 64 bytes are in.
    package static func check(_ greeting: RawSpan, expecting expected: Mechanism = .null) -> Refusal? {
        greeting.withUnsafeBytes { check(unchecked: $0, expecting: expected) }
    }

    private static func check(unchecked greeting: UnsafeRawBufferPointer, expecting expected: Mechanism) -> Refusal? {
        precondition(greeting.count >= size)
        if !signatureLooksValid(unchecked: UnsafeRawBufferPointer(rebasing: greeting[0..<10])) { return .notZMTP }
        if greeting[10] < 3 { return .version(major: greeting[10]) }
        var end = 12
        while end < 32 && greeting[end] != 0 { end += 1 }
        let mechanism = UnsafeRawBufferPointer(rebasing: greeting[12..<end])
        if !mechanism.elementsEqual(expected.name.utf8) {
            return .mechanism(String(decoding: mechanism, as: UTF8.self), expected: expected)
        }
        return nil
    }

    /// Whether the bytes received so far (up to 10) can begin a ZMTP 2.0+ signature: so a peer
    /// that is not ZeroMQ (an HTTP client on the wrong port) is refused without waiting for 64 bytes.
    package static func signatureLooksValid(_ prefix: RawSpan) -> Bool {
        prefix.withUnsafeBytes { signatureLooksValid(unchecked: $0) }
    }

    private static func signatureLooksValid(unchecked prefix: UnsafeRawBufferPointer) -> Bool {
        if prefix.count >= 1 && prefix[0] != 0xFF { return false }
        if prefix.count >= 10 && prefix[9] & 0x01 == 0 { return false }
        return true
    }
}
