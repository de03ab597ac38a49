import BlastBeatCore
import Testing

@Suite struct UTF8ValidatorTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        /// nil: valid. Otherwise the offset of the first byte that cannot be part of valid UTF-8 (the length for a
        /// sequence cut off at the end).
        var failsAt: Int?
        var testDescription: String { "\(self.name): \(WebSocketTestSupport.hex(self.bytes))" }

        init(_ name: String, _ bytes: [UInt8], failsAt: Int? = nil) {
            self.name = name
            self.bytes = bytes
            self.failsAt = failsAt
        }
    }

    static let cases: [Case] = [
        Case("empty", []),
        Case("ASCII", Array("Hello, world! 0123456789 long enough for the fast path".utf8)),
        Case("NUL and DEL are valid", [0x00, 0x7F]),
        Case("U+0080", [0xC2, 0x80]),
        Case("U+07FF", [0xDF, 0xBF]),
        Case("U+0800", [0xE0, 0xA0, 0x80]),
        Case("U+D7FF (last before surrogates)", [0xED, 0x9F, 0xBF]),
        Case("U+E000 (first after surrogates)", [0xEE, 0x80, 0x80]),
        Case("U+FFFD", [0xEF, 0xBF, 0xBD]),
        Case("U+FFFF", [0xEF, 0xBF, 0xBF]),
        Case("U+10000", [0xF0, 0x90, 0x80, 0x80]),
        Case("U+10FFFF", [0xF4, 0x8F, 0xBF, 0xBF]),
        Case("Autobahn 6.2 kosme", WebSocketTestSupport.bytes(hex: "ce ba e1 bd b9 cf 83 ce bc ce b5")),
        Case("mixed scripts and emoji", Array("aé中😀z".utf8)),
        // Overlong encodings.
        Case("overlong / (C0 AF)", [0xC0, 0xAF], failsAt: 0),
        Case("overlong NUL (C0 80)", [0xC0, 0x80], failsAt: 0),
        Case("overlong U+007F (C1 BF)", [0xC1, 0xBF], failsAt: 0),
        Case("overlong 3-byte (E0 80 AF)", [0xE0, 0x80, 0xAF], failsAt: 1),
        Case("overlong 3-byte U+07FF (E0 9F BF)", [0xE0, 0x9F, 0xBF], failsAt: 1),
        Case("overlong 4-byte (F0 80 80 AF)", [0xF0, 0x80, 0x80, 0xAF], failsAt: 1),
        Case("overlong 4-byte U+FFFF (F0 8F BF BF)", [0xF0, 0x8F, 0xBF, 0xBF], failsAt: 1),
        // UTF-16 surrogates.
        Case("surrogate U+D800", [0xED, 0xA0, 0x80], failsAt: 1),
        Case("surrogate U+DBFF", [0xED, 0xAF, 0xBF], failsAt: 1),
        Case("surrogate U+DC00", [0xED, 0xB0, 0x80], failsAt: 1),
        Case("surrogate U+DFFF", [0xED, 0xBF, 0xBF], failsAt: 1),
        Case("surrogate pair U+D800 U+DC00", [0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80], failsAt: 1),
        // Beyond U+10FFFF.
        Case("U+110000 (F4 90 80 80)", [0xF4, 0x90, 0x80, 0x80], failsAt: 1),
        Case("F5 lead byte", [0xF5, 0x80, 0x80, 0x80], failsAt: 0),
        Case("F7 BF BF BF (U+1FFFFF)", [0xF7, 0xBF, 0xBF, 0xBF], failsAt: 0),
        Case("5-byte form F8", [0xF8, 0x88, 0x80, 0x80, 0x80], failsAt: 0),
        Case("6-byte form FC", [0xFC, 0x84, 0x80, 0x80, 0x80, 0x80], failsAt: 0),
        Case("FE", [0xFE], failsAt: 0),
        Case("FF", [0xFF], failsAt: 0),
        // Continuation bytes in the wrong place.
        Case("lone continuation 80", [0x80], failsAt: 0),
        Case("lone continuation BF after ASCII", [0x61, 0xBF], failsAt: 1),
        Case("lead byte followed by ASCII", [0xC3, 0x41], failsAt: 1),
        Case("3-byte lead cut by another lead", [0xE2, 0x82, 0xE2, 0x82, 0xAC], failsAt: 2),
        Case("too many continuations", [0xC3, 0xA9, 0xA9], failsAt: 2),
        // Truncated at the end: every prefix byte is fine, the text is not complete.
        Case("truncated 2-byte", [0x61, 0xC3], failsAt: 2),
        Case("truncated 3-byte", [0xE2, 0x82], failsAt: 2),
        Case("truncated 4-byte", [0xF0, 0x9F, 0x98], failsAt: 3),
        // Autobahn 6.3.1: kosme followed by an encoded surrogate.
        Case(
            "Autobahn 6.3.1",
            WebSocketTestSupport.bytes(hex: "ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64"),
            failsAt: 12
        ),
        // The fast path must not skip a bad byte after 8 ASCII bytes.
        Case("bad byte after 8 ASCII bytes", Array("abcdefgh".utf8) + [0xFF] + Array("ijklmnop".utf8), failsAt: 8),
        Case("bad byte after 16 ASCII bytes", Array("abcdefghijklmnop".utf8) + [0xC0, 0x80], failsAt: 16),
    ]

    /// Feeds the bytes whole, one at a time, and split in two at every position: the result and the failure offset
    /// must not depend on where the fragments were cut.
    @Test(arguments: cases)
    func validates(_ row: Case) {
        var splits: [[[UInt8]]] = [[row.bytes], WebSocketTestSupport.chunks(row.bytes, size: 1)]
        for cut in 0...row.bytes.count {
            splits.append([Array(row.bytes[..<cut]), Array(row.bytes[cut...])])
        }
        for pieces in splits {
            var validator = UTF8Validator()
            var failure: Int?
            for piece in pieces {
                let ok = piece.withUnsafeBytes { validator.feed($0.bytes) }
                if !ok {
                    failure = validator.validatedCount
                    break
                }
            }
            if failure == nil && !validator.isComplete {
                failure = validator.validatedCount
            }
            #expect(failure == row.failsAt, "pieces \(pieces.map(\.count))")
        }
        #expect(row.bytes.withUnsafeBytes { UTF8Validator.isValid($0.bytes) } == (row.failsAt == nil))
    }

    /// The validator agrees with the standard library on every code point (written as UTF-8 by the stdlib).
    @Test func everyScalarIsValid() {
        var bytes: [UInt8] = []
        for value in UInt32(0)...0x10FFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            bytes.append(contentsOf: String(Character(scalar)).utf8)
        }
        var validator = UTF8Validator()
        #expect(bytes.withUnsafeBytes { validator.feed($0.bytes) })
        #expect(validator.isComplete)
    }
}
