import BlastBeatCore
import Testing

@Suite struct WebSocketMessageAssemblerTests {
    static let chunkSizes = [1, 2, 3, 7, 0]

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var expected: [AssembledEvent]
        var allowCompression = false
        var testDescription: String { self.name }
    }

    static let cases: [Case] = [
        Case(
            name: "single text",
            bytes: clientFrame(.text, "Hello"),
            expected: [AssembledEvent(.text(compressed: false), "Hello")]
        ),
        Case(
            name: "single binary",
            bytes: clientFrame(.binary, payload: [0, 0xFF]),
            expected: [AssembledEvent(.binary(compressed: false), [0, 0xFF])]
        ),
        Case(name: "empty text", bytes: clientFrame(.text), expected: [AssembledEvent(.text(compressed: false), [])]),
        Case(
            name: "three fragments",
            bytes: clientFrame(.text, fin: false, "He") + clientFrame(.continuation, fin: false, "ll")
                + clientFrame(.continuation, "o"),
            expected: [AssembledEvent(.text(compressed: false), "Hello")]
        ),
        Case(
            name: "empty fragments",
            bytes: clientFrame(.binary, fin: false) + clientFrame(.continuation, fin: false, "x")
                + clientFrame(.continuation),
            expected: [AssembledEvent(.binary(compressed: false), "x")]
        ),
        Case(
            name: "pings and a pong between fragments are delivered at once",
            bytes: clientFrame(.text, fin: false, "Hel") + clientFrame(.ping, "p1")
                + clientFrame(.continuation, fin: false, "l")
                + clientFrame(.pong, "q") + clientFrame(.ping) + clientFrame(.continuation, "o"),
            expected: [
                AssembledEvent(.ping, "p1"), AssembledEvent(.pong, "q"), AssembledEvent(.ping, []),
                AssembledEvent(.text(compressed: false), "Hello"),
            ]
        ),
        Case(
            name: "several messages in one buffer",
            bytes: clientFrame(.text, "one") + clientFrame(.binary, "two") + clientFrame(.ping, "3")
                + clientFrame(.text, "four"),
            expected: [
                AssembledEvent(.text(compressed: false), "one"), AssembledEvent(.binary(compressed: false), "two"),
                AssembledEvent(.ping, "3"), AssembledEvent(.text(compressed: false), "four"),
            ]
        ),
        Case(
            name: "multi-byte characters split across fragments",
            bytes: clientFrame(.text, fin: false, payload: [0xCE, 0xBA, 0xE1])
                + clientFrame(.continuation, fin: false, payload: [0xBD])
                + clientFrame(.continuation, fin: false, payload: [0xB9, 0xCF])
                + clientFrame(.continuation, payload: [0x83, 0xF0, 0x9F, 0x98, 0x80]),
            expected: [
                AssembledEvent(
                    .text(compressed: false),
                    WebSocketTestSupport.bytes(hex: "ce ba e1 bd b9 cf 83 f0 9f 98 80")
                )
            ]
        ),
        Case(
            name: "close with code and reason ends the stream; later bytes are ignored",
            bytes: clientFrame(.close, payload: [0x03, 0xE8] + Array("bye".utf8)) + clientFrame(.text, "ignored")
                + [0xFF, 0xFF],
            expected: [AssembledEvent(.close(code: .normalClosure), "bye")]
        ),
        Case(
            name: "empty close",
            bytes: clientFrame(.close),
            expected: [AssembledEvent(.close(code: nil), [])]
        ),
        Case(
            name: "close during a fragmented message",
            bytes: clientFrame(.text, fin: false, "a") + clientFrame(.close, payload: [0x0F, 0xA0]),
            expected: [AssembledEvent(.close(code: WebSocketCloseCode(4000)), [])]
        ),
        Case(
            name: "compressed text is not UTF-8 checked here",
            bytes: clientFrame(.text, fin: false, rsv: 4, payload: [0xF2, 0x48])
                + clientFrame(.continuation, payload: [0xFF]),
            expected: [AssembledEvent(.text(compressed: true), [0xF2, 0x48, 0xFF])],
            allowCompression: true
        ),
        Case(
            name: "uncompressed text after a compressed one is checked again",
            bytes: clientFrame(.binary, rsv: 4, payload: [1]) + clientFrame(.text, "ok"),
            expected: [AssembledEvent(.binary(compressed: true), [1]), AssembledEvent(.text(compressed: false), "ok")],
            allowCompression: true
        ),
    ]

    @Test(arguments: cases, chunkSizes)
    func assembles(_ row: Case, chunkSize: Int) throws {
        let events = try assembleMessages(row.bytes, chunkSize: chunkSize, allowCompression: row.allowCompression)
        #expect(events == row.expected)
    }

    struct InvalidCase: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var error: WebSocketError
        var maxMessageSize = 1 << 20
        /// Events delivered before the error.
        var before: [AssembledEvent] = []
        var testDescription: String { self.name }
    }

    static let invalidCases: [InvalidCase] = [
        InvalidCase(
            name: "continuation without a message",
            bytes: clientFrame(.continuation, "x"),
            error: .unexpectedContinuation
        ),
        InvalidCase(
            name: "continuation after a finished message",
            bytes: clientFrame(.text, "done") + clientFrame(.continuation, "x"),
            error: .unexpectedContinuation,
            before: [AssembledEvent(.text(compressed: false), "done")]
        ),
        InvalidCase(
            name: "text while a message is in progress",
            bytes: clientFrame(.text, fin: false, "a") + clientFrame(.text, "b"),
            error: .expectedContinuation(.text)
        ),
        InvalidCase(
            name: "binary while a message is in progress, after a ping",
            bytes: clientFrame(.binary, fin: false, "a") + clientFrame(.ping) + clientFrame(.binary, "b"),
            error: .expectedContinuation(.binary),
            before: [AssembledEvent(.ping, [])]
        ),
        InvalidCase(
            name: "single frame over the message limit",
            bytes: clientFrame(.binary, payload: [UInt8](repeating: 1, count: 11)),
            error: .messageTooLarge(limit: 10),
            maxMessageSize: 10
        ),
        InvalidCase(
            name: "fragments over the message limit",
            bytes: clientFrame(.binary, fin: false, payload: [UInt8](repeating: 1, count: 6))
                + clientFrame(.continuation, payload: [UInt8](repeating: 1, count: 5)),
            error: .messageTooLarge(limit: 10),
            maxMessageSize: 10
        ),
        InvalidCase(
            name: "invalid UTF-8 in a single frame",
            bytes: clientFrame(.text, payload: [0x61, 0xFF, 0x62]),
            error: .invalidUTF8(offset: 1)
        ),
        InvalidCase(
            name: "invalid UTF-8 in the second fragment",
            bytes: clientFrame(.text, fin: false, "abc") + clientFrame(.continuation, payload: [0xED, 0xA0, 0x80]),
            error: .invalidUTF8(offset: 4)
        ),
        InvalidCase(
            name: "truncated character at the end of the message",
            bytes: clientFrame(.text, fin: false, "a") + clientFrame(.continuation, payload: [0xE2, 0x82]),
            error: .invalidUTF8(offset: 3)
        ),
        InvalidCase(
            name: "overlong in text",
            bytes: clientFrame(.text, payload: [0xC0, 0x80]),
            error: .invalidUTF8(offset: 0)
        ),
        InvalidCase(
            name: "code point above U+10FFFF",
            bytes: clientFrame(.text, payload: [0xF4, 0x90, 0x80, 0x80]),
            error: .invalidUTF8(offset: 1)
        ),
        InvalidCase(
            name: "close with 1-byte payload",
            bytes: clientFrame(.close, payload: [0x03]),
            error: .closePayloadTooShort
        ),
        InvalidCase(
            name: "close with code 1005",
            bytes: clientFrame(.close, payload: [0x03, 0xED]),
            error: .invalidCloseCode(1005)
        ),
        InvalidCase(
            name: "close with invalid UTF-8 reason",
            bytes: clientFrame(.close, payload: [0x03, 0xE8, 0x61, 0xC0]),
            error: .invalidUTF8(offset: 1)
        ),
        InvalidCase(
            name: "frame rule errors come through",
            bytes: clientFrame(.text, rsv: 4, "x"),
            error: .unexpectedRSV1(.text)
        ),
    ]

    @Test(arguments: invalidCases, chunkSizes)
    func rejects(_ row: InvalidCase, chunkSize: Int) {
        var assembler = WebSocketMessageAssembler(maxFrameSize: 1 << 20, maxMessageSize: row.maxMessageSize)
        var events: [AssembledEvent] = []
        var thrown: WebSocketError?
        outer: for read in WebSocketTestSupport.chunks(row.bytes, size: chunkSize) {
            var rest = read
            while true {
                do {
                    let (consumed, event) = try feedAssemblerOnce(&assembler, rest)
                    rest.removeFirst(consumed)
                    guard let event else { break }
                    switch event {
                    case .text, .binary: events.append(AssembledEvent(event, assembler.messagePayload))
                    case .ping, .pong: events.append(AssembledEvent(event, assembler.controlPayload))
                    case .close: events.append(AssembledEvent(event, Array(assembler.closeReason)))
                    }
                } catch {
                    thrown = error
                    break outer
                }
            }
        }
        #expect(thrown == row.error)
        #expect(events == row.before)
        // Stays failed.
        #expect(webSocketError { try feedAssemblerOnce(&assembler, clientFrame(.ping)) } == row.error)
    }

    /// Autobahn 6.4.x: a text message whose first part is invalid must be refused before the rest arrives, even in
    /// the middle of a frame.
    @Test func failsFastInTheMiddleOfAFrame() throws {
        var assembler = WebSocketMessageAssembler(maxFrameSize: 1 << 20, maxMessageSize: 1 << 20)
        // Autobahn's "kosme" (11 bytes), then F4 90 80 80 (above U+10FFFF).
        let payload =
            WebSocketTestSupport.bytes(hex: "ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80") + Array("-edited".utf8)
        let frame = clientFrame(.text, payload: payload)
        // Header (2) + mask (4) + the valid part + F4: all accepted, no event yet.
        let firstPart = Array(frame.prefix(6 + 11 + 1))
        let first = try feedAssemblerOnce(&assembler, firstPart)
        #expect(first.consumed == firstPart.count)
        #expect(first.event == nil)
        // The next byte (0x90) cannot follow F4: refused without waiting for the rest of the frame.
        let error = webSocketError { try feedAssemblerOnce(&assembler, [frame[6 + 12]]) }
        #expect(error == .invalidUTF8(offset: 12))
    }

    @Test func failsFastInTheFirstFragment() throws {
        var assembler = WebSocketMessageAssembler(maxFrameSize: 1 << 20, maxMessageSize: 1 << 20)
        let error = webSocketError {
            try feedAssemblerOnce(&assembler, clientFrame(.text, fin: false, payload: [0x61, 0x80]))
        }
        #expect(error == .invalidUTF8(offset: 1))
    }

    @Test func messageLimitIsCheckedBeforeThePayloadArrives() throws {
        var assembler = WebSocketMessageAssembler(maxFrameSize: 1 << 20, maxMessageSize: 100)
        let _ = try feedAssemblerOnce(
            &assembler,
            clientFrame(.binary, fin: false, payload: [UInt8](repeating: 0, count: 60))
        )
        // Only the header of a 50-byte continuation: 60 + 50 > 100.
        let header = Array(clientFrame(.continuation, payload: [UInt8](repeating: 0, count: 50)).prefix(6))
        #expect(webSocketError { try feedAssemblerOnce(&assembler, header) } == .messageTooLarge(limit: 100))
    }

    @Test func messageExactlyAtTheLimitIsAccepted() throws {
        let bytes =
            clientFrame(.binary, fin: false, payload: [UInt8](repeating: 1, count: 60))
            + clientFrame(.continuation, payload: [UInt8](repeating: 2, count: 40))
        let events = try assembleMessages(bytes, chunkSize: 0, maxMessageSize: 100)
        #expect(events.map(\.payload.count) == [100])
    }

    @Test func payloadsStayReadableUntilTheNextMessageStarts() throws {
        var assembler = WebSocketMessageAssembler(maxFrameSize: 1000, maxMessageSize: 1000)
        let bytes = clientFrame(.text, "first") + clientFrame(.ping, "p") + clientFrame(.text, "second")
        var rest = bytes
        var seen: [String] = []
        while true {
            let (consumed, event) = try feedAssemblerOnce(&assembler, rest)
            rest.removeFirst(consumed)
            guard let event else { break }
            seen.append("\(event) \(String(decoding: assembler.messagePayload, as: UTF8.self))")
        }
        #expect(
            seen == ["text(compressed: false) first", "ping first", "text(compressed: false) second"]
        )
        #expect(assembler.isAtMessageBoundary)
    }

    @Test func messageBoundary() throws {
        var assembler = WebSocketMessageAssembler(maxFrameSize: 1000, maxMessageSize: 1000)
        #expect(assembler.isAtMessageBoundary)
        _ = try feedAssemblerOnce(&assembler, clientFrame(.text, fin: false, "a"))
        #expect(!assembler.isAtMessageBoundary)
        _ = try feedAssemblerOnce(&assembler, Array(clientFrame(.continuation, "b").prefix(3)))
        #expect(!assembler.isAtMessageBoundary)
    }

    /// A long conversation, decoded one byte at a time and all at once, gives the same events.
    @Test func longConversationByteAtATime() throws {
        var bytes: [UInt8] = []
        var expected: [AssembledEvent] = []
        for index in 0..<50 {
            let text = String(repeating: "é\(index)", count: index)
            let utf8 = Array(text.utf8)
            let cut = utf8.count / 3
            bytes += clientFrame(.text, fin: false, payload: Array(utf8[..<cut]))
            bytes += clientFrame(.ping, payload: [UInt8(index)])
            bytes += clientFrame(.continuation, payload: Array(utf8[cut...]))
            expected.append(AssembledEvent(.ping, [UInt8(index)]))
            expected.append(AssembledEvent(.text(compressed: false), utf8))
        }
        #expect(try assembleMessages(bytes, chunkSize: 1) == expected)
        #expect(try assembleMessages(bytes, chunkSize: 0) == expected)
    }
}
