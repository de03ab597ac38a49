internal import BlastBeatCore
internal import BlastBeatSystem
import Glibc

/// Names one session: the gateway it came from (index into the endpoints), the connection to that gateway
/// its first message came in on (the worker label) and its 16-byte sid.
///
/// The same sid from two gateways is two sessions: each gateway draws its own sids. Replies go out on the
/// session's connection, for its whole life: normally the one its own gateway worker holds; for a session
/// begun while that worker had no connection of its own yet, the one it was forwarded through (that worker
/// hands the replies back). See `NodeCore.sessionKey`.
struct SessionKey: Hashable, Sendable {
    var gateway: Int
    var connection: Int
    var sid: SessionID
}

/// What the node keeps per live session.
struct SessionRecord {
    /// The current request (the last `uwsgi` on the session).
    var request: Request
    var response = ResponseState()
}

/// The running part of a `BackendNode`: the dealers (one per gateway worker, see `WorkerCount`), the session
/// table and the message dispatch.
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
    private let sendTimeoutMilliseconds: Int32
    /// One per endpoint.
    private var gateways: [GatewayConnections] = []
    /// Every open connection, in the order `poll` reports them (rebuilt when one opens or closes).
    private var polled: [(gateway: Int, connection: Int)] = []
    private var polledDealers: [ZMQDealer] = []
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
    /// Connections opened and closed because a gateway told its worker count.
    private(set) var workerConnectionsOpened = 0
    private(set) var workerConnectionsClosed = 0
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
        self.sendTimeoutMilliseconds = sendTimeoutMilliseconds
        for endpoint in endpoints {
            do {
                let first = try openConnection(endpoint: endpoint, worker: 0)
                gateways.append(GatewayConnections(endpoint: endpoint, connections: [first]))
            } catch {
                close()
                throw BackendError.invalidEndpoint.with("cannot connect to \(endpoint): \(error)")
            }
        }
        rebuildPollList()
    }

    /// A connection labelled for gateway worker `worker`, with the node's identity and CURVE keys (the same
    /// on every connection: each worker checks them as a single process would).
    private func openConnection(endpoint: String, worker: Int) throws(ZMQError) -> GatewayConnection {
        let dealer = try ZMQDealer(
            identity: Array(identity.utf8), endpoint: endpoint, curve: curve?.keys,
            metadata: WorkerCount.label(worker: worker), sendTimeoutMilliseconds: sendTimeoutMilliseconds)
        return GatewayConnection(worker: worker, dealer: dealer)
    }

    private func rebuildPollList() {
        polled = []
        polledDealers = []
        for gateway in gateways.indices {
            for connection in gateways[gateway].connections.indices {
                polled.append((gateway, connection))
                polledDealers.append(gateways[gateway].connections[connection].dealer)
            }
        }
    }

    /// Closes every dealer; what was sent gets up to a second to go out.
    func close() {
        for gateway in gateways {
            for connection in gateway.connections { connection.dealer.close() }
        }
        gateways = []
        rebuildPollList()
    }

    /// Each gateway's first connection's state (the one every node has), for tests and logs.
    var links: [GatewayLink] { gateways.map { $0.connections[0].link } }

    /// The state of each connection to gateway `gateway`, by worker label.
    func links(gateway: Int) -> [GatewayLink] { gateways[gateway].connections.map(\.link) }

    /// Whether the connection is still open and is the one `dealer` belongs to (a connection closed and
    /// opened again under the same label has a new dealer).
    private func isOpen(_ gateway: Int, _ connection: Int, _ dealer: ZMQDealer) -> Bool {
        gateway < gateways.count && connection < gateways[gateway].connections.count
            && gateways[gateway].connections[connection].dealer === dealer
    }

    // MARK: - Receiving

    /// Waits up to `timeoutMilliseconds` for messages and handles everything that is ready.
    func pump(handler: some BackendHandler, timeoutMilliseconds: Int) throws(BackendError) {
        reconnectDue(now: .now)
        let ready: [ZMQDealer.Readiness]
        do {
            ready = try ZMQDealer.poll(polledDealers, timeoutMilliseconds: timeoutMilliseconds)
        } catch {
            throw BackendError.socket.with("\(error)")
        }
        // What was polled: handling a message may open or close connections, which rebuilds the lists.
        let places = polled
        let dealers = polledDealers
        for index in ready.indices {
            let (gateway, connection) = places[index]
            if ready[index].event && isOpen(gateway, connection, dealers[index]) {
                connectionEvents(gateway: gateway, connection: connection, handler: handler)
            }
            if ready[index].message && isOpen(gateway, connection, dealers[index]) {
                receive(gateway: gateway, connection: connection, handler: handler)
            }
        }
    }

    /// How logs name a connection: the endpoint, and the worker label once there are several.
    private func name(_ gateway: Int, _ connection: Int) -> String {
        let endpoint = gateways[gateway].endpoint
        guard gateways[gateway].connections.count > 1 || connection > 0 else { return endpoint }
        return "\(endpoint) (worker \(gateways[gateway].connections[connection].worker))"
    }

    private func connectionEvents(gateway: Int, connection: Int, handler: some BackendHandler) {
        for event in gateways[gateway].connections[connection].dealer.connectionEvents() {
            let link = gateways[gateway].connections[connection].link
            switch event {
            case .handshakeStarted:
                // An attempt is under way (libzmq's own, or ours): no reconnection of ours may cut it short.
                if case .failing(let failure, _, let delay) = link {
                    gateways[gateway].connections[connection].link = .failing(failure, retryAt: nil, delay: delay)
                }
            case .disconnected:
                guard link.isUp else { continue }
                gateways[gateway].connections[connection].link = .connecting
                // The gateway worker forgot every session of ours on this connection (it answers their
                // clients 502), or the gateway restarted. libzmq reconnects this connection by itself; the
                // others are not touched.
                log("lost the connection to \(name(gateway, connection)); reconnecting")
                gateways[gateway].connections[connection].gate.reset()
                endSessions(where: { $0.gateway == gateway && $0.connection == connection }, handler: handler)
            case .handshakeFailed(let failure):
                handshakeFailures += 1
                var delay = Self.firstRetryDelay
                var isNews = true
                if case .failing(let previous, _, let previousDelay) = link {
                    delay = min(previousDelay * 2, Self.maxRetryDelay)
                    isNews = previous != failure
                }
                if isNews {
                    log("handshake with \(name(gateway, connection)) failed: \(failure)\(hint(failure)); retrying")
                }
                gateways[gateway].connections[connection].link =
                    .failing(failure, retryAt: failure.endsConnecting ? .now + delay : nil, delay: delay)
            case .connected:
                if case .failing = link { log("connected to \(name(gateway, connection))") }
                gateways[gateway].connections[connection].link = .awaitingWorkerCount
                // Connection 0 reclaiming the node's identity gets a full wait from its handshake to hear.
                if connection == 0, let wait = gateways[gateway].reclaim?.wait {
                    gateways[gateway].reclaim?.checkAt = .now + wait
                }
                // Announce ourselves on every connection: an instance identity (NAME#x) is unknown to a gateway
                // worker until it hears from it, a restarted gateway has forgotten it, and credit is granted
                // per connection.
                announcements += 1
                let announcement: StaticString = announcesCredit ? "credit" : ""
                let body = UnsafeRawBufferPointer(start: announcement.utf8Start, count: announcement.utf8CodeUnitCount)
                _ = try? gateways[gateway].connections[connection].dealer.send(
                    sid: Self.noBytes, type: "pong", body: body, wait: false)
            }
        }
    }

    /// Connects anew where a handshake failure made libzmq give up and the wait is over, and where connection
    /// 0 still has not heard from the gateway after extra connections closed (`reclaimIdentity`).
    private func reconnectDue(now: ContinuousClock.Instant) {
        for gateway in gateways.indices {
            if let checkAt = gateways[gateway].reclaim?.checkAt, checkAt <= now { reclaimIdentity(gateway: gateway, now: now) }
            for connection in gateways[gateway].connections.indices {
                let link = gateways[gateway].connections[connection].link
                guard case .failing(let failure, let retryAt?, let delay) = link, retryAt <= now else { continue }
                gateways[gateway].connections[connection].link = .failing(failure, retryAt: nil, delay: delay)
                do {
                    try gateways[gateway].connections[connection].dealer.reconnect()
                    reconnects += 1
                } catch {
                    log("cannot connect to \(name(gateway, connection)) again: \(error)")
                }
            }
        }
    }

    // MARK: - Worker connections

    /// Reads the gateway's worker count from the message just received on a connection, and opens or closes
    /// connections to match. Reads it from the first message after each handshake and from every control
    /// message (empty sid: `ping`, the credit acknowledgement), not from session messages: a count changes
    /// only with a gateway restart, which is a new handshake, and the lookup is not free.
    private func workerCount(gateway: Int, connection: Int, sid: UnsafeRawBufferPointer)
        -> WorkerCount.Advertised?
    {
        let link = gateways[gateway].connections[connection].link
        guard link != .connected || sid.isEmpty else { return nil }
        if link == .awaitingWorkerCount {
            gateways[gateway].connections[connection].link = .connected
            if connection == 0 { gateways[gateway].reclaim = nil }
        }
        let value = gateways[gateway].connections[connection].dealer.receivedProperty(WorkerCount.countProperty)
        let advertised = WorkerCount.parse(value)
        if advertised == .malformed, let value,
            gateways[gateway].malformedCountLogged.map({ !$0.elementsEqual(value) }) ?? true
        {
            gateways[gateway].malformedCountLogged = Array(value)
            log(
                "\(name(gateway, connection)) sent \(WorkerCount.countProperty) \(LogText.quoted(value)), not a count "
                    + "of 1 to \(WorkerCount.maxWorkers); keeping \(gateways[gateway].connections.count) connection(s)")
        }
        return advertised
    }

    private static func describe(_ workers: Range<Int>) -> String {
        workers.count == 1
            ? "worker \(workers.lowerBound)" : "workers \(workers.lowerBound) to \(workers.upperBound - 1)"
    }

    /// Opens or closes connections so that there is one per worker the gateway has.
    private func applyWorkerCount(gateway: Int, _ advertised: WorkerCount.Advertised, handler: some BackendHandler) {
        let endpoint = gateways[gateway].endpoint
        switch WorkerCount.change(open: gateways[gateway].connections.count, advertised: advertised) {
        case .unchanged, .ignored:
            return
        case .open(let workers):
            log("\(endpoint) has \(workers.upperBound) workers: opening a connection to \(Self.describe(workers))")
            for worker in workers {
                do {
                    gateways[gateway].connections.append(try openConnection(endpoint: endpoint, worker: worker))
                    workerConnectionsOpened += 1
                } catch {
                    // Tried again at the next message that tells the count (the gateway pings).
                    log("cannot connect to \(endpoint) for worker \(worker): \(error)")
                    break
                }
            }
        case .close(let workers):
            let now = advertised == .absent ? "no worker count (one connection)" : "\(workers.lowerBound) worker(s)"
            log("\(endpoint) now has \(now): closing the connection(s) to \(Self.describe(workers))")
            for worker in workers.reversed() {
                let closed = gateways[gateway].connections.removeLast()
                // Nobody will read what it still queues: that worker is gone, and with it the sessions.
                closed.dealer.close(discardingUnsent: true)
                workerConnectionsClosed += 1
                endSessions(where: { $0.gateway == gateway && $0.connection == worker }, handler: handler)
            }
            if gateways[gateway].connections[0].link != .connected {
                let handshakeDone = gateways[gateway].connections[0].link == .awaitingWorkerCount
                gateways[gateway].reclaim = IdentityReclaim(checkAt: handshakeDone ? .now + IdentityReclaim.firstWait : nil)
            }
        }
        rebuildPollList()
    }

    /// After the extra connections closed: when nothing has reached connection 0 since its handshake, a
    /// closed one may have held the node's identity at the gateway, and connection 0 may never get it. A
    /// libzmq ROUTER (`zmq-engine = libzmq`, or a gateway stand-in) ignores a second connection with an
    /// identity already in use, and nothing tells connection 0; connected anew, it takes the identity.
    ///
    /// Looked at `wait` after the close and after each handshake of connection 0 (`reconnectDue`), until a
    /// message reaches it (`workerCount` ends the reclaim). The wait doubles at each new connection: one
    /// made too early can meet its own predecessor, not yet gone at a libzmq ROUTER, and be ignored in
    /// turn; and a gateway that does not answer the announcement pings only every `ping-freq` (3 s by
    /// default; a real gateway answers a credit announcement at once).
    private func reclaimIdentity(gateway: Int, now: ContinuousClock.Instant) {
        guard var reclaim = gateways[gateway].reclaim else { return }
        switch gateways[gateway].connections[0].link {
        case .connected:
            gateways[gateway].reclaim = nil
            return
        case .connecting, .failing:
            reclaim.checkAt = nil  // armed by its next handshake
        case .awaitingWorkerCount:
            reclaim.checkAt = nil
            reclaim.wait = min(reclaim.wait * 2, IdentityReclaim.maxWait)
            gateways[gateway].connections[0].link = .connecting
            do {
                try gateways[gateway].connections[0].dealer.reconnect()
                reconnects += 1
                log("connecting to \(gateways[gateway].endpoint) anew: nothing reached this connection since its handshake")
            } catch {
                log("cannot connect to \(gateways[gateway].endpoint) again: \(error)")
            }
        }
        gateways[gateway].reclaim = reclaim
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

    private func receive(gateway: Int, connection: Int, handler: some BackendHandler) {
        let dealer = gateways[gateway].connections[connection].dealer
        // Then give the other connections a turn.
        for _ in 0..<1000 {
            guard let received = dealer.receive() else { return }
            switch received {
            case .malformed(let frameCount):
                droppedMessages += 1
                log("dropped a message of \(frameCount) frame(s) from \(name(gateway, connection)); expected 3")
            case .message(let message):
                let advertised = workerCount(gateway: gateway, connection: connection, sid: message.sid)
                dispatch(gateway: gateway, connection: connection, message, handler: handler)
                // After the dispatch: the message's bytes live in this dealer, which the change may close.
                if let advertised { applyWorkerCount(gateway: gateway, advertised, handler: handler) }
                guard isOpen(gateway, connection, dealer) else { return }
            }
        }
    }

    private static var noBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    private func dispatch(
        gateway: Int, connection: Int, _ message: ZMQDealer.Message, handler: some BackendHandler
    ) {
        guard let type = GatewayMessageType(message.type) else {
            droppedMessages += 1
            return
        }
        if case .ping = type {
            pingsAnswered += 1
            _ = try? gateways[gateway].connections[connection].dealer.send(
                sid: message.sid, type: "pong", body: Self.noBytes, wait: false)
            return
        }
        if case .credit = type, message.sid.isEmpty {
            if gateways[gateway].connections[connection].gate.mode == .sendingFreely {
                log("\(name(gateway, connection)) grants credit: per-session flow control on")
            }
            return gateways[gateway].connections[connection].gate.acknowledged()
        }
        guard let sid = SessionID(message.sid) else {
            droppedMessages += 1
            return
        }
        let key = sessionKey(gateway: gateway, arrivedOn: connection, sid: sid)
        let session = Session(core: self, key: key)
        switch type {
        case .credit:
            guard message.body.count == 4, gateways[gateway].connections[key.connection].gate.mode == .waitingForCredit
            else {
                droppedMessages += 1
                return
            }
            let bytes = message.body.reduce(0) { $0 << 8 | Int($1) }
            for released in gateways[gateway].connections[key.connection].gate.grant(sid, bytes) {
                // A failure here is the gateway gone or stuck: its session ends by `end` or the lost connection.
                released.body.withUnsafeBytes { raw in
                    do throws(BackendError) { try transmit(key, released.type, raw) } catch {
                        log("sending to \(name(gateway, key.connection)): \(error)")
                    }
                }
            }
            if sessions[key] != nil { call(session) { try handler.creditGranted(session: session) } }
        case .uwsgi:
            // A request made by another worker than the one this connection is for (its first sid byte names
            // the worker: README, "Worker processes") came through the worker mesh, while that worker had no
            // connection of ours yet. This connection's credit acknowledgement is not that worker's, which
            // may grant nothing for it: such a request is answered without credit, as one from before an
            // acknowledgement is (the gateway counts the bytes against its budget), rather than wait for a
            // grant that never comes and leave its client a 504.
            let connectionWorker = gateways[gateway].connections[key.connection].worker
            let forwarded = gateways[gateway].connections.count > 1 && Int(message.sid[0]) != connectionWorker
            gateways[gateway].connections[key.connection].gate.newRequest(sid, creditApplies: !forwarded)
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
            gateways[gateway].connections[key.connection].gate.ended(sid)
            // May arrive more than once, or after a `retry` moved the session away: harmless.
            guard sessions.removeValue(forKey: key) != nil else { return }
            handler.sessionEnded(session: session)
        case .ping:
            preconditionFailure("ping is answered above")
        }
    }

    /// The session a message names: the one that came in on the message's connection or, when there is none,
    /// one that came in on another connection to the same gateway. A gateway worker that adopts a connection
    /// of its own sends everything on it from then on, including the `credit`, `body` and `end` of sessions
    /// whose request it had sent through another worker's connection before; those stay where they began
    /// (their replies, pending credit included, are on that connection already). One lookup per message
    /// while the node has one connection to the gateway or the session is on this one.
    private func sessionKey(gateway: Int, arrivedOn connection: Int, sid: SessionID) -> SessionKey {
        let key = SessionKey(gateway: gateway, connection: connection, sid: sid)
        if sessions[key] != nil { return key }
        for other in gateways[gateway].connections.indices where other != connection {
            let elsewhere = SessionKey(gateway: gateway, connection: other, sid: sid)
            if sessions[elsewhere] != nil { return elsewhere }
        }
        return key
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
        hasConnection(key) ? gateways[key.gateway].connections[key.connection].gate.waitingBytes(key.sid) : 0
    }

    /// Whether the session's connection is open (not after `close`, nor after its worker went away).
    private func hasConnection(_ key: SessionKey) -> Bool {
        key.gateway < gateways.count && key.connection < gateways[key.gateway].connections.count
    }

    /// Sends one message on the session's connection, or keeps it (or its rest) until the gateway grants credit.
    func send(_ key: SessionKey, _ type: BackendMessageType, _ body: UnsafeRawBufferPointer) throws(BackendError) {
        guard hasConnection(key) else { throw BackendError.sessionEnded.with("the node has stopped") }
        switch gateways[key.gateway].connections[key.connection].gate.admit(key.sid, type, count: body.count) {
        case .send:
            try transmit(key, type, body)
        case .sendFirst(let count):
            try transmit(key, type, UnsafeRawBufferPointer(rebasing: body[..<count]))
            gateways[key.gateway].connections[key.connection].gate.hold(key.sid, type, Array(body[count...]))
        case .hold:
            gateways[key.gateway].connections[key.connection].gate.hold(key.sid, type, Array(body))
        }
    }

    /// Sends one message on the session's connection now: the one its request came in on, held by the
    /// gateway worker that made the sid.
    private func transmit(_ key: SessionKey, _ type: BackendMessageType, _ body: UnsafeRawBufferPointer) throws(BackendError) {
        guard hasConnection(key) else { throw BackendError.sessionEnded.with("the node has stopped") }
        let dealer = gateways[key.gateway].connections[key.connection].dealer
        let result: ZMQDealer.SendResult
        do {
            result = try key.sid.withBytes { sid throws(ZMQError) in
                try dealer.send(sid: sid, type: type.bytes, body: body)
            }
        } catch {
            throw BackendError.socket.with("\(error)")
        }
        if result == .full {
            throw BackendError.sendTimedOut.with(
                "\(name(key.gateway, key.connection)) did not take a \(type) message in time")
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
