import BlastBeatCore
import BlastBeatSystem

/// The client → backend direction: parsing requests and forwarding heads and bodies.
extension Connection {
    /// Consumes as much of `bytes` as the current state allows; returns how many bytes were used.
    /// Bytes of a pipelined request stay unconsumed until the current response completes.
    func process(_ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        if let webSocket { return processWebSocket(bytes, session: webSocket) }
        while offset < bytes.count && teardown == .open {
            if let webSocket {
                return offset + processWebSocket(UnsafeRawBufferPointer(rebasing: bytes[offset...]), session: webSocket)
            }
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch request {
            case .idle, .readingHead:
                if isExchangeActive { return offset }  // pipelined: wait for the response
                if case .idle = request {
                    request = .readingHead
                    setDeadline(gateway.config.timeouts.header, .head)
                }
                let complete: Bool
                do throws(HTTPParseError) {
                    complete = try parser.parse(rest, into: &head)
                } catch {
                    rejectRequest(error)
                    return bytes.count
                }
                if !complete { return offset }
                let used = head.length
                parser.reset()
                startRequest(headBytes: rest, followingBytes: rest.count - used)
                offset += used
            case .body(var decoder):
                let (consumed, payload): (Int, Range<Int>?)
                do throws(HTTPParseError) {
                    (consumed, payload) = try decoder.decode(rest)
                } catch {
                    request = .body(decoder)
                    rejectRequest(error)
                    return bytes.count
                }
                if let payload, !payload.isEmpty {
                    forwardBody(UnsafeRawBufferPointer(rebasing: rest[payload]))
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
                    return bytes.count
                }
                return offset
            }
        }
        return offset
    }

