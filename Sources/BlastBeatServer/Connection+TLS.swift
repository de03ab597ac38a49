import BlastBeatCore
import BlastBeatSystem

/// TLS on a connection: OpenSSL is a byte transform between the socket and the HTTP machinery.
/// Ciphertext read from the socket is fed in; plaintext comes out and is parsed like plain TCP
/// input; queued plaintext output is encrypted once per flush.
extension Connection {
    func receivedCiphertext(_ bytes: UnsafeRawBufferPointer, tls: TLSConnection) {
        if bytes.isEmpty {
            // EOF. A client that vanished mid-handshake is simply closed.
            if !tls.isHandshakeComplete { return close() }
            return endOfInput()
        }
        switch tlsPhase {
        case .awaitingFirstByte:
            // A TLS connection starts with a handshake record (0x16). Capital letters are a plain
            // HTTP request line: answer it in plain text, as nginx does, instead of a TLS alert.
            if let first = bytes.first, first != 0x16 && first >= 0x41 && first <= 0x5A {
                gateway.counters.clientErrors += 1
                let (head, body) = gateway.errorResponse(
                    status: 400, message: "this port speaks HTTPS; use https://", retryAfter: false)
                output.append(head)
                output.append(body)
                tlsPhase = .closing
                return closeAfterFlush()
            }
            tlsPhase = .handshaking
            return continueHandshake(bytes, tls: tls)
        case .handshaking:
            return continueHandshake(bytes, tls: tls)
        case .established:
            tls.feedCiphertext(bytes)
        case .closing:
            // After our alert nothing is read; after our close_notify the client's answer is.
            guard tls.isHandshakeComplete else { return }
            tls.feedCiphertext(bytes)
        }
        drainPlaintext(tls)
    }

    private func continueHandshake(_ bytes: UnsafeRawBufferPointer, tls: TLSConnection) {
        tls.feedCiphertext(bytes)
        switch tls.handshake() {
        case .needMoreData:
            output.appending { tls.takeCiphertext(into: &$0) }
            scheduleFlush()
        case .failed(let error):
            gateway.logger.debug("TLS handshake with \(peerDescription) failed: \(error)")
            output.appending { tls.takeCiphertext(into: &$0) }  // the alert
            tlsPhase = .closing
            closeAfterFlush()
        case .complete:
            tlsPhase = .established
            output.appending { tls.takeCiphertext(into: &$0) }
            scheduleFlush()
            setDeadline(gateway.config.timeouts.keepAlive, .idle)
            tlsServerName = tls.serverName.map { Array($0.utf8) } ?? []
            tlsVersion = Array(tls.protocolVersion.utf8)
            if tls.negotiatedProtocol == "h2" && !startHTTP2() { return }
            drainPlaintext(tls)
        }
    }

    /// Reads every decrypted byte OpenSSL holds (a record can carry more than one read's worth).
    private func drainPlaintext(_ tls: TLSConnection) {
        while teardown < .lingering {
            switch tls.readPlaintext(into: gateway.readBuffer) {
            case .data(let n):
                consumeInput(UnsafeRawBufferPointer(rebasing: gateway.readBuffer[0..<n]))
            case .needMoreData:
                if tls.hasCiphertextToSend {
                    output.appending { tls.takeCiphertext(into: &$0) }
                    scheduleFlush()
                }
                return
            case .closed:
                return endOfInput()
            case .failed(let error):
                gateway.logger.debug("TLS error from \(peerDescription): \(error)")
                return abort("TLS error")
            }
        }
    }

    /// Encrypts the queued plaintext (once the handshake allows it) into the socket output.
    func encryptOutput(_ tls: TLSConnection) {
        if !plainOutput.isEmpty && tlsPhase == .established {
            switch plainOutput.withReadableBytes({ tls.writePlaintext($0) }) {
            case .success(let n):
                plainOutput.consume(n, keepingCapacity: 64 * 1024)
            case .failure(let error):
                gateway.logger.debug("TLS write to \(peerDescription) failed: \(error)")
                plainOutput.clear(keepingCapacity: 0)
            }
        }
        if tls.hasCiphertextToSend { output.appending { tls.takeCiphertext(into: &$0) } }
    }
}
