import BlastBeatCore
import Testing

@Suite struct WebSocketFrameDecoderTests {
    /// Read sizes every valid row is decoded with: one byte at a time, odd sizes that cut headers, masking keys and
    /// payloads at every phase, and everything in one read.
    static let chunkSizes = [1, 2, 3, 5, 7, 13, 0]

    struct ValidCase: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var expected: [DecodedFrame]
        var requireMask = true
        var allowRSV1 = false
        var testDescription: String { self.name }
    }

    static func frame(
        _ opcode: WebSocketOpcode,
        fin: Bool = true,
        rsv1: Bool = false,
        _ payload: [UInt8]
    )
        -> DecodedFrame
    {
        DecodedFrame(
            header: WebSocketFrameHeader(fin: fin, rsv1: rsv1, opcode: opcode, payloadLength: payload.count),
            payload: payload
        )
    }

    static let hello = Array("Hello".utf8)
    static let big = WebSocketTestSupport.pseudoRandomBytes(count: 70_000, seed: 1)

    static let validCases: [ValidCase] = [
        // RFC 6455 §5.7 examples.
        ValidCase(
            name: "RFC 5.7 masked Hello",
            bytes: WebSocketTestSupport.bytes(hex: "81 85 37 fa 21 3d 7f 9f 4d 51 58"),
            expected: [frame(.text, hello)]
        ),
        ValidCase(
            name: "RFC 5.7 unmasked Hello (requireMask off)",
            bytes: WebSocketTestSupport.bytes(hex: "81 05 48 65 6c 6c 6f"),
            expected: [frame(.text, hello)],
            requireMask: false
        ),
        ValidCase(
            name: "RFC 5.7 fragmented unmasked",
            bytes: WebSocketTestSupport.bytes(hex: "01 03 48 65 6c 80 02 6c 6f"),
            expected: [frame(.text, fin: false, Array("Hel".utf8)), frame(.continuation, Array("lo".utf8))],
            requireMask: false
        ),
        ValidCase(
            name: "RFC 5.7 masked pong",
            bytes: WebSocketTestSupport.bytes(hex: "8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
            expected: [frame(.pong, hello)]
        ),
        ValidCase(name: "empty text", bytes: clientFrame(.text), expected: [frame(.text, [])]),
        ValidCase(name: "empty close", bytes: clientFrame(.close), expected: [frame(.close, [])]),
        ValidCase(
            name: "125-byte ping",
            bytes: clientFrame(.ping, payload: [UInt8](repeating: 9, count: 125)),
            expected: [frame(.ping, [UInt8](repeating: 9, count: 125))]
        ),
        ValidCase(
            name: "126 bytes: 16-bit length",
            bytes: clientFrame(.binary, payload: Array(big.prefix(126))),
            expected: [frame(.binary, Array(big.prefix(126)))]
        ),
        ValidCase(
            name: "65535 bytes: 16-bit length",
            bytes: clientFrame(.binary, payload: Array(big.prefix(65535))),
            expected: [frame(.binary, Array(big.prefix(65535)))]
        ),
        ValidCase(
            name: "65536 bytes: 64-bit length",
            bytes: clientFrame(.binary, payload: Array(big.prefix(65536))),
            expected: [frame(.binary, Array(big.prefix(65536)))]
        ),
        ValidCase(
            name: "non-minimal 16-bit length is accepted",
            bytes: clientFrame(.text, payload: hello, length: .sixteenBit),
            expected: [frame(.text, hello)]
        ),
        ValidCase(
            name: "non-minimal 64-bit length is accepted",
            bytes: clientFrame(.binary, payload: hello, length: .sixtyFourBit),
            expected: [frame(.binary, hello)]
        ),
        ValidCase(
            name: "non-minimal 64-bit length of zero",
            bytes: clientFrame(.binary, payload: [], length: .sixtyFourBit),
            expected: [frame(.binary, [])]
        ),
        ValidCase(
            name: "RSV1 on text when compression is negotiated",
            bytes: clientFrame(.text, rsv: 4, payload: hello),
            expected: [frame(.text, rsv1: true, hello)],
            allowRSV1: true
        ),
        ValidCase(
            name: "RSV1 on first binary fragment, none on continuation",
            bytes: clientFrame(.binary, fin: false, rsv: 4, payload: [1]) + clientFrame(.continuation, payload: [2]),
            expected: [frame(.binary, fin: false, rsv1: true, [1]), frame(.continuation, [2])],
            allowRSV1: true
        ),
        ValidCase(
            name: "several frames in one buffer",
            bytes: clientFrame(.text, fin: false, "a") + clientFrame(.ping, "p") + clientFrame(.continuation, "b")
                + clientFrame(.close, payload: [0x03, 0xE8]) + clientFrame(.binary, payload: Array(big.prefix(300))),
            expected: [
                frame(.text, fin: false, [0x61]), frame(.ping, [0x70]), frame(.continuation, [0x62]),
                frame(.close, [0x03, 0xE8]), frame(.binary, Array(big.prefix(300))),
            ]
        ),
        ValidCase(
            name: "masked payload of every length 0...20",
            bytes: (0...20).flatMap { clientFrame(.binary, payload: Array(big.prefix($0))) },
            expected: (0...20).map { frame(.binary, Array(big.prefix($0))) }
        ),
        ValidCase(
            name: "unmasked and masked mixed (requireMask off)",
            bytes: clientFrame(WebSocketOpcode.text.rawValue, payload: hello, maskKey: nil)
                + clientFrame(.text, payload: hello),
            expected: [frame(.text, hello), frame(.text, hello)],
            requireMask: false
        ),
    ]

    @Test(arguments: validCases, chunkSizes)
    func decodesValidFrames(_ row: ValidCase, chunkSize: Int) throws {
        let frames = try decodeFrames(
            row.bytes,
            chunkSize: chunkSize,
            requireMask: row.requireMask,
            allowRSV1: row.allowRSV1
        )
        #expect(frames == row.expected)
    }

    struct InvalidCase: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var error: WebSocketError
        var closeCode: UInt16
        var maxFrameSize = 1000
        var allowRSV1 = false
        /// Bytes the decoder must see before it fails: it must fail as soon as the offending byte arrives.
        var failsAfter: Int
        var testDescription: String { self.name }
    }

    static let invalidCases: [InvalidCase] =
        [
            InvalidCase(
                name: "unmasked client frame",
                bytes: clientFrame(WebSocketOpcode.text.rawValue, payload: hello, maskKey: nil),
                error: .unmaskedFrame,
                closeCode: 1002,
                failsAfter: 2
            ),
            InvalidCase(
                name: "RSV2 set",
                bytes: clientFrame(.text, rsv: 2, payload: hello),
                error: .reservedBitsSet,
                closeCode: 1002,
                failsAfter: 1
            ),
            InvalidCase(
                name: "RSV3 set",
                bytes: clientFrame(.binary, rsv: 1, payload: hello),
                error: .reservedBitsSet,
                closeCode: 1002,
                failsAfter: 1
            ),
            InvalidCase(
                name: "RSV2 set even with compression",
                bytes: clientFrame(.text, rsv: 6, payload: hello),
                error: .reservedBitsSet,
                closeCode: 1002,
                allowRSV1: true,
                failsAfter: 1
            ),
            InvalidCase(
                name: "RSV1 without compression",
                bytes: clientFrame(.text, rsv: 4, payload: hello),
                error: .unexpectedRSV1(.text),
                closeCode: 1002,
                failsAfter: 1
            ),
            InvalidCase(
                name: "RSV1 on continuation",
                bytes: clientFrame(.continuation, rsv: 4, payload: hello),
                error: .unexpectedRSV1(.continuation),
                closeCode: 1002,
                allowRSV1: true,
                failsAfter: 1
            ),
            InvalidCase(
                name: "RSV1 on ping",
                bytes: clientFrame(.ping, rsv: 4, payload: hello),
                error: .unexpectedRSV1(.ping),
                closeCode: 1002,
                allowRSV1: true,
                failsAfter: 1
            ),
            InvalidCase(
                name: "RSV1 on close",
                bytes: clientFrame(.close, rsv: 4),
                error: .unexpectedRSV1(.close),
                closeCode: 1002,
                allowRSV1: true,
                failsAfter: 1
            ),
            InvalidCase(
                name: "fragmented ping",
                bytes: clientFrame(.ping, fin: false, payload: hello),
                error: .fragmentedControlFrame(.ping),
                closeCode: 1002,
                failsAfter: 1
            ),
            InvalidCase(
                name: "fragmented close",
                bytes: clientFrame(.close, fin: false),
                error: .fragmentedControlFrame(.close),
                closeCode: 1002,
                failsAfter: 1
            ),
            InvalidCase(
                name: "fragmented pong",
                bytes: clientFrame(.pong, fin: false),
                error: .fragmentedControlFrame(.pong),
                closeCode: 1002,
                failsAfter: 1
            ),
            InvalidCase(
                name: "ping with 126 bytes",
                bytes: clientFrame(.ping, payload: [UInt8](repeating: 0, count: 126)),
                error: .controlFrameTooLong(.ping),
                closeCode: 1002,
                failsAfter: 2
            ),
            InvalidCase(
                name: "close with a 16-bit length code, even if short",
                bytes: clientFrame(.close, payload: [3, 0xE8], length: .sixteenBit),
                error: .controlFrameTooLong(.close),
                closeCode: 1002,
                failsAfter: 2
            ),
            InvalidCase(
                name: "pong with a 64-bit length code",
                bytes: clientFrame(.pong, payload: [], length: .sixtyFourBit),
                error: .controlFrameTooLong(.pong),
                closeCode: 1002,
                failsAfter: 2
            ),
            InvalidCase(
                name: "64-bit length with MSB set",
                bytes: [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
                error: .invalidPayloadLength,
                closeCode: 1002,
                failsAfter: 10
            ),
            InvalidCase(
                name: "64-bit length 2^63 (all other bits zero)",
                bytes: [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                error: .invalidPayloadLength,
                closeCode: 1002,
                failsAfter: 10
            ),
            InvalidCase(
                name: "frame over the limit (16-bit length)",
                bytes: clientFrame(.binary, payload: Array(big.prefix(1001))),
                error: .frameTooLarge(limit: 1000),
                closeCode: 1009,
                failsAfter: 4
            ),
            InvalidCase(
                name: "frame over the limit (64-bit length)",
                bytes: [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4],
                error: .frameTooLarge(limit: 1000),
                closeCode: 1009,
                failsAfter: 10
            ),
            InvalidCase(
                name: "frame over the limit (7-bit length)",
                bytes: clientFrame(.binary, payload: Array(big.prefix(126))),
                error: .frameTooLarge(limit: 125),
                closeCode: 1009,
                maxFrameSize: 125,
                failsAfter: 4
            ),
        ]
        + [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF].map { opcode in
            InvalidCase(
                name: "reserved opcode 0x\(String(opcode, radix: 16))",
                bytes: clientFrame(opcode, payload: hello),
                error: .reservedOpcode(opcode),
                closeCode: 1002,
                failsAfter: 1
            )
        }

    @Test(arguments: invalidCases)
    func rejectsInvalidFrames(_ row: InvalidCase) {
        // Whole buffer.
        let whole = webSocketError {
            try decodeFrames(row.bytes, chunkSize: 0, maxFrameSize: row.maxFrameSize, allowRSV1: row.allowRSV1)
        }
        #expect(whole == row.error)
        #expect(row.error.closeCode.rawValue == row.closeCode)

        // Byte at a time: the error comes with the offending byte, not later.
        var decoder = WebSocketFrameDecoder(maxFrameSize: row.maxFrameSize, allowRSV1: row.allowRSV1)
        var payload: [UInt8] = []
        var fed = 0
        var thrown: WebSocketError?
        for byte in row.bytes {
            fed += 1
            do {
                var rest = [byte]
                while true {
                    let (consumed, event) = try decodeFrameOnce(&decoder, rest, into: &payload)
                    rest.removeFirst(consumed)
                    if event == nil { break }
                }
            } catch {
                thrown = error
                break
            }
        }
        #expect(thrown == row.error)
        #expect(fed == row.failsAfter, "failed after \(fed) bytes")
        #expect(payload.isEmpty, "no payload byte is accepted from a bad frame")

        // The decoder stays failed.
        let again = webSocketError { try decodeFrameOnce(&decoder, [0x81], into: &payload) }
        #expect(again == row.error)
    }

    @Test func headerEventComesBeforeThePayload() throws {
        var decoder = WebSocketFrameDecoder(maxFrameSize: 1000)
        var payload: [UInt8] = []
        let bytes = clientFrame(.binary, payload: Array(0..<10))
        // Header (2) + key (4) + 3 payload bytes.
        let first = try decodeFrameOnce(&decoder, Array(bytes.prefix(9)), into: &payload)
        #expect(first.consumed == 6)
        #expect(first.event == .header(WebSocketFrameHeader(fin: true, opcode: .binary, payloadLength: 10)))
        #expect(payload.isEmpty)
        let second = try decodeFrameOnce(&decoder, Array(bytes[6..<9]), into: &payload)
        #expect(second.consumed == 3)
        #expect(second.event == nil)
        #expect(payload == [0, 1, 2], "payload is unmasked as it arrives")
        #expect(!decoder.isAtFrameBoundary)
        let third = try decodeFrameOnce(&decoder, Array(bytes[9...]), into: &payload)
        #expect(third.consumed == 7)
        #expect(third.event == .frame(WebSocketFrameHeader(fin: true, opcode: .binary, payloadLength: 10)))
        #expect(payload == Array(0..<10))
        #expect(decoder.isAtFrameBoundary)
    }

    @Test func emptyPayloadFrameCompletesWithoutMoreInput() throws {
        var decoder = WebSocketFrameDecoder(maxFrameSize: 1000)
        var payload: [UInt8] = []
        let bytes = clientFrame(.ping)
        let header = try decodeFrameOnce(&decoder, bytes, into: &payload)
        #expect(header.consumed == bytes.count)
        #expect(header.event == .header(WebSocketFrameHeader(fin: true, opcode: .ping, payloadLength: 0)))
        let frame = try decodeFrameOnce(&decoder, [], into: &payload)
        #expect(frame.consumed == 0)
        #expect(frame.event == .frame(WebSocketFrameHeader(fin: true, opcode: .ping, payloadLength: 0)))
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 1000])
    func unmasksAtEverySplit(chunkSize: Int) throws {
        // A 1000-byte payload under a key whose bytes differ, split so reads start at every key phase.
        let payload = WebSocketTestSupport.pseudoRandomBytes(count: 1000, seed: 7)
        let bytes = clientFrame(WebSocketOpcode.binary.rawValue, payload: payload, maskKey: [0x01, 0x23, 0x45, 0x67])
        let frames = try decodeFrames(bytes, chunkSize: chunkSize)
        #expect(frames.map(\.payload) == [payload])
    }

    @Test func everyCloseCodeMapping() {
        let expected: [(WebSocketError, UInt16)] = [
            (.unmaskedFrame, 1002), (.reservedBitsSet, 1002), (.unexpectedRSV1(.text), 1002),
            (.reservedOpcode(3), 1002), (.fragmentedControlFrame(.ping), 1002), (.controlFrameTooLong(.close), 1002),
            (.invalidPayloadLength, 1002), (.frameTooLarge(limit: 1), 1009), (.messageTooLarge(limit: 1), 1009),
            (.unexpectedContinuation, 1002), (.expectedContinuation(.text), 1002), (.invalidUTF8(offset: 0), 1007),
            (.closePayloadTooShort, 1002), (.invalidCloseCode(1005), 1002),
        ]
        for (error, code) in expected {
            #expect(error.closeCode.rawValue == code, "\(error)")
            #expect(!error.description.isEmpty)
        }
    }

    @Test func opcodes() {
        #expect(WebSocketOpcode.allCases.filter(\.isControl) == [.close, .ping, .pong])
        for raw in UInt8(0)...0x0F {
            let known: Set<UInt8> = [0, 1, 2, 8, 9, 0xA]
            #expect((WebSocketOpcode(rawValue: raw) != nil) == known.contains(raw))
        }
    }
}
