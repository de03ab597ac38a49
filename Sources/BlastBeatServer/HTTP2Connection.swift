import BlastBeatCore
import BlastBeatSystem

/// The HTTP/2 side of a client connection (RFC 9113): set on a `Connection` once ALPN chose `h2` or the
/// client opened a plain connection with the HTTP/2 preface. The `Connection` keeps the socket, TLS, output
/// queue and its one timer; this object feeds nghttp2 (HTTP2ServerSession) the client's plaintext, turns
/// each request stream into an `HTTP2Stream` with a session of its own, and hands nghttp2's frames back
/// to the connection's output when it flushes.
///
/// Limits: `http2-max-streams` concurrent streams (nghttp2 refuses more), the head limits of HTTP/1.1
/// (`max-header-size` on the decoded header list, answered 431; four times that in one block, an HPACK
/// bomb or CONTINUATION flood, ends the connection), and HTTP2FloodGuard's budget of resets, PINGs,
/// SETTINGS and empty frames (GOAWAY ENHANCE_YOUR_CALM).
final class HTTP2Connection: HTTP2SessionDelegate {
    unowned(unsafe) let connection: Connection
    unowned(unsafe) let gateway: Gateway
    private(set) var framer: HTTP2ServerSession! = nil
    private(set) var streams: [Int32: HTTP2Stream] = [:]
    /// Response bytes all streams hold for the client's windows; at most `max-output-buffer` together.
    var bufferedResponseBytes = 0 {
        didSet { gateway.budget.clientBytesChanged(by: bufferedResponseBytes - oldValue) }
    }
    private var floodGuard = HTTP2FloodGuard()
    /// Reused for every stream's request: its HTTP/1.1 text and the parsed head.
    private var headText: [UInt8] = []
    private var parser: HTTPRequestHeadParser
    private var head = HTTPRequestHead()
    /// Streams whose request bytes wait for their node's queue before the client may send more.
    var waitingForNodeQueue: [HTTP2Stream] = []
    /// After a refusal by a per-vhost limit, nothing more is read from the client until then (`refusal-pause`,
    /// as for HTTP/1.1: Connection.answerKeepingAlive). Without it a client that ignores `Retry-After` opens
    /// stream after stream on one connection and costs a refusal per round trip; with it, one per pause. The
    /// connection's other streams wait too (their WINDOW_UPDATEs are not read): the client asked for it.
    var readsResumeAt: Double?
    /// How far the connection is on its way out; each step only moves forward (`advance`).
    enum Phase: Int, Comparable {
        case open
        /// GOAWAY went out or came in (shutdown, idle, the client's own): closes when the streams are done.
        case goingAway
        /// GOAWAY ENHANCE_YOUR_CALM went to a misbehaving client (logged once, on the way here).
        case calmedDown
        /// nghttp2 failed or was terminated, or the connection closed: nothing more is read or framed.
        case failed

        static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }
    private(set) var phase = Phase.open
    var idleSince: Double

    /// Most response bytes moved to the connection's output per flush; the rest waits in the streams'
    /// buffers (and the client's windows), so one connection cannot queue without bound.
    static let outputBudget = 256 * 1024

    init(connection: Connection) throws(HTTP2SessionError) {
        self.connection = connection
        self.gateway = connection.gateway
        self.parser = HTTPRequestHeadParser(limits: connection.gateway.requestLimits)
        self.idleSince = connection.gateway.loop.now
        let config = connection.gateway.config
        var settings = HTTP2Settings(
            maxConcurrentStreams: config.http2MaxStreams, initialWindowSize: 256 * 1024,
            connectionWindowSize: 16 << 20, maxHeaderListSize: config.limits.maxHeadBytes)
        settings.enableConnectProtocol = true  // WebSocket over HTTP/2 (HTTP2Stream+WebSocket.swift)
        self.framer = try HTTP2ServerSession(delegate: self, settings: settings)
    }

    /// The preface every HTTP/2 client sends first (RFC 9113 §3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    var hasStreams: Bool { !streams.isEmpty }
    /// All said and nothing left to wait for: the connection may close.
    var isDone: Bool {
        phase == .failed || (phase >= .goingAway && streams.isEmpty) || (!framer.wantsRead && !framer.wantsWrite)
    }
    var wantsWrite: Bool { phase != .failed && framer.wantsWrite }

    func advance(to next: Phase) { if phase < next { phase = next } }

    // MARK: bytes

