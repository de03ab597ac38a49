import BlastBeatCore
import BlastBeatSystem

/// How the end of the current response body is recognised.
enum ResponseFraming {
    /// `Content-Length`: this many body bytes remain.
    case length(Int)
    /// The backend sends chunked encoding itself in `body` messages; the decoder finds its end.
    /// `chunk` messages are framed by the gateway.
    case chunked(HTTPBodyDecoder)
    /// The response had no framing and the client speaks HTTP/1.1: the gateway chunks every
    /// `body`/`chunk` and writes the last chunk on an empty `chunk` or `end`.
    case gatewayChunked
    /// No framing and an HTTP/1.0 client: the body ends when the connection closes.
    case untilClose
}

/// The backend → client direction: validating and framing what the node sends for this session.
extension Connection {
    func backendMessage(_ type: BackendMessageType, _ body: UnsafeRawBufferPointer) {
        if closed || lingering { return }
        if let webSocket { return backendWebSocketMessage(type, body, session: webSocket) }
        if isExchangeActive { setDeadline(gateway.config.timeouts.backend, .backend) }
        switch type {
        case .headers: receivedHeaders(body)
        case .body: receivedBody(body, fromChunkMessage: false)
        case .chunk: receivedBody(body, fromChunkMessage: true)
        case .end: receivedEnd()
        case .retry: receivedRetry()
        case .websocket, .websocketBinary, .ping, .pong, .uwsgi:
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.debug("dropping \(type) for HTTP session \(sid.hex)")
        }
    }

    private func receivedHeaders(_ message: UnsafeRawBufferPointer) {
        guard case .awaitingHead = response else {
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.warning("node sent headers with no response pending on \(sid.hex); dropped")
            return
        }
        var rest = message
        while true {
            let parsed: HTTPResponseHead
            do {
                parsed = try HTTPResponseHeadParser.parse(rest)
            } catch {
                gateway.counters.backendErrors += 1
                gateway.logger.warning("invalid response head from node \(nodeName): \(error)")
                if let node { gateway.nodes.requestFinished(on: node) }
                return sendErrorAndClose(status: 502, message: "the backend sent an invalid response")
            }
            let headBytes = UnsafeRawBufferPointer(rebasing: rest[0..<parsed.length])
            rest = UnsafeRawBufferPointer(rebasing: rest[parsed.length...])
            if parsed.status < 200 {
                if parsed.status == 101, var upgrade = pendingUpgrade {
                    // Backend-mode handshake accepted; its subprotocol must be one the client offered.
                    let chosen = Self.headerValue(named: "sec-websocket-protocol", in: headBytes)
                    if let chosen, !upgrade.offeredProtocols.contains(chosen) {
                        gateway.counters.backendErrors += 1
                        if let node { gateway.nodes.requestFinished(on: node) }
                        return sendErrorAndClose(status: 502, message: "the backend chose a subprotocol the client did not offer")
                    }
                    upgrade.selectedProtocol = chosen
                    return completeUpgrade(upgrade)
                }
                if parsed.status == 101 {
                    // Upgrades are done by the gateway itself (WebSocket); a backend cannot switch protocols here.
                    gateway.counters.backendErrors += 1
                    if let node { gateway.nodes.requestFinished(on: node) }
                    return sendErrorAndClose(status: 502, message: "the backend tried to switch protocols")
                }
                // Interim response: the gateway already sent its own 100 Continue when needed.
                if !(parsed.status == 100 && continueSent) && requestVersion == .http11 { enqueue(headBytes) }
                if parsed.status == 100 { continueSent = true }
                if rest.isEmpty { return }
                continue
            }
            startResponse(parsed, head: headBytes)
            if !rest.isEmpty { receivedBody(rest, fromChunkMessage: false) }
            return
        }
    }

    private func startResponse(_ parsed: HTTPResponseHead, head: UnsafeRawBufferPointer) {
        log.status = parsed.status
        // Whether the connection can carry another request after this response.
        var persistent = requestKeepAlive && !parsed.connectionClose
        if parsed.version == .http10 && !parsed.connectionKeepAlive { persistent = false }
        if requestVersion == .http10 && !parsed.connectionKeepAlive { persistent = false }

        let bodyless = requestIsHead || parsed.status == 204 || parsed.status == 304
        let framing: ResponseFraming?
        if bodyless {
            framing = nil
        } else if let length = parsed.contentLength {
            framing = length == 0 ? nil : .length(length)
        } else if parsed.isChunked {
            framing = .chunked(.chunked(limits: gateway.responseChunkLimits))
        } else if parsed.hasTransferEncoding {
            // A coding other than chunked (e.g. gzip alone) can only be delimited by closing.
            framing = .untilClose
            persistent = false
        } else if requestVersion == .http11 {
            framing = .gatewayChunked
        } else {
            framing = .untilClose
            persistent = false
        }
        if !persistent { requestKeepAlive = false }
        discardBodyUntilHeaders = bodyless

        if case .gatewayChunked = framing {
            // Insert our framing header before the blank line; the rest goes out verbatim.
            enqueue(UnsafeRawBufferPointer(rebasing: head[0..<parsed.blankLineStart]))
            enqueue("Transfer-Encoding: chunked\r\n")
            enqueue(UnsafeRawBufferPointer(rebasing: head[parsed.blankLineStart...]))
        } else {
            enqueue(head)
        }
        log.bytesSent = 0
        if let framing {
            response = .body(framing)
        } else {
            responseFinished()
        }
    }

