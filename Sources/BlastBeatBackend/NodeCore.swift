internal import BlastBeatCore
internal import BlastBeatSystem
import Glibc

/// Names one session: the gateway it came from (index into the endpoints) and its 16-byte sid.
///
/// The same sid from two gateways is two sessions: each gateway draws its own sids.
struct SessionKey: Hashable, Sendable {
    var gateway: Int
    var sid: SessionID
}

/// What the node last saw of one gateway connection, so that each change is logged once: a failing
/// handshake is retried every few seconds, forever.
enum GatewayLink: Equatable {
    case connecting
    case connected
    /// The last handshake failed (and no other has succeeded since). After a failure that `endsConnecting`,
    /// the node connects anew at `retryAt`, waiting twice as long each time up to `maxRetryDelay`: a refused
    /// key may be allowed later, and a gateway may be restarted with CURVE on, but libzmq itself would never
    /// try again. `retryAt` is nil while libzmq retries by itself or an attempt is under way.
    case failing(ZMQDealer.HandshakeFailure, retryAt: ContinuousClock.Instant?, delay: Duration)
}

/// What the node keeps per live session.
struct SessionRecord {
    /// The current request (the last `uwsgi` on the session).
    var request: Request
    var response = ResponseState()
}

/// The running part of a `BackendNode`: the dealers, the session table and the message dispatch.
///
/// Exists only while `run` runs and is touched only by its thread (`Session` values point at it, and are not
/// `Sendable` for that reason). Kept apart from `BackendNode` so that tests can drive it step by step with
/// `pump` against their own ROUTER socket.
final class NodeCore {
    /// Largest `body`/`chunk`/`headers` message the node sends; longer writes are split (as the Python SDK does).
    static let maxMessageBytes = 1 << 20

    let identity: String
    let endpoints: [String]
    let curve: CurveCredentials?
    /// Whether the node announces credit (docs/PROTOCOL.md, "Credit").
    let announcesCredit: Bool
    private var dealers: [ZMQDealer] = []
    /// One per dealer: the credit its gateway granted, and the messages waiting for more.
    private var gates: [CreditGate] = []
    /// One per dealer.
    private(set) var links: [GatewayLink] = []
    private(set) var sessions: [SessionKey: SessionRecord] = [:]
    /// Messages dropped: malformed, unknown type, bad sid, undecodable uwsgi, or for no live session.
    private(set) var droppedMessages = 0
    /// Pings answered.
    private(set) var pingsAnswered = 0
    /// Unsolicited `pong`s sent after a connection's handshake.
    private(set) var announcements = 0
    /// Handshakes that failed (each retry counts).
    private(set) var handshakeFailures = 0
    /// Connections made anew after a handshake failure that libzmq does not retry.
    private(set) var reconnects = 0
    static let firstRetryDelay = Duration.seconds(1)
    static let maxRetryDelay = Duration.seconds(30)

    init(
        identity: String, endpoints: [String], curve: CurveCredentials? = nil, sendTimeoutMilliseconds: Int32 = 2000,
        announcesCredit: Bool = true
    ) throws(BackendError) {
        self.identity = identity
        self.endpoints = endpoints
        self.curve = curve
        self.announcesCredit = announcesCredit
        for endpoint in endpoints {
            do {
                dealers.append(
                    try ZMQDealer(
                        identity: Array(identity.utf8), endpoint: endpoint, curve: curve?.keys,
                        sendTimeoutMilliseconds: sendTimeoutMilliseconds))
            } catch {
                close()
                throw BackendError.invalidEndpoint.with("cannot connect to \(endpoint): \(error)")
            }
        }
        links = Array(repeating: .connecting, count: dealers.count)
        gates = Array(repeating: CreditGate(), count: dealers.count)
    }

    /// Closes every dealer; what was sent gets up to a second to go out.
    func close() {
        for dealer in dealers { dealer.close() }
        dealers = []
    }

    // MARK: - Receiving