    /// The client's plaintext; all of it is consumed.
    func process(_ bytes: RawSpan) -> Int {
        if phase == .failed { return bytes.byteCount }
        do { try framer.receive(bytes) } catch {
            gateway.counters.clientErrors += 1
            gateway.logger.info("HTTP/2 error from \(connection.peerDescription): \(error)")
            // nghttp2 has queued a GOAWAY for protocol errors; for the fatal ones (a flood) it has not.
            if phase < .goingAway { framer.terminate(error.isFlood ? .enhanceYourCalm : .protocolError) }
            advance(to: .goingAway)
            fillOutput()
            advance(to: .failed)
        }
        outputReady()
        if isDone { closeWhenFlushed() }
        return bytes.byteCount
    }

    /// Moves nghttp2's frames into the connection's output (called as the connection flushes).
    func fillOutput() {
        if phase == .failed { return }
        do {
            try framer.send { frame in
                connection.enqueue(frame)
                return connection.queuedOutputBytes < Self.outputBudget && !connection.closed
            }
        } catch {
            gateway.logger.info("HTTP/2 error sending to \(connection.peerDescription): \(error)")
            advance(to: .failed)
        }
    }

    /// The frames nghttp2 still holds (a GOAWAY, mostly) go out before the close.
    func closeWhenFlushed() {
        fillOutput()
        connection.closeAfterFlush()
    }

    func outputReady() {
        if !connection.closed { connection.scheduleFlush() }
    }

    // MARK: requests (HTTP2SessionDelegate)

    func http2StreamOpened(_ id: Int32) {
        let stream = HTTP2Stream(
            connection: self, id: id, sid: gateway.newSessionID(),
            limits: gateway.vhostLimits.first ?? VhostLimits())
        streams[id] = stream
        gateway.http2Streams[stream.sid] = stream
    }

    func http2Header(_ id: Int32, name: RawSpan, value: RawSpan) -> HTTP2HeaderVerdict {
        guard let stream = streams[id] else { return .resetStream }
        let limit = gateway.config.limits.maxHeadBytes
        stream.request.add(name: name, value: value, maxListSize: limit)
        if stream.request.listSize > 4 * limit || stream.request.fieldCount > 4 * gateway.config.limits.maxHeaderCount {
            // Far past what any request needs: an HPACK bomb or a CONTINUATION flood, not a big request.
            return misbehaving("a header block of over \(4 * limit) bytes or \(4 * gateway.config.limits.maxHeaderCount) fields")
        }
        return .accept
    }

    func http2RequestHead(_ id: Int32, endStream: Bool) {
        guard let stream = streams[id] else { return }
        if endStream { stream.requestEnded() }
        stream.lastClientData = gateway.loop.now
        start(stream, endStream: endStream)
    }

    /// A stream's header block is complete: written out as HTTP/1.1, parsed, routed and dispatched like
    /// an HTTP/1.1 request (Connection.startRequest), with the stream as the session's transport.
    private func start(_ stream: HTTP2Stream, endStream: Bool) {
        let session = stream.session!
        gateway.counters.requests += 1
        stream.requestStart = gateway.loop.now
        stream.lastBackendActivity = stream.requestStart
        // RFC 8441: a WebSocket, written out as the HTTP/1.1 upgrade backends know (with a key of ours).
        let webSocketKey = stream.request.isWebSocketConnect ? newWebSocketKey() : nil
        stream.request.build(into: &headText, hasBody: !endStream && webSocketKey == nil, webSocketKey: webSocketKey)
        let tooLarge = stream.request.listSize > gateway.config.limits.maxHeadBytes
        stream.request = HTTP2RequestHeadBuilder()  // its bytes are in headText now
        // A local reference: a span of the class's stored array would last one access only.
        let text = headText
        parseAndRoute(stream, session: session, bytes: text.span.bytes, tooLarge: tooLarge, endStream: endStream)
        outputReady()
        armTimer()
    }

