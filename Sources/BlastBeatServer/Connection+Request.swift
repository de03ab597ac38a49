import BlastBeatCore
import BlastBeatSystem

/// The client → backend direction: parsing requests and forwarding heads and bodies.
extension Connection {
    /// Consumes as much of `bytes` as the current state allows; returns how many bytes were used.
    /// Bytes of a pipelined request stay unconsumed until the current response completes.
    func process(_ bytes: RawSpan) -> Int {
        var offset = 0
        if let webSocket { return processWebSocket(bytes, session: webSocket) }
        if let http2 { return http2.process(bytes) }
        if requestStart == 0, tls == nil, case .idle = request, !bytes.isEmpty, bytes.unsafeLoad(as: UInt8.self) == 0x50 {  // 'P'
            // Maybe the HTTP/2 preface (prior-knowledge h2c): nothing else starts with "PRI * HTTP/2.0".
            switch startHTTP2IfPreface(bytes) {
            case .started: return http2!.process(bytes)
            case .needMore:
                // The header timeout bounds a client that sends the preface byte by byte.
                if deadlineReason != .head { setDeadline(gateway.config.timeouts.header, .head) }
                return 0
            case .notHTTP2: break
            }
        }
        while offset < bytes.byteCount && teardown == .open {
            let rest = bytes.extracting(droppingFirst: offset)
            if let webSocket {
                return offset + processWebSocket(rest, session: webSocket)
            }
            switch request {
            case .idle, .readingHead:
                if isExchangeActive { return offset }  // pipelined: wait for the response
                if deadlineReason == .refusalPause { return offset }  // read when the pause ends
                if case .idle = request {
                    request = .readingHead
                    setDeadline(gateway.config.timeouts.header, .head)
                }
                let complete: Bool
                do throws(HTTPParseError) {
                    complete = try parser.parse(rest, into: &head)
                } catch {
                    rejectRequest(error)
                    return bytes.byteCount
                }
                if !complete { return offset }
                let used = head.length
                parser.reset()
                startRequest(headBytes: rest, followingBytes: rest.byteCount - used)
                offset += used
            case .body(var decoder):
                let (consumed, payload): (Int, Range<Int>?)
                do throws(HTTPParseError) {
                    (consumed, payload) = try decoder.decode(rest)
                } catch {
                    request = .body(decoder)
                    rejectRequest(error)
                    return bytes.byteCount
                }
                if let payload, !payload.isEmpty {
                    forwardBody(rest.extracting(payload))
                }
                offset += consumed
                if decoder.isFinished {
                    request = .complete
                    finishRequestBody()
                } else {
                    request = .body(decoder)
                    if consumed == 0 { return offset }
                }
            case .complete:
                if !session.keepAlive {
                    // Nothing may follow a non-persistent request (RFC 9112 §9.6); discard it.
                    return bytes.byteCount
                }
                return offset
            }
        }
        return offset
    }

    /// A request head is complete: route it, bind a node and send the uwsgi packet.
    private func startRequest(headBytes: RawSpan, followingBytes: Int) {
        // One copy for the whole function: each read of the stored property would copy (and
        // retain) the struct again, five times per request.
        let head = self.head
        let session = self.session!  // one reference for the function, not a retain per use
        gateway.counters.requests += 1
        requestStart = gateway.loop.now
        meterRequestStarted()
        if gateway.logsRequests { log.capture(head: head, bytes: headBytes) }
        session.begin(head)

        if head.methodKind == .connect {
            return session.fail(.refused(status: 405, message: "CONNECT is not supported"))
        }
        guard let vhost = listener.router.route(host: head.host, in: headBytes) else {
            return session.fail(.refused(status: 404, message: "no site is configured for this Host"))
        }
        meterRouted(to: vhost)
        guard admit(head, to: vhost) else { return }
        var upgrade: PendingUpgrade? = nil
        if head.isWebSocketUpgrade {
            guard let prepared = prepareUpgrade(headBytes: headBytes) else { return }
            upgrade = prepared
        }

        guard session.route(head: head, bytes: headBytes, to: vhost, client: self) else { return }

        limits = gateway.vhostLimits[vhost]
        if let length = head.contentLength, length > limits.maxBodySize {
            // The head parser admitted it for the largest limit of any vhost; this vhost's is lower.
            return rejectRequest(.bodyTooLarge(limit: limits.maxBodySize))
        }
        if head.hasBody {
            var bodyLimits = gateway.config.limits
            bodyLimits.maxBodySize = limits.maxBodySize
            request = .body(head.isChunked ? .chunked(limits: bodyLimits) : .contentLength(head.contentLength ?? 0))
        } else {
            request = .complete
        }
        if let upgrade, gateway.config.vhosts[vhost].webSocketHandshake == .backend {
            // The backend answers: 101 accepts (see receivedHeaders), anything else refuses.
            pendingUpgrade = upgrade
            session.expectBackendHandshake()
        }
        guard session.dispatch(preferring: session.node, bodyComplete: !head.hasBody, mayWait: upgrade == nil) else { return }
        if var upgrade, gateway.config.vhosts[vhost].webSocketHandshake == .gateway {
            selectProtocol(&upgrade)
            session.upgradedByGateway()
            return completeUpgrade(upgrade)
        }
        if head.expectContinue && head.hasBody && followingBytes == 0 && head.version == .http11 {
            enqueue("HTTP/1.1 100 Continue\r\n\r\n")
            session.continueWasSent()
        }
        refreshDeadlineForState()
    }

