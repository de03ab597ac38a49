import BlastBeatCore
import BlastBeatSystem

/// The backend → client direction: validating and framing what the node sends for this session.
extension Connection {
    func backendMessage(_ type: BackendMessageType, _ body: RawSpan) {
        if teardown >= .lingering { return }
        if let webSocket { return backendWebSocketMessage(type, body, session: webSocket) }
        if isExchangeActive { setDeadline(limits.backendTimeout, .backend) }
        session.backendMessage(type, body)
    }

    /// Response bytes (an interim head, or body bytes) as they are.
    func writeResponse(_ bytes: RawSpan) {
        enqueue(bytes)
        log.bytesSent += bytes.byteCount
    }

    /// The final response head, with the header lines the gateway adds (its own framing, its close).
    func writeResponseHead(_ head: RawSpan, status: Int, adding: AddedHeaders?) {
        log.status = status
        log.bytesSent = 0
        if let adding {
            // Our lines go before the blank line; the rest goes out verbatim.
            enqueue(head.extracting(0..<adding.blankLine))
            if adding.chunked { enqueue("Transfer-Encoding: chunked\r\n") }
            if adding.close { enqueue("Connection: close\r\n") }
            enqueue(head.extracting(droppingFirst: adding.blankLine))
        } else {
            enqueue(head)
        }
    }

    /// Backend-mode WebSocket handshake: the subprotocol the backend's 101 chose (if any) must be one the
    /// client offered.
    func acceptsSubprotocol(of head: RawSpan) -> Bool {
        guard let upgrade = pendingUpgrade, let chosen = HTTPSyntax.headerValue(named: "sec-websocket-protocol", in: head)
        else { return true }
        return upgrade.offeredProtocols.contains(chosen)
    }

    /// Writes one chunk (`SIZE\r\nDATA\r\n`), or the last chunk for an empty payload.
    func writeChunk(_ payload: RawSpan) {
        if payload.isEmpty {
            enqueue("0\r\n\r\n")
            return
        }
        if tls != nil { plainOutput.appendChunkSize(payload.byteCount) } else { output.appendChunkSize(payload.byteCount) }
        enqueue(payload)
        enqueue("\r\n")
        log.bytesSent += payload.byteCount
    }

    /// The response is complete: log it, and either start on the next request or close.
    func responseFinished() {
        gateway.writeAccessLog(self)
        // A request body may still be arriving (the backend answered before reading all of it).
        if case .body = request { refreshDeadlineForState() } else { exchangeFinished() }
    }

    /// Both directions of the exchange are done.
    func exchangeFinished() {
        if !session.keepAlive || input == .ended || gateway.isShuttingDown {
            return closeAfterFlush()
        }
        request = .idle
        session.exchangeFinished()
        head.reset()
        setDeadline(gateway.config.timeouts.keepAlive, .idle)
        // A pipelined request may already be waiting.
        processPending()
        updateInterest()
    }

    var nodeName: String { session.nodeName }
}
