/// Incremental UTF-8 validator (RFC 3629) for text messages that arrive in pieces.
///
/// It fails on the first byte that cannot continue a valid sequence, not at the end of the message: a text message
/// that goes wrong in its first fragment is refused before the rest arrives (Autobahn 6.4.x "fail fast"). A
/// sequence split between two `feed` calls is carried over in the state, so fragments may cut characters anywhere.
///
/// Rejected: stray continuation bytes, overlong forms (C0, C1, E0 80–9F, F0 80–8F), UTF-16 surrogates (ED A0–BF),
/// code points above U+10FFFF (F4 90+, F5–FF), and truncated sequences (`isComplete` is false).
package struct UTF8Validator: Sendable {
    /// Continuation bytes still due for the current sequence (0 between characters).
    private var pending: UInt8 = 0
    /// Allowed range of the next continuation byte. Only the second byte of a sequence is narrower than 80–BF.
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF
    /// Bytes accepted so far over all `feed` calls; after a failure, the offset of the offending byte.
    package private(set) var validatedCount = 0

    package init() {}

    /// True when the bytes fed so far end on a character boundary. A text message is valid only if this holds
    /// after its last fragment.
    package var isComplete: Bool {
        self.pending == 0
    }

    /// Validates the next bytes of the text.
    ///
    /// - Returns: false at the first invalid byte; `validatedCount` is then the offset of that byte. The validator
    ///   must not be fed again after a failure.
    package mutating func feed(_ bytes: RawSpan) -> Bool {
        bytes.withUnsafeBytes { feed(unchecked: $0) }
    }

    /// `feed` on a pointer, for Core's own callers (the message assembler's buffer); one bounds check per
    /// byte would cost on every text message.
    mutating func feed(unchecked bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let count = bytes.count
        defer { self.validatedCount += index }
        while index < count {
            if self.pending == 0 {
                // ASCII fast path: 8 bytes at a time while no sequence is open.
                while index + 8 <= count,
                    bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
                {
                    index += 8
                }
                guard index < count else { return true }
                let byte = bytes[index]
                switch byte {
                case 0x00...0x7F:
                    break
                case 0xC2...0xDF:
                    self.pending = 1
                case 0xE0:
                    self.pending = 2
                    self.lower = 0xA0
                case 0xE1...0xEC, 0xEE...0xEF:
                    self.pending = 2
                case 0xED:
                    self.pending = 2
                    self.upper = 0x9F
                case 0xF0:
                    self.pending = 3
                    self.lower = 0x90
                case 0xF1...0xF3:
                    self.pending = 3
                case 0xF4:
                    self.pending = 3
                    self.upper = 0x8F
                default:  // 80–BF stray continuation, C0–C1 overlong, F5–FF beyond U+10FFFF
                    return false
                }
            } else {
                let byte = bytes[index]
                guard byte >= self.lower && byte <= self.upper else { return false }
                self.lower = 0x80
                self.upper = 0xBF
                self.pending -= 1
            }
            index += 1
        }
        return true
    }

    /// Whether `bytes` is complete, valid UTF-8.
    package static func isValid(_ bytes: RawSpan) -> Bool {
        var validator = UTF8Validator()
        return validator.feed(bytes) && validator.isComplete
    }
}
