import BlastBeatCore
import Testing

@Suite struct WebSocketCloseCodeTests {
    static let validCodes: [UInt16] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
    static let invalidCodes: [UInt16] = [
        0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ]

    @Test(arguments: validCodes)
    func acceptsValidCode(_ code: UInt16) throws {
        let payload = [UInt8(code >> 8), UInt8(code & 0xFF)]
        let parsed = try parse(payload)
        #expect(parsed == WebSocketCloseCode(code))
    }

    @Test(arguments: invalidCodes)
    func rejectsInvalidCode(_ code: UInt16) {
        let payload = [UInt8(code >> 8), UInt8(code & 0xFF)] + Array("reason".utf8)
        #expect(webSocketError { try parse(payload) } == .invalidCloseCode(code))
        #expect(WebSocketError.invalidCloseCode(code).closeCode == .protocolError)
    }

    struct PayloadCase: Sendable, CustomTestStringConvertible {
        var payload: [UInt8]
        var result: Result<WebSocketCloseCode?, WebSocketError>
        var testDescription: String { WebSocketTestSupport.hex(self.payload) }
    }

    static let payloadCases: [PayloadCase] = [
        PayloadCase(payload: [], result: .success(nil)),
        PayloadCase(payload: [0x03], result: .failure(.closePayloadTooShort)),
        PayloadCase(payload: [0x03, 0xE8], result: .success(.normalClosure)),
        PayloadCase(payload: [0x03, 0xE8] + Array("normal".utf8), result: .success(.normalClosure)),
        PayloadCase(payload: [0x03, 0xE9] + Array("κόσμε".utf8), result: .success(.goingAway)),
        PayloadCase(payload: [0x03, 0xE8, 0xFF], result: .failure(.invalidUTF8(offset: 0))),
        PayloadCase(payload: [0x03, 0xE8, 0x61, 0xED, 0xA0, 0x80], result: .failure(.invalidUTF8(offset: 2))),
        PayloadCase(payload: [0x03, 0xE8, 0x61, 0xE2, 0x82], result: .failure(.invalidUTF8(offset: 3))),
        PayloadCase(payload: [0x03, 0xE8] + [UInt8](repeating: 0x61, count: 123), result: .success(.normalClosure)),
        // The code is checked before the reason.
        PayloadCase(payload: [0x03, 0xED, 0xFF], result: .failure(.invalidCloseCode(1005))),
    ]

    @Test(arguments: payloadCases)
    func closePayload(_ row: PayloadCase) {
        let result = Result { () throws(WebSocketError) in try parse(row.payload) }
        #expect(result == row.result)
    }

    private func parse(_ payload: [UInt8]) throws(WebSocketError) -> WebSocketCloseCode? {
        let result = payload.withUnsafeBytes { bytes in
            Result { () throws(WebSocketError) in try WebSocketCloseCode(closePayload: bytes) }
        }
        return try result.get()
    }
}
