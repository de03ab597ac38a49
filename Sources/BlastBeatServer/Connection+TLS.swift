import BlastBeatCore
import BlastBeatSystem

/// TLS on a connection: OpenSSL is a byte transform between the socket and the HTTP machinery.
/// Ciphertext read from the socket is fed in; plaintext comes out and is parsed like plain TCP
/// input; queued plaintext output is encrypted once per flush.
extension Connection {
    /// The ciphertext just read is the gateway's input (empty at the end of the stream). It is handed to
    /// OpenSSL first, which copies it, so that the buffer is free again for the plaintext.
    func receivedCiphertext(tls: TLSConnection) {
        let fed = gateway.input.withBytes { feed($0, to: tls) }
        switch fed {
        case .endOfInput:
            // A client that vanished mid-handshake is simply closed.
            if !tls.isHandshakeComplete { return close() }
            return endOfInput()
        case .plainHTTP:
            gateway.counters.clientErrors += 1
            let (head, body) = gateway.errorResponse(
                status: 400, message: "this port speaks HTTPS; use https://", retryAfter: false)
            output.append(head)
            output.append(body)
            tlsPhase = .closing
            return closeAfterFlush()
        case .handshake:
            return continueHandshake(tls)
        case .plaintext:
            drainPlaintext(tls)
        case .ignored:
            return
        }
    }

    /// What a read of ciphertext leads to, once OpenSSL has it.
    private enum Fed {
        case endOfInput, plainHTTP, handshake, plaintext, ignored
    }

    private func feed(_ bytes: RawSpan, to tls: TLSConnection) -> Fed {
        if bytes.isEmpty { return .endOfInput }
        switch tlsPhase {
        case .awaitingFirstByte:
            // A TLS connection starts with a handshake record (0x16). Capital letters are a plain
            // HTTP request line: answer it in plain text, as nginx does, instead of a TLS alert.
            let first = bytes.unsafeLoad(as: UInt8.self)
            if first != 0x16 && first >= 0x41 && first <= 0x5A { return .plainHTTP }
            tlsPhase = .handshaking
            tls.feedCiphertext(bytes)
            return .handshake
        case .handshaking:
            tls.feedCiphertext(bytes)
            return .handshake
        case .established:
            tls.feedCiphertext(bytes)
            return .plaintext
        case .closing:
            // After our alert nothing is read; after our close_notify the client's answer is.
            guard tls.isHandshakeComplete else { return .ignored }
            tls.feedCiphertext(bytes)
            return .plaintext
        }
    }

    private func continueHandshake(_ tls: TLSConnection) {
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
            switch gateway.readPlaintext(tls) {
            case .data:
                gateway.input.withBytes { consumeInput($0) }
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
            switch plainOutput.withReadableSpan({ tls.writePlaintext($0) }) {
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