    /// Sends request body bytes on to the node (see GatewaySession.forwardBody).
    private func forwardBody(_ bytes: RawSpan) {
        clientSentBody()
        session.forwardBody(bytes)
    }

    /// Body bytes came: a client that sent them without waiting needs no `100 Continue` any more, and
    /// the body timeout starts again.
    private func clientSentBody() {
        if head.expectContinue { session.continueWasSent() }
        if case .body = request { setDeadline(limits.bodyTimeout, .body) }
    }

    /// The request body is still being read from the client.
    var isReadingRequestBody: Bool {
        if case .body = request { return true }
        return false
    }

    /// How much to read straight into a ZeroMQ message: set while a large Content-Length body is
    /// being forwarded to a node and no other input waits. Otherwise nil (reads go through the
    /// shared buffer and `process`).
    var directBodyReadSize: Int? {
        // The request state first: every read of a keep-alive GET asks, and fails here at once.
        guard case .body(let decoder) = request, let remaining = decoder.remainingLength,
            remaining >= Self.directBodyMinimum, tls == nil, pending.isEmpty, !processingInput,
            session.nodeKnowsSession
        else { return nil }
        return min(remaining, Gateway.inputCapacity)
    }

    /// Smaller bodies (or their last bytes) take the ordinary path: the copy is cheap there.
    static var directBodyMinimum: Int { 16 * 1024 }

    /// Reads up to `size` body bytes into a fresh `BodyBuffer` and forwards them without a copy: a
    /// 1 MiB upload does not pass through `memcpy` on its way to the backend. Returns whether the read
    /// filled the buffer (so more may be waiting).
    func readBodyDirectly(size: Int) -> Bool {
        guard var body = BodyBuffer(capacity: size) else {
            abort("no memory for a request body buffer")
            return false
        }
        let result: IOResult
        do { result = try body.read(from: fd) } catch {
            abort("read: \(error)")
            return false
        }
        if case .processed(let n) = result { meter.bytesIn &+= n }
        guard case .processed(let n) = result, n > 0, case .body(var decoder) = request else {
            if case .processed(0) = result { endOfInput() }
            return false
        }
        do throws(HTTPParseError) {
            // A Content-Length decoder takes all `n` bytes: no more than `remaining` were read.
            let (consumed, payload) = try body.withBytes { (bytes) throws(HTTPParseError) in try decoder.decode(bytes) }
            precondition(consumed == n && payload == 0..<n, "direct body read past Content-Length")
        } catch {
            request = .body(decoder)
            rejectRequest(error)
            return false
        }
        request = decoder.isFinished ? .complete : .body(decoder)
        clientSentBody()
        session.forwardBody(body)
        if decoder.isFinished { finishRequestBody() }
        updateInterest()
        return n == size
    }

    private func finishRequestBody() {
        session.sendEndOfBody()
        refreshDeadlineForState()
        if case .responded = session.machine.state { exchangeFinished() }
    }

    /// Answers a malformed request with its status code and closes.
    private func rejectRequest(_ error: HTTPParseError) {
        gateway.counters.clientErrors += 1
        gateway.logger.info("bad request from \(peerDescription): \(error)")
        // After the head went to a node (an error in the body), the node is told `end` on close; once
        // the response has started, only closing is left.
        session.fail(.badRequest(error))
    }

    /// Writes a complete error response of the gateway's own and closes after it.
    func sendErrorAndClose(status: Int, message: String, retryAfter: Bool = false, extraHeaders: String = "") {
        let (head, body) = gateway.errorResponse(status: status, message: message, retryAfter: retryAfter, extraHeaders: extraHeaders)
        enqueue(head)
        if !session.machine.request.isHead { enqueue(body) }
        log.status = status
        log.bytesSent += body.count
        gateway.writeAccessLog(self)
        request = .complete
        closeAfterFlush()
    }
}
