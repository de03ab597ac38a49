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
    func prepareUpgrade(headBytes: UnsafeRawBufferPointer) -> PendingUpgrade? {
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
    func backendAcceptedUpgrade(head: UnsafeRawBufferPointer) {
        guard var upgrade = pendingUpgrade else { preconditionFailure("a backend handshake without a pending upgrade") }
        upgrade.selectedProtocol = Self.headerValue(named: "sec-websocket-protocol", in: head)
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

    /// Consumes client bytes as WebSocket frames; always uses everything it is given.
    func processWebSocket(_ bytes: UnsafeRawBufferPointer, session: WebSocketSession) -> Int {
        var offset = 0
        session.pingOutstanding = false
        setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle)
        while offset < bytes.count && teardown == .open {
            let event: WebSocketMessageEvent?
            do throws(WebSocketError) {
                let consumed: Int
                (consumed, event) = try session.assembler.feed(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                offset += consumed
            } catch {
                gateway.counters.clientErrors += 1
                gateway.logger.debug("WebSocket protocol error from \(peerDescription): \(error)")
                failWebSocket(error.closeCode, session: session)
                return bytes.count
            }
            guard let event else { break }
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
                if !session.closeSent { enqueue(session.frame) }
            case .pong:
                break
            case .close(let code):
                // Echo the close (RFC 6455 §5.5.1), tell the backend, and close once it is written.
                if !session.closeSent {
                    session.closeSent = true
                    session.frame.removeAll(keepingCapacity: true)
                    WebSocketFrameEncoder.writeClose(into: &session.frame, code: code ?? nil)
                    enqueue(session.frame)
                }
                closeAfterFlush()
                return bytes.count
            }
        }
        return bytes.count
    }

    private func deliverMessage(isText: Bool, compressed: Bool, session: WebSocketSession) {
        let limit = limits.webSocketMaxMessage
        let type: StaticString = isText ? "websocket" : "websocket-binary"
        if !compressed {
            return session.assembler.messagePayload.withUnsafeBytes { self.session.sendMessage(type, $0) }
        }
        session.inflated.removeAll(keepingCapacity: true)
        var failure: ZlibError? = nil
        do throws(ZlibError) {
            let inflater = try session.inflater()
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

    /// Closes with `code` after a protocol error (or a backend failure): close frame, `end`, TCP close.
    func failWebSocket(_ code: WebSocketCloseCode, session: WebSocketSession) {
        if code == .messageTooBig { gateway.countRejection(self, by: .webSocketMaxMessage) }
        if !session.closeSent {
            session.closeSent = true
            session.frame.removeAll(keepingCapacity: true)
            WebSocketFrameEncoder.writeClose(into: &session.frame, code: code)
            enqueue(session.frame)
        }
        closeAfterFlush()
    }

    // MARK: backend → client

    func backendWebSocketMessage(_ type: BackendMessageType, _ body: UnsafeRawBufferPointer, session: WebSocketSession) {
        switch type {
        case .websocket, .websocketBinary:
            if session.closeSent { return }
            let isText = type == .websocket
            if isText && !UTF8Validator.isValid(body) {
                // A client must fail the connection on invalid text, so it is not sent at all.
                gateway.counters.backendErrors += 1
                gateway.logger.warning("node \(nodeName) sent a WebSocket text message that is not UTF-8; dropped")
                return
            }
            sendFrame(isText ? .text : .binary, body, session: session)
        case .end:
            if !session.closeSent {
                session.closeSent = true
                session.frame.removeAll(keepingCapacity: true)
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
                WebSocketFrameEncoder.writeClose(into: &session.frame, code: code, reason: reason)
                enqueue(session.frame)
            }
            closeAfterFlush()
        case .headers, .body, .chunk, .retry, .ping, .pong, .uwsgi:
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.debug("dropping \(type) for WebSocket session \(sid.hex)")
        }
    }

    private func sendFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer, session: WebSocketSession) {
        session.frame.removeAll(keepingCapacity: true)
        // Tiny messages gain nothing from deflate; RFC 7692 lets each message choose.
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
            enqueue(session.frame)
            enqueue(session.inflated)
            if session.inflated.capacity > 1 << 20 { session.inflated = [] }
            return
        }
        WebSocketFrameEncoder.writeHeader(into: &session.frame, opcode: opcode, payloadLength: payload.count)
        enqueue(session.frame)
        enqueue(payload)
    }

    // MARK: idle

    /// Half the idle timeout without a frame: ping; the other half too: close with 1001.
    func webSocketIdle(session: WebSocketSession) {
        if session.closeSent {
            return abort("WebSocket close handshake timed out")
        }
        if session.pingOutstanding {
            failWebSocket(.goingAway, session: session)
            setDeadline(5, .linger)
            return
        }
        session.pingOutstanding = true
        session.frame.removeAll(keepingCapacity: true)
        WebSocketFrameEncoder.writePing(into: &session.frame, payload: UnsafeRawBufferPointer(start: nil, count: 0))
        enqueue(session.frame)
        setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle)
    }
}
