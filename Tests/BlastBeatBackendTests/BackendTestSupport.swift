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
        let complete = try bytes.withUnsafeBytes { try parser.parse($0.bytes, into: &head) }
        #expect(complete)
        var out: [UInt8] = []
        try UwsgiEncoder.encode(head: head, request: bytes.span.bytes, context: context, into: &out)
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
///
/// With `curveSecretKey` it is a CURVE server, and a ZAP handler in its context decides which client keys
/// get in, as the gateway's `node-key` lines do: `allowedClientKeys` (nil: every key). ZAP requests are
/// answered from `receive`, so a handshake makes progress only while the test is receiving.
final class TestRouter {
    private let context: UnsafeMutableRawPointer
    private let socket: UnsafeMutableRawPointer
    /// The REP socket libzmq sends ZAP requests to (`inproc://zeromq.zap.01`), for a CURVE router.
    private let zap: UnsafeMutableRawPointer?
    let endpoint: String
    /// Client public keys allowed in by the ZAP handler; nil allows every key.
    var allowedClientKeys: Set<[UInt8]>?
    /// Every ZAP request's mechanism and client public key, in order.
    private(set) var zapRequests: [(mechanism: String, clientKey: [UInt8])] = []

    /// `metadata`: a ZMTP property its handshake sends (`X-BlastBeat-Workers:2`, as a gateway with workers
    /// does); `port`: bind that port instead of a free one (a gateway restarted on its endpoint).
    init(curveSecretKey: [UInt8]? = nil, allowedClientKeys: Set<[UInt8]>? = nil, metadata: String? = nil, port: Int? = nil) {
        let context = zmq_ctx_new()!
        let socket = zmq_socket(context, ZMQ_ROUTER)!
        self.context = context
        self.socket = socket
        self.allowedClientKeys = allowedClientKeys
        var zero: Int32 = 0
        zmq_setsockopt(socket, ZMQ_LINGER, &zero, 4)
        var one: Int32 = 1
        zmq_setsockopt(socket, ZMQ_ROUTER_MANDATORY, &one, 4)
        if let curveSecretKey {
            // The handler must be bound before the first handshake, or libzmq lets every client in.
            let zap = zmq_socket(context, ZMQ_REP)!
            zmq_setsockopt(zap, ZMQ_LINGER, &zero, 4)
            precondition(zmq_bind(zap, "inproc://zeromq.zap.01") == 0, "zap bind: \(zmq_errno())")
            self.zap = zap
            precondition(zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &one, 4) == 0)
            precondition(curveSecretKey.withUnsafeBytes {
                zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, $0.baseAddress, $0.count)
            } == 0)
        } else {
            zap = nil
        }
        if let metadata {
            // ZMQ_METADATA (95) is a draft option: zmq.h hides its name, libzmq takes it.
            precondition(metadata.withCString { zmq_setsockopt(socket, 95, $0, strlen($0)) } == 0)
        }
        precondition(zmq_bind(socket, "tcp://127.0.0.1:\(port.map(String.init) ?? "*")") == 0, "zmq_bind: \(zmq_errno())")
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, &buffer, &size)
        endpoint = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The bound TCP port.
    var port: Int { Int(endpoint.split(separator: ":").last!)! }

    deinit {
        if let zap { zmq_close(zap) }
        zmq_close(socket)
        zmq_ctx_term(context)
    }

    /// One whole message (identity first), waiting at most `timeoutMilliseconds`; answers ZAP requests
    /// meanwhile.
    func receive(timeoutMilliseconds: Int = 0) -> [[UInt8]]? {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while true {
            let left = (deadline - ContinuousClock.now).components
            let milliseconds = max(0, Int(left.seconds * 1000 + left.attoseconds / 1_000_000_000_000_000))
            var items = [zmq_pollitem_t(socket: socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)]
            if let zap { items.append(zmq_pollitem_t(socket: zap, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)) }
            let count = items.count
            guard items.withUnsafeMutableBufferPointer({ zmq_poll($0.baseAddress, Int32(count), milliseconds) }) > 0
            else { return nil }
            if count == 2 && items[1].revents & Int16(ZMQ_POLLIN) != 0 {
                answerZAP()
                continue
            }
            return Self.receiveFrames(socket)
        }
    }

    /// ZAP (ZeroMQ RFC 27): version, request id, domain, address, routing id, mechanism, credentials; for
    /// CURVE the one credential is the client's public key. Answered 200 or 400.
    private func answerZAP() {
        guard let zap, let request = Self.receiveFrames(zap), request.count >= 6 else { return }
        let mechanism = String(decoding: request[5], as: UTF8.self)
        let clientKey = request.count > 6 ? request[6] : []
        zapRequests.append((mechanism, clientKey))
        let allowed = allowedClientKeys.map { $0.contains(clientKey) } ?? true
        let (status, text) = allowed ? ("200", "OK") : ("400", "unknown key")
        let reply = [bytes("1.0"), request[1], bytes(status), bytes(text), [], []]
        Self.send(reply, on: zap)
    }

    private static func receiveFrames(_ socket: UnsafeMutableRawPointer) -> [[UInt8]]? {
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
        Self.send(frames, on: socket)
    }

    @discardableResult
    private static func send(_ frames: [[UInt8]], on socket: UnsafeMutableRawPointer) -> Bool {
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            let sent = frame.withUnsafeBytes { zmq_send(socket, $0.baseAddress, $0.count, flags) }
            if sent < 0 { return false }
        }
        return true
    }
}