    /// A request head is complete: route it, bind a node and send the uwsgi packet.
    private func startRequest(headBytes: UnsafeRawBufferPointer, followingBytes: Int) {
        // One copy for the whole function: each read of the stored property would copy (and
        // retain) the struct again, five times per request.
        let head = self.head
        gateway.counters.requests += 1
        requestStart = gateway.loop.now
        triedNodes.removeAll(keepingCapacity: true)
        replayBody = head.hasBody ? (replayBody.map { var b = $0; b.removeAll(keepingCapacity: true); return b } ?? []) : []
        if gateway.accessLog != nil { log.capture(head: head, bytes: headBytes) }
        session.start(
            HTTPSession.Request(
                version: head.version, isHead: head.methodKind == .head, keepAlive: head.keepAlive && !gateway.isShuttingDown,
                isRepeatable: head.methodKind.isRepeatable))

        if head.methodKind == .connect {
            sessionEvent { $0.fail(.refused(status: 405, message: "CONNECT is not supported")) }
            return
        }
        let host = head.host.map { UnsafeRawBufferPointer(rebasing: headBytes[$0]) }
        guard let vhost = listener.router.route(host: host) else {
            sessionEvent { $0.fail(.refused(status: 404, message: "no site is configured for this Host")) }
            return
        }
        self.vhost = vhost
        var upgrade: PendingUpgrade? = nil
        if head.isWebSocketUpgrade {
            guard let prepared = prepareUpgrade(headBytes: headBytes) else { return }
            upgrade = prepared
        }

        do {
            let context = gateway.uwsgiContext(for: self, vhost: vhost)
            let scratch = gateway.uwsgiScratch(atLeast: UwsgiEncoder.sizeBound(head: head, context: context))
            let length = try UwsgiEncoder.encode(head: head, request: headBytes, context: context, into: scratch)
            // Kept for `retry` in storage reused by the connection's next requests; an idle
            // connection holds one packet's bytes, not the encoder's worst-case bound.
            uwsgiPacket.removeAll(keepingCapacity: true)
            uwsgiPacket.appendBytes(UnsafeRawBufferPointer(rebasing: scratch[..<length]))
        } catch {
            sessionEvent { $0.fail(.refused(status: 431, message: "request headers too large to forward")) }
            return
        }

        if head.hasBody {
            request = .body(head.isChunked ? .chunked(limits: gateway.config.limits) : .contentLength(head.contentLength ?? 0))
        } else {
            request = .complete
        }
        if let upgrade, gateway.config.vhosts[vhost].webSocketHandshake == .backend {
            // The backend answers: 101 accepts (see receivedHeaders), anything else refuses.
            pendingUpgrade = upgrade
            session.expectBackendHandshake()
        }
        guard dispatchToNode(preferring: node) else { return }
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

    /// Sends the current request (uwsgi, buffered body, end marker) to a node of the vhost.
    /// Prefers the session's node when it serves the vhost (affinity); otherwise the usable node
    /// with the fewest requests in flight. Answers 503 itself when no node can take it.
    /// Returns false when the request was answered with an error.
    @discardableResult
    func dispatchToNode(preferring preferred: Int?) -> Bool {
        let candidates = gateway.vhostNodes[vhost]
        var choice: Int? = nil
        if let preferred, candidates.contains(preferred), gateway.nodes.isUsable(preferred),
            !triedNodes.contains(preferred)
        {
            choice = preferred
        }
        while true {
            if choice == nil { choice = gateway.nodes.choose(from: candidates, excluding: triedNodes) }
            guard let target = choice else {
                sessionEvent { $0.fail(.noNode) }
                return false
            }
            // The session moves to another node: the old one may forget it.
            if let forgotten = session.bind(to: target) { gateway.sendEnd(to: forgotten, sid: sid) }
            triedNodes.append(target)
            switch gateway.send(to: target, sid: sid, type: "uwsgi", body: uwsgiPacket) {
            case .sent:
                let before = session.slotNode
                session.dispatched()
                settleSlot(heldBefore: before)
                if let body = replayBody, !body.isEmpty {
                    gateway.send(to: target, sid: sid, type: "body", body: body)
                }
                if case .complete = request, head.hasBody { sendEndOfBody() }
                return true
            case .unreachable, .full:
                // send() already marked the node; try the next one.
                session.dispatchFailed()
                choice = nil
            }
        }
    }

    /// Sends request body bytes to the node. With `handingOver`, `bytes` lie in that
    /// `HandOverBuffer`, which goes to the router without a copy (and is released in every case).
    private func forwardBody(_ bytes: UnsafeRawBufferPointer, handingOver buffer: UnsafeMutableRawPointer? = nil) {
        if head.expectContinue { session.continueWasSent() }  // the client did not wait
        if var kept = replayBody {
            if kept.count + bytes.count <= gateway.config.maxRetryBuffer {
                replayBody = nil
                kept.append(contentsOf: bytes)
                replayBody = kept
            } else {
                replayBody = nil  // too big to replay: a later `retry` gets 502
            }
        }
        guard let node, nodeKnowsSession else {
            if let buffer { HandOverBuffer.release(buffer) }
            return
        }
        // Every body byte goes out in a counted buffer, so the node's queue meter sees all of them.
        if let buffer {
            precondition(bytes.baseAddress == UnsafeRawPointer(buffer), "handed-over body must start its buffer")
            gateway.send(to: node, sid: sid, type: "body", handingOver: buffer, count: bytes.count)
        } else {
            gateway.sendCounted(to: node, sid: sid, type: "body", copying: bytes)
        }
        if case .body = request { setDeadline(gateway.config.timeouts.body, .body) }
    }

    /// How much to read straight into a ZeroMQ message: set while a large Content-Length body is
    /// being forwarded to a node and no other input waits. Otherwise nil (reads go through the
    /// shared buffer and `process`).
    var directBodyReadSize: Int? {
        // The request state first: every read of a keep-alive GET asks, and fails here at once.
        guard case .body(let decoder) = request, let remaining = decoder.remainingLength,
            remaining >= Self.directBodyMinimum, tls == nil, pending.isEmpty, !processingInput,
            nodeKnowsSession, node != nil
        else { return nil }
        return min(remaining, gateway.readBuffer.count)
    }

    /// Smaller bodies (or their last bytes) take the ordinary path: the copy is cheap there.
    static var directBodyMinimum: Int { 16 * 1024 }

    /// Reads up to `size` body bytes into a fresh `HandOverBuffer` and forwards them without a
    /// copy: a 1 MiB upload does not pass through `memcpy` on its way to the backend. Returns
    /// whether the read filled the buffer (so more may be waiting).
    func readBodyDirectly(size: Int) -> Bool {
        guard let buffer = HandOverBuffer.allocate(size) else {
            abort("no memory for a request body buffer")
            return false
        }
        let result: IOResult
        do { result = try Posix.read(fd, into: UnsafeMutableRawBufferPointer(start: buffer, count: size)) } catch {
            HandOverBuffer.release(buffer)
            abort("read: \(error)")
            return false
        }
        guard case .processed(let n) = result, n > 0, case .body(var decoder) = request else {
            HandOverBuffer.release(buffer)
            if case .processed(0) = result { endOfInput() }
            return false
        }
        let bytes = UnsafeRawBufferPointer(start: buffer, count: n)
        do throws(HTTPParseError) {
            // A Content-Length decoder takes all `n` bytes: no more than `remaining` were read.
            let (consumed, payload) = try decoder.decode(bytes)
            precondition(consumed == n && payload == 0..<n, "direct body read past Content-Length")
        } catch {
            HandOverBuffer.release(buffer)
            request = .body(decoder)
            rejectRequest(error)
            return false
        }
        request = decoder.isFinished ? .complete : .body(decoder)
        forwardBody(bytes, handingOver: buffer)
        if decoder.isFinished { finishRequestBody() }
        updateInterest()
        return n == size
    }

    private func finishRequestBody() {
        sendEndOfBody()
        refreshDeadlineForState()
        if case .responded = session.state { exchangeFinished() }
    }

    /// The end-of-body marker: an empty `body` message. Backends that predate it append nothing.
    private func sendEndOfBody() {
        guard let node, nodeKnowsSession else { return }
        gateway.send(to: node, sid: sid, type: "body", body: [])
    }

    /// Answers a malformed request with its status code and closes.
    private func rejectRequest(_ error: HTTPParseError) {
        gateway.counters.clientErrors += 1
        gateway.logger.info("bad request from \(peerDescription): \(error)")
        // After the head went to a node (an error in the body), the node is told `end` on close; once
        // the response has started, only closing is left.
        sessionEvent { $0.fail(.badRequest(error)) }
    }

    /// Writes a complete error response of the gateway's own and closes after it.
    func sendErrorAndClose(status: Int, message: String, retryAfter: Bool = false, extraHeaders: String = "") {
        let reason = HTTPStatus.reasonPhrase(status)
        let body = "\(status) \(reason): \(message)\n"
        var text = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\n"
        text += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        if retryAfter { text += "Retry-After: \(gateway.retryAfterSeconds)\r\n" }
        text += extraHeaders
        text += "\r\n"
        enqueue(Array(text.utf8))
        if !session.request.isHead { enqueue(Array(body.utf8)) }
        log.status = status
        log.bytesSent += body.utf8.count
        gateway.writeAccessLog(self)
        request = .complete
        closeAfterFlush()
    }
}
