import BlastBeatCore
import BlastBeatSystem

/// One HTTP/2 stream: a request, its session (own sid, own node) and the response on its way back.
///
/// The stream is the session's transport (SessionTransport.http2): what the session's machine writes lands
/// in `body`, which nghttp2's data provider drains as the client's flow-control windows allow
/// (HTTP2Connection.http2ResponseBody). Request body bytes go to the node as they arrive; the stream's
/// window reopens only as the node's queue takes them (HTTP2Connection.consumeRequestBody).
final class HTTP2Stream {
    unowned(unsafe) let connection: HTTP2Connection
    let id: Int32
    let sid: SessionID
    private(set) var session: GatewaySession! = nil
    /// The request's fields as they arrive, until its header block is complete.
    var request = HTTP2RequestHeadBuilder()
    var limits: VhostLimits
    var log = AccessLogRecord()
    var requestStart: Double = 0

    // MARK: request body
    /// Where the stream is in its life: open, with its request body still arriving (no END_STREAM yet) or
    /// complete, then closed by nghttp2 (answered, or reset by either side), after which nothing happens to it.
    enum Lifecycle: Equatable {
        enum Request: Equatable { case receivingBody, complete }
        case open(Request)
        case closed
    }
    private(set) var lifecycle = Lifecycle.open(.receivingBody)
    /// END_STREAM has not come yet (and the stream is open).
    var requestBodyOpen: Bool { lifecycle == .open(.receivingBody) }
    var closed: Bool { lifecycle == .closed }
    /// END_STREAM came (with the head, or after the body): the request is complete.
    func requestEnded() {
        if lifecycle == .open(.receivingBody) { lifecycle = .open(.complete) }
    }
    /// The request announced a body (Content-Length > 0, or DATA without one): the node gets the end marker.
    var requestHasBody = false
    var requestBodyBytes = 0
    /// Body bytes received and forwarded, not yet given back to the client's window (the node's queue was full).
    var unconsumed = 0
    var lastClientData: Double = 0
    /// When the WebSocket idle check last ran (HTTP2Stream+WebSocket.swift, `webSocketTick`).
    var webSocketIdleCheckedAt: Double = 0

    // MARK: response
    enum ResponsePhase {
        case none
        /// HEADERS submitted; `body` is read by nghttp2 until `ended`.
        case streaming
        /// The last body byte is in `body` (or the response had none).
        case ended
        /// RST_STREAM submitted, or the stream is gone: nothing more is written.
        case reset
    }
    var phase = ResponsePhase.none
    var response = HTTP2ResponseHead()
    /// Response body bytes waiting for the client's window; at most `max-output-buffer`.
    var body = ByteBuffer()
    /// The backend's own chunked framing, removed here (HTTP/2 frames the body itself).
    var dechunker: HTTPBodyDecoder?
    /// nghttp2 was told "deferred" and waits for `resumeData`.
    var deferred = false
    /// When the client's window last took response bytes (a zero window held too long ends the stream).
    var lastDrained: Double = 0
    /// When the backend last spoke (or the request went out): the backend timeout runs from here.
    var lastBackendActivity: Double = 0

    // MARK: WebSocket over HTTP/2 (HTTP2Stream+WebSocket.swift)
    /// Set between an accepted extended CONNECT and its 200.
    var pendingUpgrade: PendingUpgrade?
    /// Set once the stream carries a WebSocket.
    var webSocket: WebSocketSession?

    init(connection: HTTP2Connection, id: Int32, sid: SessionID, limits: VhostLimits) {
        self.connection = connection
        self.id = id
        self.sid = sid
        self.limits = limits
        self.session = GatewaySession(gateway: connection.gateway, transport: .http2(Unmanaged.passUnretained(self)), sid: sid)
    }

    var gateway: Gateway { connection.gateway }
    var isReadingRequestBody: Bool { requestBodyOpen }

    // MARK: from the node (through GatewaySession's actions)

    func backendMessage(_ type: BackendMessageType, _ bytes: RawSpan) {
        if closed || phase == .reset { return }
        lastBackendActivity = gateway.loop.now
        if let webSocket { return backendWebSocketMessage(type, bytes, session: webSocket) }
        session.backendMessage(type, bytes)
    }

    func writeResponseHead(_ head: RawSpan, status: Int, gatewayFramesBody: Bool, complete: Bool) {
        guard phase == .none, !closed else { return }
        log.status = status
        log.bytesSent = 0
        response.convert(head, status: status)
        dechunker = response.isChunked && !gatewayFramesBody ? .chunked(limits: gateway.responseChunkLimits) : nil
        phase = complete ? .ended : .streaming
        lastDrained = gateway.loop.now
        if !connection.submitResponse(self, hasBody: !complete) { return abort("response head not accepted by nghttp2") }
        connection.outputReady()
    }