    private func receivedBody(_ bytes: UnsafeRawBufferPointer, fromChunkMessage: Bool) {
        guard case .body(let framing) = response else {
            if discardBodyUntilHeaders {
                gateway.counters.outOfOrderBackendMessages += 1
                return
            }
            if case .awaitingHead = response, !bytes.isEmpty {
                // Body before headers: the client would see body bytes as a status line (the original let it).
                gateway.counters.backendErrors += 1
                if let node { gateway.nodes.requestFinished(on: node) }
                return sendErrorAndClose(status: 502, message: "the backend sent a body before its headers")
            }
            if !bytes.isEmpty { gateway.counters.outOfOrderBackendMessages += 1 }
            return
        }
        switch framing {
        case .length(let remaining):
            let n = min(remaining, bytes.count)
            enqueue(UnsafeRawBufferPointer(rebasing: bytes[0..<n]))
            log.bytesSent += n
            if n < bytes.count {
                gateway.counters.outOfOrderBackendMessages += 1
                gateway.logger.warning("node \(nodeName) sent \(bytes.count - n) bytes past Content-Length; dropped")
            }
            if remaining - n == 0 { responseFinished() } else { response = .body(.length(remaining - n)) }
        case .chunked(var decoder):
            if fromChunkMessage {
                writeChunk(bytes)
                if bytes.isEmpty { responseFinished() }
                return
            }
            // Validate the backend's own chunked encoding to find where the response ends.
            var offset = 0
            while offset < bytes.count && !decoder.isFinished {
                do {
                    let (consumed, _) = try decoder.decode(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                    if consumed == 0 { break }
                    offset += consumed
                } catch {
                    gateway.counters.backendErrors += 1
                    gateway.logger.warning("invalid chunked body from node \(nodeName): \(error)")
                    return abort("invalid chunked response")
                }
            }
            enqueue(UnsafeRawBufferPointer(rebasing: bytes[0..<offset]))
            log.bytesSent += offset
            if decoder.isFinished { responseFinished() } else { response = .body(.chunked(decoder)) }
        case .gatewayChunked:
            // An empty `body` writes nothing (as in the original); only an empty `chunk` ends the body.
            if bytes.isEmpty && !fromChunkMessage { return }
            writeChunk(bytes)
            if bytes.isEmpty && fromChunkMessage { responseFinished() }
        case .untilClose:
            enqueue(bytes)
            log.bytesSent += bytes.count
            if bytes.isEmpty && fromChunkMessage { responseFinished() }
        }
    }

    /// Writes one chunk (`SIZE\r\nDATA\r\n`), or the last chunk for an empty payload.
    private func writeChunk(_ payload: UnsafeRawBufferPointer) {
        if payload.isEmpty {
            enqueue("0\r\n\r\n")
            return
        }
        var line: [UInt8] = []
        line.reserveCapacity(20)
        var size = payload.count
        var digits: [UInt8] = []
        repeat {
            let d = UInt8(size & 15)
            digits.append(d < 10 ? 0x30 + d : 0x41 + d - 10)
            size >>= 4
        } while size > 0
        line.append(contentsOf: digits.reversed())
        line.append(0x0D)
        line.append(0x0A)
        enqueue(line)
        enqueue(payload)
        enqueue("\r\n")
        log.bytesSent += payload.count
    }

    /// `end`: the backend is done with the session. Complete what can be completed, then close.
    private func receivedEnd() {
        switch response {
        case .awaitingHead:
            if let node { gateway.nodes.requestFinished(on: node) }
            nodeKnowsSession = false
            return sendErrorAndClose(status: 502, message: "the backend ended the session without a response")
        case .body(.gatewayChunked), .body(.chunked):
            if case .body(.gatewayChunked) = response { enqueue("0\r\n\r\n") }
            responseFinished()
        case .body(.untilClose):
            responseFinished()
        case .body(.length):
            // Truncated response: closing is the only honest signal to the client.
            gateway.counters.backendErrors += 1
            responseFinished()
        case .none, .complete:
            break
        }
        // The node asked for the end; it still gets `end` back as its "session gone" notice.
        requestKeepAlive = false
        closeAfterFlush()
    }

    /// `retry`: resend the request to another node of the vhost, if the response has not started.
    private func receivedRetry() {
        guard case .awaitingHead = response else {
            gateway.counters.outOfOrderBackendMessages += 1
            return
        }
        if let node { gateway.nodes.requestFinished(on: node) }
        hops += 1
        if hops > gateway.config.maxHops {
            gateway.logger.warning("request on \(sid.hex) retried \(hops - 1) times; giving up")
            return sendErrorAndClose(status: 502, message: "no backend could handle the request")
        }
        if replayBody == nil {
            return sendErrorAndClose(status: 502, message: "request body too large to retry")
        }
        // Another node: the one that asked is excluded along with every node tried before.
        let candidates = gateway.vhostNodes[vhost].filter { !triedNodes.contains($0) && gateway.nodes.isUsable($0) }
        if candidates.isEmpty {
            return sendErrorAndClose(status: 502, message: "no other backend node to retry on")
        }
        dispatchToNode(preferring: nil)
    }

    /// The response is complete: log it, and either start on the next request or close.
    func responseFinished() {
        if let node { gateway.nodes.requestFinished(on: node) }
        response = .complete
        gateway.writeAccessLog(self)
        if bodyComplete { exchangeFinished() } else { refreshDeadlineForState() }
    }

    /// Both directions of the exchange are done.
    func exchangeFinished() {
        if !requestKeepAlive || clientEOF || gateway.isShuttingDown {
            return closeAfterFlush()
        }
        request = .idle
        response = .none
        head.reset()
        setDeadline(gateway.config.timeouts.keepAlive, .idle)
        // A pipelined request may already be waiting.
        processPending()
        updateInterest()
    }

    func timedOut() {
        gateway.counters.timeouts += 1
        switch deadlineReason {
        case .backend:
            if case .awaitingHead = response {
                gateway.logger.warning("node \(nodeName) did not answer within \(gateway.config.timeouts.backend)s")
                if let node { gateway.nodes.requestFinished(on: node) }
                return sendErrorAndClose(status: 504, message: "the backend did not answer in time")
            }
            abort("backend stalled mid-response")
        case .head:
            sendErrorAndClose(status: 408, message: "request head not received in time")
        case .body:
            abort("request body stalled")
        case .webSocketIdle:
            if let webSocket { webSocketIdle(session: webSocket) } else { abort("idle timeout") }
        case .tlsHandshake:
            abort("TLS handshake not completed within \(gateway.config.timeouts.tlsHandshake)s")
        case .idle where tls != nil && !tlsClosing && !isExchangeActive:
            closeAfterFlush()  // with close_notify, so TLS clients see a clean end
        case .idle, .write, .linger:
            abort("\(deadlineReason) timeout")
        }
    }

    /// The value of the first header `name` (lowercase) in a response head, trimmed; nil when absent.
    static func headerValue(named name: StaticString, in head: UnsafeRawBufferPointer) -> [UInt8]? {
        let length = name.utf8CodeUnitCount
        var lineStart = 0
        while lineStart < head.count {
            var lineEnd = lineStart
            while lineEnd < head.count && head[lineEnd] != 0x0A { lineEnd += 1 }
            let line = UnsafeRawBufferPointer(rebasing: head[lineStart..<lineEnd])
            if line.count > length, line[length] == 0x3A,
                HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: line[..<length]), name)
            {
                var value = line[(length + 1)...].drop(while: { $0 == 0x20 || $0 == 0x09 })
                while let last = value.last, last == 0x20 || last == 0x09 || last == 0x0D { value = value.dropLast() }
                return Array(value)
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// GET, HEAD, OPTIONS and PUT may be sent twice with the same effect (RFC 9110 §9.2.2).
    var requestIsRepeatable: Bool {
        switch head.methodKind {
        case .get, .head, .options, .put: true
        case .post, .connect, .other: false
        }
    }

    var nodeName: String {
        guard let node else { return "-" }
        return gateway.nodeName(node)
    }

    /// The node vanished (unroutable, declared dead, or its connection closed or was replaced by a newer
    /// one): answer the client now instead of waiting. A request that is safe to repeat and whose body
    /// is still kept goes to another node of the vhost (after a replacement, possibly the same node's new
    /// connection), as a `retry` would; otherwise 502.
    func nodeLost(connectionReplaced: Bool = false) {
        if let webSocket {
            nodeKnowsSession = false
            return failWebSocket(.internalServerError, session: webSocket)
        }
        switch response {
        case .awaitingHead:
            nodeKnowsSession = false
            if let node { gateway.nodes.requestFinished(on: node) }
            if connectionReplaced, let node { triedNodes.removeAll { $0 == node } }
            let others = gateway.vhostNodes[vhost].contains { !triedNodes.contains($0) && gateway.nodes.isUsable($0) }
            if requestIsRepeatable && replayBody != nil && hops < gateway.config.maxHops && others {
                hops += 1
                gateway.logger.info("request on \(sid.hex) lost its backend connection (node \(nodeName)); sending it again")
                dispatchToNode(preferring: connectionReplaced ? node : nil)
                return
            }
            sendErrorAndClose(status: 502, message: "the backend node went away")
        case .body:
            nodeKnowsSession = false
            abort("backend node went away mid-response")
        case .none, .complete:
            nodeKnowsSession = false
        }
    }
}