    private func parseAndRoute(_ stream: HTTP2Stream, session: GatewaySession, bytes: RawSpan, tooLarge: Bool, endStream: Bool) {
        head.reset()
        parser.reset()
        var parseError: HTTPParseError? = nil
        if tooLarge {
            parseError = .headTooLarge(limit: gateway.config.limits.maxHeadBytes)
        } else {
            do throws(HTTPParseError) {
                if try !parser.parse(bytes, into: &head) { parseError = .headTooLarge(limit: gateway.config.limits.maxHeadBytes) }
            } catch {
                parseError = error
            }
        }
        head.version = .http2
        if gateway.logsRequests && parseError == nil { stream.log.capture(head: head, bytes: bytes) }
        session.begin(head)
        stream.requestHasBody = head.hasBody
        if let parseError {
            gateway.counters.clientErrors += 1
            gateway.logger.info("bad HTTP/2 request from \(connection.peerDescription): \(parseError)")
            return session.fail(.badRequest(parseError))
        }
        route(stream, session: session, bytes: bytes, endStream: endStream)
    }

    private func route(_ stream: HTTP2Stream, session: GatewaySession, bytes: RawSpan, endStream: Bool) {
        let head = self.head
        if head.methodKind == .connect {
            return session.fail(.refused(status: 405, message: "CONNECT is not supported"))
        }
        guard let vhost = connection.listener.router.route(host: head.host, in: bytes) else {
            return session.fail(.refused(status: 404, message: "no site is configured for this Host"))
        }
        if !gateway.config.vhosts[vhost].http2 {
            // The vhost is not served over HTTP/2 (`http2 = false`): the client should ask again over HTTP/1.1.
            return session.fail(.refused(status: 421, message: "this site is not served over HTTP/2; use HTTP/1.1"))
        }
        var upgrade: PendingUpgrade? = nil
        if head.isWebSocketUpgrade {
            switch PendingUpgrade.prepare(head: head, headBytes: bytes, compression: gateway.config.webSocket.compression) {
            case .success(let prepared): upgrade = prepared
            case .failure(let refusal): return session.fail(.refused(status: refusal.status, message: refusal.message))
            }
        }
        guard session.route(head: head, bytes: bytes, to: vhost, client: connection) else { return }
        stream.log.vhost = vhost
        stream.limits = gateway.vhostLimits[vhost]
        if let refusal = gateway.admitRequest(to: vhost, limits: stream.limits, hasBody: head.hasBody, from: connection) {
            pauseReadsAfterRefusal()
            return stream.refuse(refusal)
        }
        if let length = head.contentLength, length > stream.limits.maxBodySize {
            return session.fail(.badRequest(.bodyTooLarge(limit: stream.limits.maxBodySize)))
        }
        let backendHandshake = gateway.config.vhosts[vhost].webSocketHandshake == .backend
        if let upgrade {
            stream.pendingUpgrade = upgrade
            if backendHandshake { session.expectBackendHandshake() }
        }
        guard session.dispatch(preferring: nil, bodyComplete: endStream || upgrade != nil, mayWait: upgrade == nil) else { return }
        if var upgrade, !backendHandshake {
            let allowed = gateway.config.vhosts[vhost].webSocketProtocols
            upgrade.selectedProtocol = upgrade.offeredProtocols.first { offered in
                allowed.contains { Array($0.utf8) == offered }
            }
            session.upgradedByGateway()
            stream.completeUpgrade(upgrade)
        }
    }

    private func newWebSocketKey() -> [UInt8] {
        Base64.encode(gateway.random.bytes(16))
    }

    func http2Data(_ id: Int32, _ bytes: RawSpan) {
        guard let stream = streams[id], !stream.closed else {
            framer.consumeConnection(bytes.byteCount)
            return
        }
        stream.lastClientData = gateway.loop.now
        if stream.webSocket != nil || stream.pendingUpgrade != nil {
            // WebSocket frames, not a body (before the upgrade completes: nothing may come yet).
            if stream.webSocket == nil { return stream.abort("data before the WebSocket was accepted") }
            stream.receivedWebSocketData(bytes)
            return consumeRequestBody(stream, bytes.byteCount)
        }
        stream.requestBodyBytes += bytes.byteCount
        let session = stream.session!
        if stream.requestBodyBytes > stream.limits.maxBodySize {
            framer.consume(bytes.byteCount, stream: id)
            if stream.phase == .none {
                return session.fail(.badRequest(.bodyTooLarge(limit: stream.limits.maxBodySize)))
            }
            return stream.abort("request body over max-body-size")
        }
        guard session.nodeKnowsSession else {
            // Answered already (an error, or the node is gone): the bytes have nowhere to go.
            framer.consume(bytes.byteCount, stream: id)
            return
        }
        session.forwardBody(bytes)
        consumeRequestBody(stream, bytes.byteCount)
    }

