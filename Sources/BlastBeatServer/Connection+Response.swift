import BlastBeatCore
import BlastBeatSystem

/// The backend → client direction: validating and framing what the node sends for this session.
extension Connection {
    func backendMessage(_ type: BackendMessageType, _ body: UnsafeRawBufferPointer) {
        if teardown >= .lingering { return }
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

    /// A `headers` message: its heads one at a time (interim heads, then the final one), then any body
    /// bytes behind the final head.
    private func receivedHeaders(_ message: UnsafeRawBufferPointer) {
        var rest = message
        while true {
            var action = HTTPSessionAction.none
            sessionEvent { session in
                action = session.receivedHead(&rest)
                return .none  // carried out below, after the checks only the connection can make
            }
            if case .acceptUpgrade(let head) = action, let upgrade = pendingUpgrade,
                let chosen = Self.headerValue(named: "sec-websocket-protocol", in: head),
                !upgrade.offeredProtocols.contains(chosen)
            {
                // Backend-mode handshake accepted; its subprotocol must be one the client offered.
                return sessionEvent { $0.refuseUpgrade(.subprotocolNotOffered) }
            }
            let state = session.state
            perform(action)
            if rest.isEmpty || closed { return }
            switch state {
            case .awaitingHead:
                continue  // an interim head; another head follows
            case .responding:
                return receivedBody(rest, fromChunkMessage: false)
            case .responded:
                // Body bytes behind the head of a response without body (HEAD, 204, 304, Content-Length: 0).
                gateway.counters.outOfOrderBackendMessages += 1
                return
            case .idle, .webSocket, .closed:
                return
            }
        }
    }

    private func receivedBody(_ bytes: UnsafeRawBufferPointer, fromChunkMessage: Bool) {
        sessionEvent { $0.receivedBody(bytes, isChunkMessage: fromChunkMessage) }
    }

    /// Writes one chunk (`SIZE\r\nDATA\r\n`), or the last chunk for an empty payload.
    func writeChunk(_ payload: UnsafeRawBufferPointer) {
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

    private func receivedEnd() {
        sessionEvent { $0.receivedEnd() }
    }

    private func receivedRetry() {
        let canReplay = replayBody != nil
        let others = otherNodeAvailable(replaced: nil)
        let maxResends = gateway.config.maxHops
        sessionEvent { $0.receivedRetry(canReplay: canReplay, otherNodeAvailable: others, maxResends: maxResends) }
    }

    /// Whether a usable node of the vhost is left to try; `replaced` (a node whose connection was just
    /// replaced) counts again.
    private func otherNodeAvailable(replaced: Int?) -> Bool {
        gateway.vhostNodes[vhost].contains {
            ($0 == replaced || !triedNodes.contains($0)) && gateway.nodes.isUsable($0)
        }
    }

    /// The response is complete: log it, and either start on the next request or close.
    func responseFinished() {
        gateway.writeAccessLog(self)
        // A request body may still be arriving (the backend answered before reading all of it).
        if case .body = request { refreshDeadlineForState() } else { exchangeFinished() }
    }

    /// Both directions of the exchange are done.
    func exchangeFinished() {
        if !session.keepAlive || clientEOF || gateway.isShuttingDown {
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

    func timedOut() {
        gateway.counters.timeouts += 1
        switch deadlineReason {
        case .backend:
            if isExchangeActive { sessionEvent { $0.backendTimedOut() } } else { abort("backend timeout") }
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

    var nodeName: String {
        guard let node else { return "-" }
        return gateway.nodeName(node)
    }

    /// The node vanished (unroutable, declared dead, or its connection closed or was replaced by a newer
    /// one): the session answers now instead of waiting (see `HTTPSession.nodeLost`).
    func nodeLost(connectionReplaced: Bool = false) {
        let canReplay = replayBody != nil
        let others = otherNodeAvailable(replaced: connectionReplaced ? node : nil)
        let maxResends = gateway.config.maxHops
        let lost = nodeName
        let resends = session.resends
        sessionEvent {
            $0.nodeLost(
                connectionReplaced: connectionReplaced, canReplay: canReplay, otherNodeAvailable: others,
                maxResends: maxResends)
        }
        if session.resends > resends, isExchangeActive {
            gateway.logger.info("request on \(sid.hex) lost its backend connection (node \(lost)); sent it again")
        }
    }
}
