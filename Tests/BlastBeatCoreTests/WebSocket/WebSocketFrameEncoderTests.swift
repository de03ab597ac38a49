import BlastBeatCore
import Testing

@Suite struct WebSocketFrameEncoderTests {
    struct HeaderCase: Sendable, CustomTestStringConvertible {
        var opcode: WebSocketOpcode
        var fin = true
        var rsv1 = false
        var length: Int
        var expected: [UInt8]
        var testDescription: String { "\(self.opcode) fin=\(self.fin) rsv1=\(self.rsv1) length=\(self.length)" }
    }

    static let headerCases: [HeaderCase] = [
        HeaderCase(opcode: .text, length: 0, expected: [0x81, 0x00]),
        HeaderCase(opcode: .text, length: 5, expected: [0x81, 0x05]),
        HeaderCase(opcode: .binary, length: 125, expected: [0x82, 0x7D]),
        HeaderCase(opcode: .binary, length: 126, expected: [0x82, 0x7E, 0x00, 0x7E]),
        // RFC 6455 §5.7: 256 bytes binary in a single unmasked frame.
        HeaderCase(opcode: .binary, length: 256, expected: [0x82, 0x7E, 0x01, 0x00]),
        HeaderCase(opcode: .binary, length: 65535, expected: [0x82, 0x7E, 0xFF, 0xFF]),
        // RFC 6455 §5.7: 64 KiB binary in a single unmasked frame.
        HeaderCase(opcode: .binary, length: 65536, expected: [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
        HeaderCase(opcode: .binary, length: 1 << 40, expected: [0x82, 0x7F, 0, 0, 1, 0, 0, 0, 0, 0]),
        HeaderCase(opcode: .text, fin: false, length: 3, expected: [0x01, 0x03]),
        HeaderCase(opcode: .continuation, fin: false, length: 3, expected: [0x00, 0x03]),
        HeaderCase(opcode: .continuation, length: 2, expected: [0x80, 0x02]),
        HeaderCase(opcode: .text, rsv1: true, length: 7, expected: [0xC1, 0x07]),
        HeaderCase(opcode: .binary, fin: false, rsv1: true, length: 7, expected: [0x42, 0x07]),
        HeaderCase(opcode: .ping, length: 5, expected: [0x89, 0x05]),
        HeaderCase(opcode: .pong, length: 125, expected: [0x8A, 0x7D]),
        HeaderCase(opcode: .close, length: 2, expected: [0x88, 0x02]),
    ]

    @Test(arguments: headerCases)
    func writesHeader(_ row: HeaderCase) {
        var output: [UInt8] = [0xAA]
        WebSocketFrameEncoder.writeHeader(
            into: &output,
            opcode: row.opcode,
            fin: row.fin,
            rsv1: row.rsv1,
            payloadLength: row.length
        )
        #expect(output == [0xAA] + row.expected, "appends after what is already there")
        #expect(WebSocketFrameEncoder.headerSize(payloadLength: row.length) == row.expected.count)
    }

    @Test func rfcUnmaskedHello() {
        var output: [UInt8] = []
        Array("Hello".utf8).withUnsafeBytes {
            WebSocketFrameEncoder.writeFrame(into: &output, opcode: .text, payload: $0)
        }
        #expect(output == WebSocketTestSupport.bytes(hex: "81 05 48 65 6c 6c 6f"))
        output.removeAll()
        Array("Hello".utf8).withUnsafeBytes { WebSocketFrameEncoder.writePing(into: &output, payload: $0.bytes) }
        #expect(output == WebSocketTestSupport.bytes(hex: "89 05 48 65 6c 6c 6f"))
        output.removeAll()
        Array("Hello".utf8).withUnsafeBytes { WebSocketFrameEncoder.writePong(into: &output, payload: $0.bytes) }
        #expect(output == WebSocketTestSupport.bytes(hex: "8a 05 48 65 6c 6c 6f"))
    }

    struct CloseCase: Sendable, CustomTestStringConvertible {
        var code: WebSocketCloseCode?
        var reason: [UInt8]
        var expectedPayload: [UInt8]
        var testDescription: String { "\(self.code.map { "\($0)" } ?? "no code") + \(self.reason.count)-byte reason" }
    }

    static let longASCII = [UInt8](repeating: 0x61, count: 200)
    /// 122 ASCII bytes then "é" (2 bytes): the cut at 123 would split the "é".
    static let splitAtBoundary = [UInt8](repeating: 0x61, count: 122) + [0xC3, 0xA9, 0x62]

    static let closeCases: [CloseCase] = [
        CloseCase(code: nil, reason: [], expectedPayload: []),
        CloseCase(code: .normalClosure, reason: [], expectedPayload: [0x03, 0xE8]),
        CloseCase(
            code: .messageTooBig,
            reason: Array("too big".utf8),
            expectedPayload: [0x03, 0xF1] + Array("too big".utf8)
        ),
        CloseCase(code: WebSocketCloseCode(4000), reason: [], expectedPayload: [0x0F, 0xA0]),
        CloseCase(code: .protocolError, reason: longASCII, expectedPayload: [0x03, 0xEA] + longASCII.prefix(123)),
        CloseCase(
            code: .goingAway,
            reason: splitAtBoundary,
            expectedPayload: [0x03, 0xE9] + splitAtBoundary.prefix(122)
        ),
    ]

    @Test(arguments: closeCases)
    func writesClose(_ row: CloseCase) throws {
        var output: [UInt8] = []
        row.reason.withUnsafeBytes { WebSocketFrameEncoder.writeClose(into: &output, code: row.code, reason: $0) }
        #expect(output == [0x88, UInt8(row.expectedPayload.count)] + row.expectedPayload)
        // What we send is a close frame we would accept ourselves.
        let parsed = try row.expectedPayload.withUnsafeBytes { bytes in
            Result { () throws(WebSocketError) in try WebSocketCloseCode(closePayload: bytes) }
        }.get()
        #expect(parsed == row.code)
    }

    @Test(arguments: [0, 1, 125, 126, 127, 65535, 65536, 100_000])
    func roundTripsThroughTheDecoder(length: Int) throws {
        let payload = WebSocketTestSupport.pseudoRandomBytes(count: length, seed: UInt64(length))
        var output: [UInt8] = []
        payload.withUnsafeBytes { WebSocketFrameEncoder.writeFrame(into: &output, opcode: .binary, payload: $0) }
        #expect(output.count == WebSocketFrameEncoder.headerSize(payloadLength: length) + length)
        let frames = try decodeFrames(output, chunkSize: 0, requireMask: false)
        #expect(
            frames == [
                DecodedFrame(
                    header: WebSocketFrameHeader(fin: true, opcode: .binary, payloadLength: length),
                    payload: payload
                )
            ]
        )
    }
}
