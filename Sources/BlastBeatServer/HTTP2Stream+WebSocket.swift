import BlastBeatCore
import BlastBeatSystem

/// WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket` is answered 200 and the
/// stream's DATA frames carry WebSocket frames both ways, with the same backend messages as an HTTP/1.1
/// WebSocket (Connection+WebSocket.swift): `websocket` / `websocket-binary` per message, `end` to close.
/// The stream's END_STREAM plays the part of the TCP close.
extension HTTP2Stream {
    // MARK: handshake

    func acceptsSubprotocol(of head: RawSpan) -> Bool {
        guard let upgrade = pendingUpgrade, let chosen = HTTPSyntax.headerValue(named: "sec-websocket-protocol", in: head)
        else { return true }
        return upgrade.offeredProtocols.contains(chosen)
    }

    /// Backend mode: the node's 101 accepts the WebSocket (its subprotocol checked by GatewaySession).
    func backendAcceptedUpgrade(head: RawSpan) {
        guard var upgrade = pendingUpgrade else { return abort("a backend switched protocols without an upgrade") }
        upgrade.selectedProtocol = HTTPSyntax.headerValue(named: "sec-websocket-protocol", in: head)
        completeUpgrade(upgrade)
    }

    /// 200 (RFC 8441 §5: no 101 over HTTP/2) with the chosen subprotocol and compression; then frames.
    func completeUpgrade(_ upgrade: PendingUpgrade) {
        var head: [UInt8] = []
        head.appendBytes("HTTP/1.1 200 OK\r\n")
        if let selected = upgrade.selectedProtocol {
            head.appendBytes("sec-websocket-protocol: ")
            head.append(contentsOf: selected)
            head.appendBytes("\r\n")
        }
        if let compression = upgrade.compression {
            head.appendBytes("sec-websocket-extensions: ")
            head.append(contentsOf: compression.responseHeaderValue)
            head.appendBytes("\r\n")
        }
        head.appendBytes("\r\n")
        writeResponseHead(head.span.bytes, status: 200, gatewayFramesBody: true, complete: false)
        pendingUpgrade = nil
        webSocket = WebSocketSession(maxMessageSize: limits.webSocketMaxMessage, compression: upgrade.compression)
        gateway.writeAccessLog(self)
    }

    // MARK: client → backend

    func receivedWebSocketData(_ bytes: RawSpan) {
        guard let session = webSocket, phase == .streaming else { return }
        let outcome = session.receiveClientBytes(
            bytes, limit: limits.webSocketMaxMessage,
            deliver: { isText, payload in self.session.sendMessage(isText ? "websocket" : "websocket-binary", payload) },
            reply: { append($0) })
        switch outcome {
        case .consumed:
            break
        case .closedByClient:
            // The close was echoed; the stream ends, and its close tells the node `end`.
            endWebSocketStream()
        case .failed(let code, let reason):
            gateway.counters.clientErrors += 1
            gateway.logger.debug("WebSocket protocol error on HTTP/2 stream \(id): \(reason)")
            failWebSocket(code, session: session)
        }
    }

    /// The client ended its side of the stream without a close frame (as a TCP FIN would): ours ends too.
    func webSocketClientEnded() {
        guard let session = webSocket else { return }
        session.liveness.closeStarted()
        if phase == .streaming { phase = .ended }
        wakeDataProvider()
    }

    // MARK: backend → client

    func backendWebSocketMessage(_ type: BackendMessageType, _ body: RawSpan, session: WebSocketSession) {
        switch type {
        case .websocket, .websocketBinary:
            if session.liveness.isClosing { return }
            let sent: Bool
            do { sent = try session.writeBackendMessage(isText: type == .websocket, body) { append($0) } } catch {
                gateway.logger.error("deflate failed: \(error)")
                return failWebSocket(.internalServerError, session: session)
            }
            if !sent { gateway.backendSentInvalidText(nodeName: self.session.nodeName) }
        case .end:
            if !session.liveness.isClosing {
                session.closeFrame(forEnd: body)
                session.passFrame(to: append)
            }
            endWebSocketStream()
        case .headers, .body, .chunk, .retry, .ping, .pong, .uwsgi:
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.debug("dropping \(type) for WebSocket stream \(sid.hex)")
        }
    }

    // MARK: closing

    /// After the close frame: END_STREAM once the queued bytes are out.
    private func endWebSocketStream() {
        if phase == .streaming { phase = .ended }
        wakeDataProvider()
    }

    /// A close frame with `code`, then END_STREAM.
    func failWebSocket(_ code: WebSocketCloseCode, session: WebSocketSession) {
        if code == .messageTooBig { gateway.countRejection(self, by: .webSocketMaxMessage) }
        if !session.liveness.isClosing {
            session.closeFrame(code: code)
            session.passFrame(to: append)
        }
        endWebSocketStream()
    }

    /// The node serving the WebSocket went away: 1011, then the stream ends.
    func webSocketNodeGone() {
        if let webSocket { failWebSocket(.internalServerError, session: webSocket) } else { abort("backend node went away") }
    }

    /// The connection's timer (every second while streams are open): when half the idle timeout passed
    /// without a frame since the client's last bytes and since the previous idle check, the check runs as
    /// over HTTP/1.1: ping; the other half too: close with 1001 (WebSocketLiveness.swift).
    func webSocketTick(now: Double) {
        guard let session = webSocket,
            now - max(lastClientData, webSocketIdleCheckedAt) >= gateway.config.webSocket.idleTimeout / 2
        else { return }
        webSocketIdleCheckedAt = now
        switch session.liveness.quietHalfPeriod() {
        case .ping:
            session.pingFrame()
            session.passFrame(to: append)
        case .closeGoingAway:
            failWebSocket(.goingAway, session: session)
        case .abandon:
            abort("WebSocket close handshake timed out")
        }
    }
}
