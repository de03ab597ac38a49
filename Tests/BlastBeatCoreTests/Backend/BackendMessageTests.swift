import BlastBeatCore
import Testing

@Suite struct BackendMessageTests {
    struct TypeCase: Sendable, CustomTestStringConvertible {
        var frame: [UInt8]
        var expected: BackendMessageType?
        var testDescription: String { String(reflecting: String(decoding: self.frame, as: UTF8.self)) }

        init(_ frame: String, _ expected: BackendMessageType?) {
            self.frame = Array(frame.utf8)
            self.expected = expected
        }

        init(bytes: [UInt8], _ expected: BackendMessageType?) {
            self.frame = bytes
            self.expected = expected
        }
    }

    static let typeCases: [TypeCase] = [
        TypeCase("headers", .headers),
        TypeCase("body", .body),
        TypeCase("chunk", .chunk),
        TypeCase("end", .end),
        TypeCase("websocket", .websocket),
        TypeCase("retry", .retry),
        TypeCase("pong", .pong),
        TypeCase("ping", .ping),
        TypeCase("uwsgi", .uwsgi),
        // No prefix matching (the original's), an empty frame is not `pong`.
        TypeCase("", nil),
        TypeCase("b", nil),
        TypeCase("bod", nil),
        TypeCase("p", nil),
        TypeCase("header", nil),
        TypeCase("en", nil),
        TypeCase("bodyx", nil),
        TypeCase("headerss", nil),
        TypeCase("websockets", nil),
        TypeCase("BODY", nil),
        TypeCase("Headers", nil),
        TypeCase(" end", nil),
        TypeCase("end ", nil),
        TypeCase("chunk\n", nil),
        TypeCase(bytes: Array("body".utf8) + [0], nil),
        TypeCase(bytes: [0], nil),
        TypeCase("close", nil),
        TypeCase("pang", nil),
    ]

    @Test(arguments: Self.typeCases)
    func backendTypeMatchesExactly(_ row: TypeCase) {
        let decoded = row.frame.withUnsafeBytes { BackendMessageType($0) }
        #expect(decoded == row.expected)
    }

    @Test(arguments: BackendMessageType.allCases)
    func backendTypeRoundTrips(_ type: BackendMessageType) {
        let decoded = type.bytes.withUTF8Buffer { BackendMessageType(UnsafeRawBufferPointer($0)) }
        #expect(decoded == type)
    }

    @Test(arguments: GatewayMessageType.allCases)
    func gatewayTypeRoundTrips(_ type: GatewayMessageType) {
        let decoded = type.bytes.withUTF8Buffer { GatewayMessageType(UnsafeRawBufferPointer($0)) }
        #expect(decoded == type)
    }

    @Test func gatewayTypeBytes() {
        let names = GatewayMessageType.allCases.map { $0.bytes.description }
        #expect(names == ["uwsgi", "body", "end", "ping", "websocket", "websocket-binary", "credit"])
    }

    @Test(arguments: ["", "headers", "pong", "chunk", "retry", "uwsg", "uwsgi2", "End"])
    func gatewayTypeRejectsOthers(_ frame: String) {
        let decoded = Array(frame.utf8).withUnsafeBytes { GatewayMessageType($0) }
        #expect(decoded == nil)
    }
}
