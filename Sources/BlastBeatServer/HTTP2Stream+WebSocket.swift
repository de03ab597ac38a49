import BlastBeatCore
import BlastBeatSystem

/// WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket` is answered 200 and the
/// stream's DATA frames carry WebSocket frames both ways, with the same backend messages as an HTTP/1.1
/// WebSocket (Connection+WebSocket.swift): `websocket` / `websocket-binary` per message, `end` to close.
/// The stream's END_STREAM plays the part of the TCP close.
extension HTTP2Stream {
    // MARK: handshake

    func acceptsSubprotocol(of head: UnsafeRawBufferPointer) -> Bool {
        guard let upgrade = pendingUpgrade, let chosen = Connection.headerValue(named: "sec-websocket-protocol", in: head)
        else { return true }
        return upgrade.offeredProtocols.contains(chosen)
    }

    /// Backend mode: the node's 101 accepts the WebSocket (its subprotocol checked by GatewaySession).
    func backendAcceptedUpgrade(head: UnsafeRawBufferPointer) {
        guard var upgrade = pendingUpgrade else { return abort("a backend switched protocols without an upgrade") }
        upgrade.selectedProtocol = Connection.headerValue(named: "sec-websocket-protocol", in: head)
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
        head.withUnsafeBytes { writeResponseHead($0, status: 200, gatewayFramesBody: true, complete: false) }
        pendingUpgrade = nil
        webSocket = WebSocketSession(maxMessageSize: limits.webSocketMaxMessage, compression: upgrade.compression)
        gateway.writeAccessLog(self)
    }

    // MARK: client → backend

    func receivedWebSocketData(_ bytes: UnsafeRawBufferPointer) {
        guard let session = webSocket, phase == .streaming else { return }
        session.pingOutstanding = false
        var offset = 0
        while offset < bytes.count && !session.closeSent {
            let event: WebSocketMessageEvent?
            do throws(WebSocketError) {
                let consumed: Int
                (consumed, event) = try session.assembler.feed(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                offset += consumed
            } catch {
                gateway.counters.clientErrors += 1
                gateway.logger.debug("WebSocket protocol error on HTTP/2 stream \(id): \(error)")
                return failWebSocket(error.closeCode, session: session)
            }
            guard let event else { return }
            switch event {
            case .text(let compressed), .binary(let compressed):
                let isText: Bool
                if case .text = event { isText = true } else { isText = false }
                deliverMessage(isText: isText, compressed: compressed, session: session)
            case .ping:
                session.frame.removeAll(keepingCapacity: true)
                session.assembler.controlPayload.withUnsafeBytes {
                    WebSocketFrameEncoder.writePong(into: &session.frame, payload: $0)
                }
                session.frame.withUnsafeBytes { append($0) }
            case .pong:
                break
            case .close(let code):
                // Echo the close (RFC 6455 §5.5.1) and end the stream; its close tells the node `end`.
                closeWebSocket(code: code ?? nil, session: session)
                return
            }
        }
    }

    private func deliverMessage(isText: Bool, compressed: Bool, session: WebSocketSession) {
        let type: StaticString = isText ? "websocket" : "websocket-binary"
        if !compressed {
            return session.assembler.messagePayload.withUnsafeBytes { self.session.sendMessage(type, $0) }
        }
        session.inflated.removeAll(keepingCapacity: true)
        var failure: ZlibError? = nil
        do throws(ZlibError) {
            let inflater = try session.inflater()
            let limit = limits.webSocketMaxMessage
            session.assembler.messagePayload.withUnsafeBytes { payload in
                do throws(ZlibError) {
                    try inflater.decompressMessage(payload, into: &session.inflated, limit: limit)
                } catch {
                    failure = error
                }
            }
        } catch {
            failure = error
        }
        if let failure {
            gateway.counters.clientErrors += 1
            return failWebSocket(failure.closeCode, session: session)
        }
        if isText && !session.inflated.withUnsafeBytes({ UTF8Validator.isValid($0) }) {
            gateway.counters.clientErrors += 1
            return failWebSocket(.invalidFramePayloadData, session: session)
        }
        session.inflated.withUnsafeBytes { self.session.sendMessage(type, $0) }
        if session.inflated.capacity > 1 << 20 { session.inflated = [] }
    }

    /// The client ended its side of the stream without a close frame (as a TCP FIN would): ours ends too.
    func webSocketClientEnded() {
        guard let session = webSocket else { return }
        session.closeSent = true
        if phase == .streaming { phase = .ended }
        wakeDataProvider()
    }

    // MARK: backend → client

    func backendWebSocketMessage(_ type: BackendMessageType, _ body: UnsafeRawBufferPointer, session: WebSocketSession) {
        switch type {
        case .websocket, .websocketBinary:
            if session.closeSent { return }
            let isText = type == .websocket
            if isText && !UTF8Validator.isValid(body) {
                gateway.counters.backendErrors += 1
                gateway.logger.warning("node \(self.session.nodeName) sent a WebSocket text message that is not UTF-8; dropped")
                return
            }
            sendFrame(isText ? .text : .binary, body, session: session)
        case .end:
            var code: WebSocketCloseCode? = .normalClosure
            var reason = UnsafeRawBufferPointer(start: nil, count: 0)
            if body.count >= 2 {
                let requested = WebSocketCloseCode(UInt16(body[0]) << 8 | UInt16(body[1]))
                let text = UnsafeRawBufferPointer(rebasing: body[2...])
                if requested.isValidInCloseFrame && UTF8Validator.isValid(text) {
                    code = requested
                    reason = text
                }
            }
            closeWebSocket(code: code, reason: reason, session: session)
        case .headers, .body, .chunk, .retry, .ping, .pong, .uwsgi:
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.debug("dropping \(type) for WebSocket stream \(sid.hex)")
        }
    }

    private func sendFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer, session: WebSocketSession) {
        session.frame.removeAll(keepingCapacity: true)
        if session.compression != nil && payload.count >= 32 {
            session.inflated.removeAll(keepingCapacity: true)
            do throws(ZlibError) {
                try session.deflater().compressMessage(payload, into: &session.inflated)
            } catch {
                gateway.logger.error("deflate failed: \(error)")
                return failWebSocket(.internalServerError, session: session)
            }
            WebSocketFrameEncoder.writeHeader(
                into: &session.frame, opcode: opcode, rsv1: true, payloadLength: session.inflated.count)
            session.frame.withUnsafeBytes { append($0) }
            session.inflated.withUnsafeBytes { append($0) }
            if session.inflated.capacity > 1 << 20 { session.inflated = [] }
            return
        }
        WebSocketFrameEncoder.writeHeader(into: &session.frame, opcode: opcode, payloadLength: payload.count)
        session.frame.withUnsafeBytes { append($0) }
        append(payload)
    }