    /// Waits up to `timeoutMilliseconds` for messages and handles everything that is ready.
    func pump(handler: some BackendHandler, timeoutMilliseconds: Int) throws(BackendError) {
        reconnectDue(now: .now)
        let ready: [ZMQDealer.Readiness]
        do {
            ready = try ZMQDealer.poll(dealers, timeoutMilliseconds: timeoutMilliseconds)
        } catch {
            throw BackendError.socket.with("\(error)")
        }
        for gateway in ready.indices {
            if ready[gateway].event { connectionEvents(gateway: gateway, handler: handler) }
            if ready[gateway].message { receive(gateway: gateway, handler: handler) }
        }
    }

    private func connectionEvents(gateway: Int, handler: some BackendHandler) {
        for event in dealers[gateway].connectionEvents() {
            switch event {
            case .handshakeStarted:
                // An attempt is under way (libzmq's own, or ours): no reconnection of ours may cut it short.
                if case .failing(let failure, _, let delay) = links[gateway] {
                    links[gateway] = .failing(failure, retryAt: nil, delay: delay)
                }
            case .disconnected:
                guard links[gateway] == .connected else { continue }
                links[gateway] = .connecting
                // The gateway forgot every session of ours (it answers their clients 502), or it restarted.
                log("lost the connection to \(endpoints[gateway]); reconnecting")
                gates[gateway].reset()
                endSessions(where: { $0.gateway == gateway }, handler: handler)
            case .handshakeFailed(let failure):
                handshakeFailures += 1
                var delay = Self.firstRetryDelay
                var isNews = true
                if case .failing(let previous, _, let previousDelay) = links[gateway] {
                    delay = min(previousDelay * 2, Self.maxRetryDelay)
                    isNews = previous != failure
                }
                if isNews {
                    log("handshake with \(endpoints[gateway]) failed: \(failure)\(hint(failure)); retrying")
                }
                links[gateway] = .failing(failure, retryAt: failure.endsConnecting ? .now + delay : nil, delay: delay)
            case .connected:
                if case .failing = links[gateway] { log("connected to \(endpoints[gateway])") }
                links[gateway] = .connected
                // Announce ourselves: an instance identity (NAME#x) is unknown to a gateway until it hears
                // from it, and a restarted gateway has forgotten it.
                announcements += 1
                let announcement: StaticString = announcesCredit ? "credit" : ""
                let body = UnsafeRawBufferPointer(start: announcement.utf8Start, count: announcement.utf8CodeUnitCount)
                _ = try? dealers[gateway].send(sid: Self.noBytes, type: "pong", body: body, wait: false)
            }
        }
    }

    /// Connects anew where a handshake failure made libzmq give up and the wait is over.
    private func reconnectDue(now: ContinuousClock.Instant) {
        for gateway in links.indices {
            guard case .failing(let failure, let retryAt?, let delay) = links[gateway], retryAt <= now else { continue }
            links[gateway] = .failing(failure, retryAt: nil, delay: delay)
            do {
                try dealers[gateway].reconnect()
                reconnects += 1
            } catch {
                log("cannot connect to \(endpoints[gateway]) again: \(error)")
            }
        }
    }

    /// What an operator should check after a failed CURVE handshake. A CURVE gateway closes the connection
    /// when our server key is wrong (it cannot open our HELLO), and may do the same instead of refusing when
    /// it does not list our public key for our node name; a refusal means the server key was right.
    private func hint(_ failure: ZMQDealer.HandshakeFailure) -> String {
        guard let curve else { return "" }
        let nodeKey = "the gateway lists this node's public key \(curve.publicKey) as a node-key of its node name"
        switch failure {
        case .closed, .ended:
            return " (check that the server key \(curve.serverKey) is the gateway's public key, and that \(nodeKey))"
        case .refused:
            return " (check that \(nodeKey))"
        case .mechanismMismatch, .protocolError:
            return ""
        }
    }

    private func receive(gateway: Int, handler: some BackendHandler) {
        // Then give the other gateways a turn.
        for _ in 0..<1000 {
            guard let received = dealers[gateway].receive() else { return }
            switch received {
            case .malformed(let frameCount):
                droppedMessages += 1
                log("dropped a message of \(frameCount) frame(s) from \(endpoints[gateway]); expected 3")
            case .message(let message):
                dispatch(gateway: gateway, message, handler: handler)
            }
        }
    }