    /// Gives request bytes back to the client's windows once the node's queue can take more: a slow node
    /// slows its own streams (their windows stay shut), not the connection's others.
    func consumeRequestBody(_ stream: HTTP2Stream, _ count: Int) {
        if stream.session.nodeQueueIsFull {
            stream.unconsumed += count
            if !waitingForNodeQueue.contains(where: { $0 === stream }) {
                waitingForNodeQueue.append(stream)
                gateway.counters.readPausesForNodeQueue += 1
            }
            armTimer()
        } else {
            framer.consume(count, stream: stream.id)
        }
    }

    func resumeDrainedStreams() {
        var still: [HTTP2Stream] = []
        for stream in waitingForNodeQueue where !stream.closed {
            if let node = stream.session.node, gateway.nodeQueueStillFull(node) {
                still.append(stream)
            } else {
                framer.consume(stream.unconsumed, stream: stream.id)
                stream.unconsumed = 0
            }
        }
        waitingForNodeQueue = still
        outputReady()
    }

    func http2RequestEnded(_ id: Int32) {
        guard let stream = streams[id], stream.requestBodyOpen else { return }
        stream.requestEnded()
        if stream.webSocket != nil { return stream.webSocketClientEnded() }
        if stream.requestHasBody && stream.session.nodeKnowsSession { stream.session.sendEndOfBody() }
    }

    func http2StreamClosed(_ id: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        gateway.http2Streams[stream.sid] = nil
        if stream.unconsumed > 0 { framer.consumeConnection(stream.unconsumed) }
        if let index = waitingForNodeQueue.firstIndex(where: { $0 === stream }) { waitingForNodeQueue.remove(at: index) }
        stream.streamClosed()
        if streams.isEmpty { idleSince = gateway.loop.now }
    }

    /// The response is complete while the request body is still coming: the client is asked to stop sending
    /// it (RST_STREAM NO_ERROR, RFC 9113 §8.1), as nginx does; the node, done with the request, is told `end`.
    /// A WebSocket stream waits for the client's close instead.
    func http2ResponseSent(_ id: Int32) {
        guard let stream = streams[id], stream.requestBodyOpen, stream.webSocket == nil, !stream.closed else { return }
        framer.reset(stream: id, .noError)
    }

    func http2Received(_ frame: HTTP2ControlFrame) {
        let event: HTTP2FloodGuard.Event
        switch frame {
        case .rstStream: event = .reset
        case .ping: event = .ping
        case .settings: event = .settings
        case .emptyData: event = .emptyFrame
        case .goaway:
            advance(to: .goingAway)
            return
        }
        if floodGuard.record(event, now: gateway.loop.now) {
            _ = misbehaving("more than \(floodGuard.count(event) - 1) \(event) frames in \(Int(floodGuard.budget.window)) s")
        }
    }

    func http2ResponseBody(_ id: Int32, into buffer: inout MutableRawSpan) -> HTTP2BodyRead {
        guard let stream = streams[id] else { return .bytes(0, end: true) }
        return stream.readBody(into: &buffer)
    }

    /// GOAWAY ENHANCE_YOUR_CALM: the client is cut off; its streams' nodes are told `end` as they close.
    private func misbehaving(_ what: String) -> HTTP2HeaderVerdict {
        if phase < .calmedDown {
            gateway.counters.clientErrors += 1
            gateway.logger.warning("HTTP/2 client \(connection.peerDescription) sent \(what); closing with ENHANCE_YOUR_CALM")
        }
        framer.terminate(.enhanceYourCalm)
        advance(to: .calmedDown)
        outputReady()
        return .failConnection
    }

    // MARK: for the streams

    func submitResponse(_ stream: HTTP2Stream, hasBody: Bool) -> Bool {
        framer.submitResponse(stream: stream.id, head: stream.response, hasBody: hasBody)
    }

    func resumeData(_ stream: HTTP2Stream) { framer.resumeData(stream: stream.id) }

    func reset(_ stream: HTTP2Stream, _ code: HTTP2ErrorCode) {
        framer.reset(stream: stream.id, code)
        outputReady()
    }

    /// The connection closed: every stream's session ends (nodes that know them are told `end`).
    func connectionClosed() {
        advance(to: .failed)
        for stream in streams.values {
            gateway.http2Streams[stream.sid] = nil
            stream.streamClosed()
        }
        streams.removeAll()
        waitingForNodeQueue.removeAll()
    }
}
