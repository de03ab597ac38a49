import BlastBeatCore
import BlastBeatSystem

/// WebSocket: the upgrade handshake, client frames to backend messages and back, and closing.
///
/// Wire protocol with the backend: the upgrade request arrives as a normal `uwsgi`; then each
/// complete client message is one `websocket` (text) or `websocket-binary` message; a backend
/// `websocket` is sent as a text frame (the original's only kind) and `websocket-binary` as a
/// binary frame; `end` closes with 1000 (or with the code in its body: 2 bytes big-endian plus an
/// optional UTF-8 reason). The client's close, or a failure, sends `end` to the backend.
extension Connection {
    // MARK: handshake

    /// Checks an upgrade request and prepares the handshake; answers 400/426 itself when it is bad.
    /// Returns nil after answering.
    func prepareUpgrade(headBytes: RawSpan) -> PendingUpgrade? {
        guard head.methodKind == .get, head.version == .http11 else {
            sendErrorAndClose(status: 400, message: "a WebSocket upgrade must be an HTTP/1.1 GET")
            return nil
        }
        switch PendingUpgrade.prepare(head: head, headBytes: headBytes, compression: gateway.config.webSocket.compression) {
        case .success(let upgrade):
            return upgrade
        case .failure(let refusal):
            sendErrorAndClose(status: refusal.status, message: refusal.message, extraHeaders: refusal.extraHeaders)
            return nil
        }
    }

    /// Gateway mode: pick the first subprotocol the client offered that the vhost allows.
    func selectProtocol(_ upgrade: inout PendingUpgrade) {
        let allowed = gateway.config.vhosts[session.vhost].webSocketProtocols
        upgrade.selectedProtocol = upgrade.offeredProtocols.first { offered in
            allowed.contains { Array($0.utf8) == offered }
        }
    }

    /// The node serving the WebSocket went away: 1011 to the client, then close.
    func webSocketNodeGone() {
        if let webSocket { failWebSocket(.internalServerError, session: webSocket) }
    }

    /// Backend mode: the node answered the upgrade with 101 (its subprotocol checked by receivedHeaders).
    func backendAcceptedUpgrade(head: RawSpan) {
        guard var upgrade = pendingUpgrade else { preconditionFailure("a backend handshake without a pending upgrade") }
        upgrade.selectedProtocol = HTTPSyntax.headerValue(named: "sec-websocket-protocol", in: head)
        completeUpgrade(upgrade)
    }

    /// Writes the 101 and switches the connection to WebSocket frames.
    func completeUpgrade(_ upgrade: PendingUpgrade) {
        var handshake: [UInt8] = []
        handshake.appendBytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
        handshake.appendBytes("Sec-WebSocket-Accept: ")
        handshake.append(contentsOf: upgrade.accept)
        handshake.appendBytes("\r\n")
        if let selected = upgrade.selectedProtocol {
            handshake.appendBytes("Sec-WebSocket-Protocol: ")
            handshake.append(contentsOf: selected)
            handshake.appendBytes("\r\n")
        }
        if let compression = upgrade.compression {
            handshake.appendBytes("Sec-WebSocket-Extensions: ")
            handshake.append(contentsOf: compression.responseHeaderValue)
            handshake.appendBytes("\r\n")
        }
        handshake.appendBytes("\r\n")
        enqueue(handshake)
        log.status = 101
        gateway.writeAccessLog(self)
        pendingUpgrade = nil
        webSocket = WebSocketSession(
            maxMessageSize: limits.webSocketMaxMessage, compression: upgrade.compression)
        // The session stays "in flight" on its node until it closes, so balancing counts open sockets.
        request = .complete
        setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle)
        // Frames the client sent right behind its handshake may already be waiting in `pending`.
        processPending()
        updateInterest()
    }

    // MARK: client → backend

    /// Consumes client bytes as WebSocket frames (WebSocketSession.receiveClientBytes); always uses everything
    /// it is given.
    func processWebSocket(_ bytes: RawSpan, session: WebSocketSession) -> Int {
        setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle)
        let outcome = session.receiveClientBytes(
            bytes, limit: limits.webSocketMaxMessage,
            deliver: { isText, payload in self.session.sendMessage(isText ? "websocket" : "websocket-binary", payload) },
            reply: { enqueue($0) })
        switch outcome {
        case .consumed:
            break
        case .closedByClient:
            // The close was echoed; the backend is told when the connection closes.
            closeAfterFlush()
        case .failed(let code, let reason):
            gateway.counters.clientErrors += 1
            gateway.logger.debug("WebSocket protocol error from \(peerDescription): \(reason)")
            failWebSocket(code, session: session)
        }
        return bytes.byteCount
    }

    /// Closes with `code` after a protocol error (or a backend failure): close frame, `end`, TCP close.
    func failWebSocket(_ code: WebSocketCloseCode, session: WebSocketSession) {
        if code == .messageTooBig { gateway.countRejection(self, by: .webSocketMaxMessage) }
        if !session.liveness.isClosing {
            session.closeFrame(code: code)
            enqueue(session.frame)
        }
        closeAfterFlush()
    }

    // MARK: backend → client

    func backendWebSocketMessage(_ type: BackendMessageType, _ body: RawSpan, session: WebSocketSession) {
        switch type {
        case .websocket, .websocketBinary:
            if session.liveness.isClosing { return }
            let sent: Bool
            do { sent = try session.writeBackendMessage(isText: type == .websocket, body) { enqueue($0) } } catch {
                gateway.logger.error("deflate failed: \(error)")
                return failWebSocket(.internalServerError, session: session)
            }
            if !sent { gateway.backendSentInvalidText(nodeName: nodeName) }
        case .end:
            if !session.liveness.isClosing {
                session.closeFrame(forEnd: body)
                enqueue(session.frame)
            }
            closeAfterFlush()
        case .headers, .body, .chunk, .retry, .ping, .pong, .uwsgi:
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.debug("dropping \(type) for WebSocket session \(sid.hex)")
        }
    }

    // MARK: idle

    /// Half the idle timeout without a frame (the deadline is set anew by every client frame): ping; the
    /// other half too: close with 1001 (WebSocketLiveness.swift).
    func webSocketIdle(session: WebSocketSession) {
        switch session.liveness.quietHalfPeriod() {
        case .ping:
            session.pingFrame()
            enqueue(session.frame)
            setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle)
        case .closeGoingAway:
            failWebSocket(.goingAway, session: session)
            setDeadline(5, .linger)
        case .abandon:
            abort("WebSocket close handshake timed out")
        }
    }
}

extension Gateway {
    /// A node's `websocket` text that is not UTF-8 is dropped (a client must fail the connection on it).
    func backendSentInvalidText(nodeName: String) {
        counters.backendErrors += 1
        logger.warning("node \(nodeName) sent a WebSocket text message that is not UTF-8; dropped")
    }
}
