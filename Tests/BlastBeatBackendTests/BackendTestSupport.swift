import BlastBeatCore
import CZeroMQ
import Glibc
import Testing

@testable import BlastBeatBackend

/// Builds request environments the way the gateway does: parse the HTTP head, encode it as uwsgi.
enum Uwsgi {
    static let context = UwsgiRequestContext(
        serverName: Array("localhost".utf8), serverPort: Array("8080".utf8),
        remoteAddress: Array("127.0.0.1".utf8), remotePort: Array("50000".utf8), isTLS: false)

    /// `lines` joined with CRLF plus the blank line, parsed and encoded.
    static func packet(_ lines: String...) throws -> [UInt8] {
        let bytes = Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
        var parser = HTTPRequestHeadParser(limits: HTTPLimits())
        var head = HTTPRequestHead()
        let complete = try bytes.withUnsafeBytes { try parser.parse($0, into: &head) }
        #expect(complete)
        var out: [UInt8] = []
        try bytes.withUnsafeBytes { try UwsgiEncoder.encode(head: head, request: $0, context: context, into: &out) }
        return out
    }

    /// A packet written by hand from pairs, with the standard size field or the original's (4 + pairs).
    static func handmade(_ pairs: [(String, [UInt8])], originalSize: Bool = false) -> [UInt8] {
        var body: [UInt8] = []
        for (key, value) in pairs {
            let k = Array(key.utf8)
            body += [UInt8(k.count & 0xFF), UInt8(k.count >> 8)] + k
            body += [UInt8(value.count & 0xFF), UInt8(value.count >> 8)] + value
        }
        let size = body.count + (originalSize ? 4 : 0)
        return [0, UInt8(size & 0xFF), UInt8(size >> 8), 0] + body
    }
}

/// A gateway stand-in: a ROUTER socket on a free TCP port of 127.0.0.1 (the node's DEALERs have their own
/// contexts, so `inproc` cannot reach them).
final class TestRouter {
    private let context: UnsafeMutableRawPointer
    private let socket: UnsafeMutableRawPointer
    let endpoint: String

    init() {
        context = zmq_ctx_new()!
        socket = zmq_socket(context, ZMQ_ROUTER)!
        var zero: Int32 = 0
        zmq_setsockopt(socket, ZMQ_LINGER, &zero, 4)
        var one: Int32 = 1
        zmq_setsockopt(socket, ZMQ_ROUTER_MANDATORY, &one, 4)
        precondition(zmq_bind(socket, "tcp://127.0.0.1:*") == 0, "zmq_bind: \(zmq_errno())")
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, &buffer, &size)
        endpoint = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        zmq_close(socket)
        zmq_ctx_term(context)
    }

    /// One whole message (identity first), waiting at most `timeoutMilliseconds`.
    func receive(timeoutMilliseconds: Int = 0) -> [[UInt8]]? {
        var item = zmq_pollitem_t(socket: socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        guard zmq_poll(&item, 1, timeoutMilliseconds) > 0 else { return nil }
        var frames: [[UInt8]] = []
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        repeat {
            guard zmq_msg_recv(&message, socket, 0) >= 0 else { return nil }
            let size = zmq_msg_size(&message)
            let data = zmq_msg_data(&message)!
            frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
        } while zmq_msg_more(&message) != 0
        return frames
    }

    /// Sends the frames as one message; false when the identity is not connected.
    @discardableResult
    func send(_ frames: [[UInt8]]) -> Bool {
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            let sent = frame.withUnsafeBytes { zmq_send(socket, $0.baseAddress, $0.count, flags) }
            if sent < 0 { return false }
        }
        return true
    }
}

/// Records every callback and runs the test's reactions.
final class Recorder: BackendHandler {
    enum Event: Equatable {
        case started(method: String, path: String)
        case body([UInt8])
        case bodyEnded
        case webSocket(WebSocketMessage)
        case ended
    }

    var events: [Event] = []
    var sessions: [Session] = []
    var onStart: (Request, Session) throws -> Void = { _, _ in }
    var onBodyEnded: (Session) throws -> Void = { _ in }
    var onWebSocket: (WebSocketMessage, Session) throws -> Void = { _, _ in }

    func requestStarted(_ request: Request, session: Session) throws {
        events.append(.started(method: request.method, path: request.path))
        sessions.append(session)
        try onStart(request, session)
    }

    func requestBody(_ bytes: [UInt8], session: Session) throws {
        events.append(.body(bytes))
    }

    func requestBodyEnded(session: Session) throws {
        events.append(.bodyEnded)
        try onBodyEnded(session)
    }

    func webSocketMessage(_ message: WebSocketMessage, session: Session) throws {
        events.append(.webSocket(message))
        try onWebSocket(message, session)
    }

    func sessionEnded(session: Session) {
        events.append(.ended)
    }
}

/// A node core connected to a test router, with the handshake done (the announcement pong received).
struct Harness {
    let router: TestRouter
    let core: NodeCore
    let handler: Recorder
    let identity: [UInt8]

    init(identity: String = "node-a", handler: Recorder = Recorder()) throws {
        router = TestRouter()
        core = try NodeCore(identity: identity, endpoints: [router.endpoint])
        self.handler = handler
        self.identity = Array(identity.utf8)
        let announcement = try next()
        #expect(announcement == [self.identity, [], Array("pong".utf8), []])
    }

    /// Pumps the node until the router has a message, and returns it (nil after two seconds).
    func next() throws -> [[UInt8]]? {
        let deadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < deadline {
            if let message = router.receive() { return message }
            try core.pump(handler: handler, timeoutMilliseconds: 5)
            if let message = router.receive(timeoutMilliseconds: 5) { return message }
        }
        return nil
    }

    /// The node's next message without the identity frame, as (sid, type, body).
    func nextReply() throws -> (sid: [UInt8], type: String, body: [UInt8])? {
        guard let frames = try next() else { return nil }
        #expect(frames.count == 4 && frames[0] == identity, "unexpected frames \(frames)")
        guard frames.count == 4 else { return nil }
        return (frames[1], String(decoding: frames[2], as: UTF8.self), frames[3])
    }

    /// The node's next messages as readable (type, body text) pairs, until none comes for `quietMilliseconds`.
    func replies(quietMilliseconds: Int = 100) throws -> [String] {
        var out: [String] = []
        while true {
            try core.pump(handler: handler, timeoutMilliseconds: 5)
            guard let frames = router.receive(timeoutMilliseconds: quietMilliseconds) else { return out }
            out.append(String(decoding: frames[2], as: UTF8.self) + ":" + String(decoding: frames[3], as: UTF8.self))
        }
    }

    /// Sends (sid, type, body) from the "gateway" and pumps the node until the handler saw `events` more
    /// events, or two seconds passed.
    func deliver(_ sid: [UInt8], _ type: String, _ body: [UInt8] = [], events expected: Int = 1) throws {
        let before = handler.events.count
        #expect(router.send([identity, sid, Array(type.utf8), body]))
        let deadline = ContinuousClock.now + .seconds(2)
        while handler.events.count < before + expected && ContinuousClock.now < deadline {
            try core.pump(handler: handler, timeoutMilliseconds: 5)
        }
    }

    /// Sends a message the handler will not see (ping, malformed, dropped) and pumps a little.
    func deliverQuietly(_ frames: [[UInt8]]) throws {
        #expect(router.send([identity] + frames))
        for _ in 0..<10 { try core.pump(handler: handler, timeoutMilliseconds: 5) }
    }

    func close() {
        core.close()
    }
}

func sid(_ n: UInt8) -> [UInt8] { [UInt8](repeating: n, count: 16) }
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