    private static var noBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    private func dispatch(gateway: Int, _ message: ZMQDealer.Message, handler: some BackendHandler) {
        guard let type = GatewayMessageType(message.type) else {
            droppedMessages += 1
            return
        }
        if case .ping = type {
            pingsAnswered += 1
            _ = try? dealers[gateway].send(sid: message.sid, type: "pong", body: Self.noBytes, wait: false)
            return
        }
        if case .credit = type, message.sid.isEmpty {
            if gates[gateway].mode == .sendingFreely { log("\(endpoints[gateway]) grants credit: per-session flow control on") }
            return gates[gateway].acknowledged()
        }
        guard let sid = SessionID(message.sid) else {
            droppedMessages += 1
            return
        }
        let key = SessionKey(gateway: gateway, sid: sid)
        let session = Session(core: self, key: key)
        switch type {
        case .credit:
            guard message.body.count == 4, gates[gateway].mode == .waitingForCredit else {
                droppedMessages += 1
                return
            }
            let bytes = message.body.reduce(0) { $0 << 8 | Int($1) }
            for released in gates[gateway].grant(sid, bytes) {
                // A failure here is the gateway gone or stuck: its session ends by `end` or the lost connection.
                released.body.withUnsafeBytes { raw in
                    do throws(BackendError) { try transmit(key, released.type, raw) } catch { log("sending to \(endpoints[gateway]): \(error)") }
                }
            }
            if sessions[key] != nil { call(session) { try handler.creditGranted(session: session) } }
        case .uwsgi:
            gates[gateway].newRequest(sid)
            guard let request = Request(uwsgi: Array(message.body)) else {
                droppedMessages += 1
                log("undecodable uwsgi packet on session \(sid.hex); ending it")
                _ = try? send(key, .end, Self.noBytes)
                return
            }
            var record = sessions[key] ?? SessionRecord(request: request)
            record.request = request
            record.response.requestStarted(isHEAD: request.method == "HEAD", isWebSocket: request.isWebSocket)
            sessions[key] = record
            call(session) { try handler.requestStarted(request, session: session) }
        case .body:
            guard sessions[key] != nil else {
                droppedMessages += 1
                return
            }
            if message.body.isEmpty {
                call(session) { try handler.requestBodyEnded(session: session) }
            } else {
                let bytes = Array(message.body)
                call(session) { try handler.requestBody(bytes, session: session) }
            }
        case .websocket, .websocketBinary:
            guard sessions[key] != nil else {
                droppedMessages += 1
                return
            }
            let payload: WebSocketMessage =
                type == .websocket
                ? .text(String(decoding: message.body, as: UTF8.self)) : .binary(Array(message.body))
            call(session) { try handler.webSocketMessage(payload, session: session) }
        case .end:
            gates[gateway].ended(sid)
            // May arrive more than once, or after a `retry` moved the session away: harmless.
            guard sessions.removeValue(forKey: key) != nil else { return }
            handler.sessionEnded(session: session)
        case .ping:
            preconditionFailure("ping is answered above")
        }
    }

    /// Runs a callback; a thrown error answers 500 if the head is still to be sent, else aborts the session
    /// (the body stays cut off; a WebSocket is closed with 1011). The Python SDK does the same
    /// (python/src/blastbeat/node.py, `Request._fail`); Tests/SDKTests/test_sdk_conformance.py compares them.
    private func call(_ session: Session, _ body: () throws -> Void) {
        do {
            try body()
        } catch {
            log("handler failed on session \(session.key.sid.hex): \(error)")
            guard let record = sessions[session.key] else { return }
            if record.response.isAwaitingHead && !record.response.isWebSocket {
                do {
                    try session.respond(
                        status: 500, headers: [("Content-Type", "text/plain; charset=utf-8")],
                        body: "Internal Server Error\n")
                    return
                } catch {
                    // Fall through to ending the session.
                }
            }
            try? session.abort()
        }
    }

    /// Drops the matching sessions and tells the handler, in no particular order.
    func endSessions(where matches: (SessionKey) -> Bool, handler: some BackendHandler) {
        let keys = sessions.keys.filter(matches)
        for key in keys {
            sessions.removeValue(forKey: key)
            handler.sessionEnded(session: Session(core: self, key: key))
        }
    }