    func writeResponse(_ bytes: RawSpan) {
        guard phase == .streaming, !bytes.isEmpty else { return }
        guard var decoder = dechunker else { return append(bytes) }
        var offset = 0
        while offset < bytes.byteCount && !decoder.isFinished {
            // The session validated this framing already; here only the payloads are kept.
            guard let (consumed, payload) = try? decoder.decode(bytes.extracting(droppingFirst: offset)), consumed > 0
            else { break }
            if let payload, !payload.isEmpty {
                append(bytes.extracting((offset + payload.lowerBound)..<(offset + payload.upperBound)))
            }
            offset += consumed
        }
        dechunker = decoder
    }

    func writeChunk(_ payload: RawSpan) {
        if phase == .streaming && !payload.isEmpty { append(payload) }
    }

    func append(_ bytes: RawSpan) {
        // Bounded per stream and for the connection's streams together (the HTTP/1.1 connection's budget).
        if body.readableCount + bytes.byteCount > limits.maxOutputBuffer
            || connection.bufferedResponseBytes + bytes.byteCount > limits.maxOutputBuffer
        {
            // The client reads slower than the backend writes and zmq has no per-sid flow control: this
            // stream ends, the connection's others go on.
            gateway.logger.warning(
                "HTTP/2 client \(connection.connection.peerDescription) too slow on stream \(id): over \(limits.maxOutputBuffer) bytes queued, resetting it")
            gateway.countRejection(self, by: .maxOutputBuffer)
            return abort("output buffer limit")
        }
        body.append(bytes)
        connection.bufferedResponseBytes += bytes.byteCount
        log.bytesSent += bytes.byteCount
        wakeDataProvider()
    }

    func responseFinished() {
        if phase == .streaming, let declared = response.contentLength, log.bytesSent < declared,
            !session.machine.request.isHead, response.status != 204, response.status != 304
        {
            // The backend ended short of its Content-Length (`end` mid-body): over HTTP/1.1 the close says
            // so; here a reset does, instead of an END_STREAM that would pass the body off as complete.
            return abort("response shorter than its Content-Length")
        }
        if phase == .streaming { phase = .ended }
        wakeDataProvider()
        gateway.writeAccessLog(self)
        connection.outputReady()
    }

    /// After `end` or `close` from the machine: a stream whose response is complete simply ends; one
    /// cut short is reset.
    func closeAfterFlush() {
        if phase == .streaming || phase == .none { abort("response cut short") }
    }

    func wakeDataProvider() {
        if deferred {
            deferred = false
            connection.resumeData(self)
        }
        connection.outputReady()
    }

    /// Response body bytes waiting for the client's window.
    var queuedBodyBytes: Int { body.readableCount }

    /// Bytes for one DATA frame (nghttp2's data provider).
    func readBody(into buffer: inout MutableRawSpan) -> HTTP2BodyRead {
        let n = body.move(into: &buffer, keepingCapacity: 16 * 1024)
        if n > 0 {
            connection.bufferedResponseBytes -= n
            lastDrained = gateway.loop.now
            if session.credit.isCredited { session.grantCredit(afterMessage: false) }
        }
        let end = phase == .ended && body.isEmpty
        if n == 0 && !end {
            deferred = true
            return .deferred
        }
        return .bytes(n, end: end)
    }

    /// An error response of the gateway's own (the request is answered here, not by a node).
    /// The stream's answer to a refusal of the admission checks (Gateway.admitRequest), with its `Retry-After`.
    func refuse(_ refusal: VhostRefusal) {
        let wait: Int
        if case .clientRate(let retryAfter) = refusal { wait = retryAfter } else { wait = gateway.retryAfterSeconds }
        sendError(
            status: refusal.status, message: refusal.explanation.description, retryAfter: false,
            extraHeaders: "Retry-After: \(wait)\r\n")
    }

    func sendError(status: Int, message: String, retryAfter: Bool, extraHeaders: String = "") {
        guard phase == .none, !closed else { return abort(message) }
        let (head, text) = gateway.errorResponse(
            status: status, message: message, retryAfter: retryAfter, extraHeaders: extraHeaders)
        let isHead = session.machine.request.isHead
        writeResponseHead(head.span.bytes, status: status, gatewayFramesBody: false, complete: isHead)
        if !isHead {
            append(text.span.bytes)
            phase = .ended
        }
        gateway.writeAccessLog(self)
        connection.outputReady()
    }

    /// Ends the stream with RST_STREAM; the connection's other streams go on.
    func abort(_ reason: String) {
        if closed || phase == .reset { return }
        gateway.logger.debug("resetting stream \(id) of \(connection.connection.peerDescription): \(reason)")
        phase = .reset
        dropBody()
        connection.reset(self, .internalError)
    }

    // MARK: end

    private func dropBody() {
        connection.bufferedResponseBytes -= body.readableCount
        body.clear(keepingCapacity: 0)
    }

    /// nghttp2 closed the stream (answered, or reset by either side): the node that knows the sid is told `end`.
    func streamClosed() {
        if closed { return }
        lifecycle = .closed
        phase = .reset
        dropBody()
        session.clientGone()
    }
}
