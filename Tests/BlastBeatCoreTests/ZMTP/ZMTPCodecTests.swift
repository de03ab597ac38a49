import BlastBeatCore
import Testing

/// The ZMTP 3.x pieces the native ROUTER uses, against byte strings from RFC 23 and from what
/// libzmq 4.3 puts on the wire (captured with a pyzmq DEALER).
@Suite struct ZMTPCodecTests {
    /// libzmq 4.3's greeting as a DEALER sends it: signature, 3.1, NULL, as-server 0.
    static let libzmqGreeting: [UInt8] =
        [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [0]
        + [UInt8](repeating: 0, count: 31)

    @Test func ourGreetingIsVersion31WithNull() {
        let g = ZMTPGreeting.bytes
        #expect(g.count == 64)
        #expect(g[0] == 0xFF && g[9] == 0x7F)
        #expect(g[10] == 3 && g[11] == 1)
        #expect(Array(g[12..<16]) == Array("NULL".utf8))
        #expect(g[16..<64].allSatisfy { $0 == 0 })
        // Our own greeting passes our own check, as does libzmq's.
        #expect(g.withUnsafeBytes { ZMTPGreeting.check($0.bytes) } == nil)
        #expect(Self.libzmqGreeting.withUnsafeBytes { ZMTPGreeting.check($0.bytes) } == nil)
    }

    struct GreetingCase: Sendable, CustomTestStringConvertible {
        var name: String
        var patch: [(Int, UInt8)]
        var expected: ZMTPGreeting.Refusal?
        var testDescription: String { name }
    }

    static let greetingCases: [GreetingCase] = [
        GreetingCase(name: "ZMTP 3.0", patch: [(11, 0)], expected: nil),
        GreetingCase(name: "ZMTP 4.0 (future)", patch: [(10, 4)], expected: nil),
        GreetingCase(name: "ZMTP 2.0 (libzmq 3.x)", patch: [(10, 1)], expected: .version(major: 1)),
        GreetingCase(name: "first byte not FF (ZMTP 1.0 identity length)", patch: [(0, 0x01)], expected: .notZMTP),
        GreetingCase(name: "10th byte without bit 0", patch: [(9, 0x7E)], expected: .notZMTP),
        GreetingCase(name: "CURVE", patch: [(12, 67), (13, 85), (14, 82), (15, 86), (16, 69)], expected: .mechanism("CURVE", expected: .null)),
        GreetingCase(name: "PLAIN", patch: [(12, 80), (13, 76), (14, 65), (15, 73), (16, 78)], expected: .mechanism("PLAIN", expected: .null)),
        GreetingCase(name: "NULLX", patch: [(16, 88)], expected: .mechanism("NULLX", expected: .null)),
        GreetingCase(name: "as-server 1 is fine with NULL", patch: [(32, 1)], expected: nil),
    ]

    @Test(arguments: greetingCases) func greetingChecks(_ c: GreetingCase) {
        var g = Self.libzmqGreeting
        for (i, b) in c.patch { g[i] = b }
        #expect(g.withUnsafeBytes { ZMTPGreeting.check($0.bytes) } == c.expected)
    }

    @Test func signaturePrefixRefusesNonZMTPEarly() {
        #expect([UInt8]().withUnsafeBytes { ZMTPGreeting.signatureLooksValid($0.bytes) })
        #expect([0xFF].withUnsafeBytes { ZMTPGreeting.signatureLooksValid($0.bytes) })
        #expect(!Array("GET / HTTP/1.1".utf8.prefix(10)).withUnsafeBytes { ZMTPGreeting.signatureLooksValid($0.bytes) })
        #expect(!Array("G".utf8).withUnsafeBytes { ZMTPGreeting.signatureLooksValid($0.bytes) })
        #expect(Array(Self.libzmqGreeting.prefix(10)).withUnsafeBytes { ZMTPGreeting.signatureLooksValid($0.bytes) })
    }

    struct HeaderCase: Sendable, CustomTestStringConvertible {
        var bytes: [UInt8]
        var expected: ZMTPFrame.Decoded
        var testDescription: String { bytes.map { String($0, radix: 16) }.joined(separator: " ") }
    }

    static let headerCases: [HeaderCase] = [
        HeaderCase(bytes: [], expected: .needMore),
        HeaderCase(bytes: [0x00], expected: .needMore),
        HeaderCase(bytes: [0x00, 0], expected: .header(.init(flags: 0, bodySize: 0, headerSize: 2))),
        HeaderCase(bytes: [0x01, 16, 0xAA], expected: .header(.init(flags: 1, bodySize: 16, headerSize: 2))),
        HeaderCase(bytes: [0x00, 255], expected: .header(.init(flags: 0, bodySize: 255, headerSize: 2))),
        HeaderCase(bytes: [0x04, 25], expected: .header(.init(flags: 4, bodySize: 25, headerSize: 2))),
        HeaderCase(bytes: [0x02, 0, 0, 0, 0, 0, 0, 1], expected: .needMore),
        HeaderCase(bytes: [0x02, 0, 0, 0, 0, 0, 0, 1, 0], expected: .header(.init(flags: 2, bodySize: 256, headerSize: 9))),
        HeaderCase(bytes: [0x03, 0, 0, 0, 0, 0, 0x10, 0, 0], expected: .header(.init(flags: 3, bodySize: 1 << 20, headerSize: 9))),
        HeaderCase(bytes: [0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], expected: .header(.init(flags: 6, bodySize: .max, headerSize: 9))),
        // Reserved bits, and a command claiming MORE.
        HeaderCase(bytes: [0x08, 0], expected: .invalid),
        HeaderCase(bytes: [0x80, 0], expected: .invalid),
        HeaderCase(bytes: [0x05, 0], expected: .invalid),
    ]

    @Test(arguments: headerCases) func decodesFrameHeaders(_ c: HeaderCase) {
        #expect(c.bytes.withUnsafeBytes { ZMTPFrame.decodeHeader($0.bytes) } == c.expected)
    }

    @Test(arguments: [0, 1, 16, 255, 256, 65_536, 1 << 20, 1 << 33]) func headerRoundTrips(size: Int) {
        for (more, command) in [(false, false), (true, false), (false, true)] {
            var buffer = [UInt8](repeating: 0xEE, count: ZMTPFrame.maxHeaderSize)
            let n = buffer.withUnsafeMutableBytes {
                ZMTPFrame.encodeHeader(size: size, more: more, command: command, into: $0.baseAddress!)
            }
            #expect(n == ZMTPFrame.headerSize(for: size))
            #expect(n == (size <= 255 ? 2 : 9))
            let decoded = buffer.withUnsafeBytes { ZMTPFrame.decodeHeader(UnsafeRawBufferPointer(rebasing: $0[0..<n]).bytes) }
            guard case .header(let h) = decoded else {
                Issue.record("\(decoded)")
                return
            }
            #expect(h.bodySize == UInt64(size) && h.hasMore == more && h.isCommand == command && h.headerSize == n)
        }
    }

    /// libzmq 4.3 DEALER with ZMQ_ROUTING_ID "hello": Socket-Type then Identity.
    static let dealerReady: [UInt8] =
        [5] + Array("READY".utf8) + [11] + Array("Socket-Type".utf8) + [0, 0, 0, 6] + Array("DEALER".utf8)
        + [8] + Array("Identity".utf8) + [0, 0, 0, 5] + Array("hello".utf8)

    @Test func parsesLibzmqReady() throws {
        let command = try #require(Self.dealerReady.withUnsafeBytes { ZMTPCommand.parse($0).map { (Array($0.name), Array($0.data)) } })
        #expect(command.0 == Array("READY".utf8))
        let ready = try #require(command.1.withUnsafeBytes { ZMTPCommand.parseReady($0.bytes) })
        #expect(ready.socketType == Array("DEALER".utf8))
        #expect(ready.identity == Array("hello".utf8))
        #expect(ZMTPCommand.isRouterCompatible(ready.socketType))
    }

    struct ReadyCase: Sendable, CustomTestStringConvertible {
        var name: String
        var data: [UInt8]
        var expected: ZMTPCommand.Ready?
        var testDescription: String { name }
    }

    static func property(_ name: String, _ value: [UInt8]) -> [UInt8] {
        [UInt8(name.utf8.count)] + Array(name.utf8) + withUnsafeBytes(of: UInt32(value.count).bigEndian, Array.init) + value
    }

    static let readyCases: [ReadyCase] = [
        ReadyCase(name: "no identity", data: property("Socket-Type", Array("DEALER".utf8)), expected: .init(socketType: Array("DEALER".utf8), identity: [])),
        ReadyCase(
            name: "names ignore case, unknown properties skipped",
            data: property("X-App", [1, 2, 3]) + property("IDENTITY", [0x41]) + property("socket-type", Array("REQ".utf8)),
            expected: .init(socketType: Array("REQ".utf8), identity: [0x41])),
        ReadyCase(name: "empty", data: [], expected: nil),
        ReadyCase(name: "value runs past the end", data: Array(property("Socket-Type", Array("DEALER".utf8)).dropLast()), expected: nil),
        ReadyCase(name: "zero-length name", data: [0, 0, 0, 0, 0], expected: nil),
        ReadyCase(name: "truncated size", data: [1, 65, 0, 0], expected: nil),
    ]

    @Test(arguments: readyCases) func readyProperties(_ c: ReadyCase) {
        #expect(c.data.withUnsafeBytes { ZMTPCommand.parseReady($0.bytes) } == c.expected)
    }

    @Test func compatibleSocketTypes() {
        for t in ["DEALER", "REQ", "ROUTER"] { #expect(ZMTPCommand.isRouterCompatible(Array(t.utf8))) }
        for t in ["PUB", "SUB", "PUSH", "PULL", "PAIR", "REP", "dealer", ""] { #expect(!ZMTPCommand.isRouterCompatible(Array(t.utf8))) }
    }

    @Test func routerReadyFrameIsACommandWithSocketTypeRouter() throws {
        let frame = ZMTPCommand.routerReadyFrame(workers: 2)
        guard case .header(let h) = frame.withUnsafeBytes({ ZMTPFrame.decodeHeader($0.bytes) }) else {
            Issue.record("not a frame")
            return
        }
        #expect(h.isCommand && !h.hasMore && Int(h.bodySize) == frame.count - 2)
        let body = Array(frame[2...])
        let parsed = try #require(body.withUnsafeBytes { ZMTPCommand.parse($0).map { (Array($0.name), Array($0.data)) } })
        #expect(parsed.0 == Array("READY".utf8))
        #expect(parsed.1.withUnsafeBytes { ZMTPCommand.parseReady($0.bytes) } == .init(socketType: Array("ROUTER".utf8), identity: []))
        // The worker count, as libzmq's zmq_msg_gets("X-BlastBeat-Workers") gives it to a backend.
        #expect(parsed.1 == Self.property("Socket-Type", Array("ROUTER".utf8)) + Self.property("X-BlastBeat-Workers", Array("2".utf8)))
        #expect(ZMTPCommand.routerMetadata(workers: 64).suffix(2) == Array("64".utf8))
    }

    /// The worker a backend connection asks for, as libzmq's ZMQ_METADATA "X-BlastBeat-Worker:K" sends it.
    @Test(arguments: [
        ("1", WorkerLabel.index(1)), ("0", .index(0)), ("063", .index(63)), ("999", .index(999)),
        ("", .malformed([])), ("1000", .malformed(Array("1000".utf8))), ("-1", .malformed(Array("-1".utf8))),
        (" 1", .malformed(Array(" 1".utf8))), ("x", .malformed(Array("x".utf8))), ("+1", .malformed(Array("+1".utf8))),
    ])
    func workerLabelInReady(_ row: (String, WorkerLabel)) {
        let data = Self.property("Socket-Type", Array("DEALER".utf8)) + Self.property("x-blastbeat-WORKER", Array(row.0.utf8))
        #expect(data.withUnsafeBytes { ZMTPCommand.parseReady($0.bytes) }?.workerLabel == row.1)
        // The gateway's own property is another one: it never reads as a label.
        let count = Self.property("Socket-Type", Array("DEALER".utf8)) + Self.property("X-BlastBeat-Workers", Array(row.0.utf8))
        #expect(count.withUnsafeBytes { ZMTPCommand.parseReady($0.bytes) }?.workerLabel == .absent)
    }

    @Test func pongEchoesThePingContext() {
        let ping: [UInt8] = [0, 30] + Array("ctx".utf8)
        #expect(ping.withUnsafeBytes { ZMTPCommand.pongFrame(answering: $0.bytes) } == [0x04, 8, 4] + Array("PONGctx".utf8))
        #expect(([0, 0] as [UInt8]).withUnsafeBytes { ZMTPCommand.pongFrame(answering: $0.bytes) } == [0x04, 5, 4] + Array("PONG".utf8))
        #expect(([0] as [UInt8]).withUnsafeBytes { ZMTPCommand.pongFrame(answering: $0.bytes) } == nil)
        #expect([UInt8](repeating: 1, count: 19).withUnsafeBytes { ZMTPCommand.pongFrame(answering: $0.bytes) } == nil)
    }

    struct EndpointCase: Sendable, CustomTestStringConvertible {
        var text: String
        var expected: ZMTPEndpoint?
        var testDescription: String { text }
    }

    static let endpointCases: [EndpointCase] = [
        EndpointCase(text: "tcp://127.0.0.1:5000", expected: .tcp(ListenAddress(host: .ipv4("127.0.0.1"), port: 5000))),
        EndpointCase(text: "tcp://*:5000", expected: .tcp(ListenAddress(host: .any, port: 5000))),
        EndpointCase(text: "tcp://[::1]:5000", expected: .tcp(ListenAddress(host: .ipv6("::1", scope: nil), port: 5000))),
        EndpointCase(text: "tcp://localhost:5000", expected: .tcp(ListenAddress(host: .name("localhost"), port: 5000))),
        EndpointCase(text: "ipc:///run/blastbeat.sock", expected: .ipc(path: "/run/blastbeat.sock")),
        EndpointCase(text: "ipc://relative.sock", expected: .ipc(path: "relative.sock")),
        // Left to zmq-engine = libzmq: interface names, other transports.
        EndpointCase(text: "tcp://eth0:5000", expected: nil),
        EndpointCase(text: "inproc://gateway", expected: nil),
        EndpointCase(text: "pgm://eth0;239.192.1.1:5555", expected: nil),
        EndpointCase(text: "ipc://", expected: nil),
        EndpointCase(text: "ipc://" + String(repeating: "a", count: 108), expected: nil),
        EndpointCase(text: "tcp://127.0.0.1", expected: nil),
    ]

    @Test(arguments: endpointCases) func endpoints(_ c: EndpointCase) {
        #expect(ZMTPEndpoint.parse(c.text) == c.expected)
    }
}