    /// Stopping: a request not answered yet goes to another node (`retry`), a response or WebSocket in
    /// progress is ended; then every session is reported ended (retried ones included, unlike after
    /// `Session.retry`, so that the handler can drop everything it keeps).
    func shutdown(handler: some BackendHandler) {
        let records = sessions
        for (key, record) in records {
            let session = Session(core: self, key: key)
            switch record.response.state {
            case .awaitingHead(_, isWebSocket: false):
                try? session.retry()
            case .awaitingHead(_, isWebSocket: true), .body, .webSocket:
                try? session.end()
            case .idle, .complete, .ended:
                break
            }
        }
        sessions = [:]
        for key in records.keys {
            handler.sessionEnded(session: Session(core: self, key: key))
        }
    }

    // MARK: - Sending

    /// Runs `body` on a live session's record.
    func withRecord<R>(_ key: SessionKey, _ body: (inout SessionRecord) throws(BackendError) -> R) throws(BackendError)
        -> R
    {
        guard sessions[key] != nil else { throw BackendError.sessionEnded }
        return try body(&sessions[key]!)
    }

    func record(_ key: SessionKey) -> SessionRecord? { sessions[key] }

    /// Forgets a session without telling the handler (after `retry`: it belongs to another node now).
    func forget(_ key: SessionKey) {
        sessions.removeValue(forKey: key)
    }

    /// Response bytes of the session waiting for credit.
    func bytesWaitingForCredit(_ key: SessionKey) -> Int {
        key.gateway < gates.count ? gates[key.gateway].waitingBytes(key.sid) : 0
    }

    /// Sends one message on the session's gateway, or keeps it (or its rest) until the gateway grants credit.
    func send(_ key: SessionKey, _ type: BackendMessageType, _ body: UnsafeRawBufferPointer) throws(BackendError) {
        guard key.gateway < gates.count else { throw BackendError.sessionEnded.with("the node has stopped") }
        switch gates[key.gateway].admit(key.sid, type, count: body.count) {
        case .send:
            try transmit(key, type, body)
        case .sendFirst(let count):
            try transmit(key, type, UnsafeRawBufferPointer(rebasing: body[..<count]))
            gates[key.gateway].hold(key.sid, type, Array(body[count...]))
        case .hold:
            gates[key.gateway].hold(key.sid, type, Array(body))
        }
    }

    /// Sends one message on the session's gateway now.
    private func transmit(_ key: SessionKey, _ type: BackendMessageType, _ body: UnsafeRawBufferPointer) throws(BackendError) {
        guard key.gateway < dealers.count else { throw BackendError.sessionEnded.with("the node has stopped") }
        let result: ZMQDealer.SendResult
        do {
            result = try key.sid.withBytes { sid throws(ZMQError) in
                try dealers[key.gateway].send(sid: sid, type: type.bytes, body: body)
            }
        } catch {
            throw BackendError.socket.with("\(error)")
        }
        if result == .full {
            throw BackendError.sendTimedOut.with("\(endpoints[key.gateway]) did not take a \(type) message in time")
        }
    }

    /// Sends `body` as one or more messages of `type`, each at most `maxMessageBytes`.
    func send(_ key: SessionKey, _ type: BackendMessageType, _ body: ArraySlice<UInt8>) throws(BackendError) {
        var start = body.startIndex
        repeat {
            let end = min(start + Self.maxMessageBytes, body.endIndex)
            try send(key, type, bytesOf: body[start..<end])
            start = end
        } while start < body.endIndex
    }

    /// Sends one message whose body is `bytes`.
    func send(_ key: SessionKey, _ type: BackendMessageType, bytesOf bytes: ArraySlice<UInt8>) throws(BackendError) {
        // `withUnsafeBytes` rethrows untyped errors; carry the typed one out by hand.
        var failure: BackendError?
        bytes.withUnsafeBytes { raw in
            do throws(BackendError) { try send(key, type, raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    func log(_ message: String) {
        var line = "blastbeat-backend[\(identity)]: \(message)\n"
        line.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}