/// Runs a node's `run` (with the `Quiet` handler) on a thread of its own. Not a Task: `run` blocks, and the
/// cooperative pool has only as many threads as cores (two on CI), which two running nodes would take.
final class NodeThread: @unchecked Sendable {
    // @unchecked: `failure` is written by the thread before it ends and read after pthread_join.
    private var thread = pthread_t()
    private let node: BackendNode
    private var failure: BackendError?

    init(_ node: BackendNode) {
        self.node = node
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(
            &thread, nil,
            { context in
                let me = Unmanaged<NodeThread>.fromOpaque(context!).takeRetainedValue()
                do throws(BackendError) { try me.node.run(handler: Quiet()) } catch { me.failure = error }
                return nil
            }, context)
        precondition(created == 0, "pthread_create: \(created)")
    }

    /// Waits for `run` to return (call `node.stop()` first) and rethrows what it threw.
    func join() throws {
        pthread_join(thread, nil)
        if let failure { throw failure }
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
        case creditGranted
    }

    var events: [Event] = []
    var sessions: [Session] = []
    var onStart: (Request, Session) throws -> Void = { _, _ in }
    var onBodyEnded: (Session) throws -> Void = { _ in }
    var onWebSocket: (WebSocketMessage, Session) throws -> Void = { _, _ in }
    var onCredit: (Session) throws -> Void = { _ in }

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

    func creditGranted(session: Session) throws {
        events.append(.creditGranted)
        try onCredit(session)
    }
}

/// A node core connected to a test router, with the handshake done (the announcement pong received).
struct Harness {
    let router: TestRouter
    let core: NodeCore
    let handler: Recorder
    let identity: [UInt8]

    /// `credit`: the node announces credit (docs/PROTOCOL.md, "Credit"); off by default so that the other
    /// tests see the messages of a node talking to a gateway that does not grant it.
    init(identity: String = "node-a", handler: Recorder = Recorder(), credit: Bool = false) throws {
        router = TestRouter()
        core = try NodeCore(identity: identity, endpoints: [router.endpoint], announcesCredit: credit)
        self.handler = handler
        self.identity = Array(identity.utf8)
        let announcement = try next()
        #expect(announcement == [self.identity, [], Array("pong".utf8), credit ? Array("credit".utf8) : []])
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