    // MARK: closing

    /// A close frame with `code`, then END_STREAM.
    private func closeWebSocket(
        code: WebSocketCloseCode?, reason: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        session: WebSocketSession
    ) {
        if !session.closeSent {
            session.closeSent = true
            session.frame.removeAll(keepingCapacity: true)
            WebSocketFrameEncoder.writeClose(into: &session.frame, code: code, reason: reason)
            session.frame.withUnsafeBytes { append($0) }
        }
        if phase == .streaming { phase = .ended }
        wakeDataProvider()
    }

    func failWebSocket(_ code: WebSocketCloseCode, session: WebSocketSession) {
        closeWebSocket(code: code, session: session)
    }

    /// The node serving the WebSocket went away: 1011, then the stream ends.
    func webSocketNodeGone() {
        if let webSocket { failWebSocket(.internalServerError, session: webSocket) } else { abort("backend node went away") }
    }

    /// Half the idle timeout without a frame: ping; the other half too: close with 1001.
    func webSocketTick(now: Double) {
        guard let session = webSocket else { return }
        let idle = gateway.config.webSocket.idleTimeout
        if session.closeSent {
            if now - lastClientData >= idle / 2 { abort("WebSocket close handshake timed out") }
            return
        }
        if now - lastClientData < idle / 2 { return }
        if session.pingOutstanding {
            if now - lastClientData >= idle { failWebSocket(.goingAway, session: session) }
            return
        }
        session.pingOutstanding = true
        session.frame.removeAll(keepingCapacity: true)
        WebSocketFrameEncoder.writePing(into: &session.frame, payload: UnsafeRawBufferPointer(start: nil, count: 0))
        session.frame.withUnsafeBytes { append($0) }
    }
}
