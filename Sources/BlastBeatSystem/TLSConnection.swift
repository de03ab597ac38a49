package import BlastBeatCore
internal import COpenSSL

/// One server-side TLS connection as a byte transform over memory BIOs: OpenSSL never sees the socket.
///
/// The event loop reads ciphertext from the socket and hands it to `feedCiphertext`, then calls
/// `handshake()` (until `.complete`) or `readPlaintext` (until `.needMoreData`). Any of these calls,
/// and `writePlaintext`/`shutdown`, may queue ciphertext for the peer: after each round the loop
/// checks `hasCiphertextToSend`, moves it out with `takeCiphertext` and writes it to the socket.
/// In particular a failed handshake queues an alert worth sending before closing.
///
/// Both BIOs are OpenSSL memory BIOs owned by the `SSL` (`SSL_set_bio` hands them over), so
/// `SSL_free` in deinit releases everything. Nothing needs closing on purpose: there is no fd here,
/// and dropping a connection mid-stream is how an aborted connection ends (call `shutdown()` and
/// send the close_notify first for an orderly close).
package final class TLSConnection {
    /// Strong: the `SSL_CTX` callbacks find the context through an unretained pointer (see
    /// TLSServerContext.configure), so it must outlive every `SSL` made from it.
    private let context: TLSServerContext
    /// SSL*. Owned: freed in deinit, with both BIOs.
    private let ssl: OpaquePointer
    /// BIO* the socket's ciphertext is written into. Owned by `ssl`.
    private let incoming: OpaquePointer
    /// BIO* OpenSSL writes ciphertext for the socket into. Owned by `ssl`.
    private let outgoing: OpaquePointer

    private enum State {
        case handshaking
        case established
        /// close_notify queued by `shutdown()`.
        case shutDown
        /// A fatal error; OpenSSL forbids further use of the `SSL`, so calls return this error.
        case failed(TLSError)
    }
    private var state = State.handshaking
    /// A read outcome found after some plaintext was already returned; reported by the next read.
    private var deferredRead: ReadResult?
    /// The certificate SNI selected for this connection (nil before the ClientHello, or if refused).
    package private(set) var certificate: TLSCertificate?
    /// What a ClientHello callback refused, for a handshake error an operator can act on.
    private enum Refusal {
        /// No certificate for this name (nil: the client sent none) and no default.
        case serverName(String?)
        /// No ALPN protocol in common; what the client offered.
        case protocols([String])
    }
    private var refusal: Refusal?

    package init(context: TLSServerContext) throws(TLSError) {
        TLSError.clearQueue()
        guard let ssl = SSL_new(context.raw) else { throw TLSError("cannot create a TLS connection") }
        guard let incoming = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError("cannot create a TLS connection")
        }
        guard let outgoing = BIO_new(BIO_s_mem()) else {
            BIO_free(incoming)
            SSL_free(ssl)
            throw TLSError("cannot create a TLS connection")
        }
        // An empty incoming BIO means "retry later" (WANT_READ), never end of file: the event loop,
        // not OpenSSL, decides what a closed socket means.
        _ = COpenSSL_BIO_set_mem_eof_return(incoming, -1)
        SSL_set_bio(ssl, incoming, outgoing)
        SSL_set_accept_state(ssl)
        self.context = context
        self.ssl = ssl
        self.incoming = incoming
        self.outgoing = outgoing
        // The ClientHello callbacks find this object through the SSL. Unretained: we own the SSL
        // and free it in deinit, so the pointer cannot outlive us.
        SSL_set_ex_data(ssl, Self.exDataIndex, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Our slot in every SSL's ex_data, allocated once per process.
    private static let exDataIndex: Int32 = {
        let index = COpenSSL_SSL_get_ex_new_index(0, nil)
        precondition(index >= 0, "OpenSSL: cannot allocate an SSL ex_data index")
        return index
    }()

    /// The connection an `SSL` belongs to, from inside an OpenSSL callback.
    static func owner(of ssl: OpaquePointer) -> TLSConnection? {
        guard let pointer = SSL_get_ex_data(ssl, exDataIndex) else { return nil }
        return Unmanaged<TLSConnection>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Called by the SNI callback; nil certificate: the name was refused.
    func certificateSelected(_ certificate: TLSCertificate?, forServerName name: String?) {
        self.certificate = certificate
        if certificate == nil { refusal = .serverName(name) }
    }

    /// Called by the ALPN callback when no protocol is common.
    func protocolsRejected(_ offered: [String]) {
        refusal = .protocols(offered)
    }

    deinit {
        SSL_free(ssl)
    }

    // MARK: Ciphertext in and out

    /// Hands over bytes read from the socket. They are buffered until a handshake or read consumes them.
    package func feedCiphertext(_ bytes: RawSpan) {
        bytes.withUnsafeBytes { bytes in
            guard var base = bytes.baseAddress else { return }
            var remaining = bytes.count
            while remaining > 0 {
                let chunk = Int32(clamping: remaining)
                let written = BIO_write(incoming, base, chunk)
                // A memory BIO only fails when malloc does.
                precondition(written == chunk, "TLS: out of memory buffering \(chunk) bytes of ciphertext")
                base += Int(chunk)
                remaining -= Int(chunk)
            }
        }
    }

    /// Ciphertext fed but not consumed yet (to bound buffering).
    package var bufferedCiphertextCount: Int { Int(BIO_ctrl_pending(incoming)) }

    package var hasCiphertextToSend: Bool { BIO_ctrl_pending(outgoing) > 0 }

    /// Appends all pending outgoing ciphertext to `out`; the caller writes it to the socket.
    package func takeCiphertext(into out: inout [UInt8]) {
        let pending = Int(BIO_ctrl_pending(outgoing))
        if pending == 0 { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: pending))
        let read = out.withUnsafeMutableBytes { raw in
            BIO_read(outgoing, raw.baseAddress! + start, Int32(clamping: pending))
        }
        assert(Int(read) == pending, "TLS: memory BIO returned \(read) of \(pending) pending bytes")
        if Int(read) < pending { out.removeLast(pending - max(Int(read), 0)) }
    }

    // MARK: Handshake

    package enum HandshakeResult {
        /// Send any pending ciphertext (TLS 1.3 session tickets), then call `readPlaintext`: the
        /// client's first request may have arrived together with its Finished message.
        case complete
        /// Send any pending ciphertext, then wait for the socket to be readable.
        case needMoreData
        /// Fatal: send any pending ciphertext (the alert), then close.
        case failed(TLSError)
    }

    package func handshake() -> HandshakeResult {
        switch state {
        case .established, .shutDown: return .complete
        case .failed(let error): return .failed(error)
        case .handshaking: break
        }
        TLSError.clearQueue()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            state = .established
            return .complete
        }
        switch classify(rc, during: "TLS handshake") {
        case .retry: return .needMoreData
        case .peerClosed: return fail(TLSError("TLS handshake failed: the client closed the connection"))
        case .failed(let error): return fail(error)
        }
    }

    /// SSL_read completes a pending handshake by itself; keep `state` in step.
    private func noteImplicitHandshake() {
        if case .handshaking = state, isHandshakeComplete { state = .established }
    }

    private func fail(_ error: TLSError) -> HandshakeResult {
        state = .failed(error)
        return .failed(error)
    }

    package var isHandshakeComplete: Bool { SSL_is_init_finished(ssl) == 1 }

    // MARK: Application data

    package enum ReadResult {
        /// This many bytes of plaintext were added to the buffer.
        case data(Int)
        /// Everything fed so far is consumed; wait for the socket.
        case needMoreData
        /// The client sent close_notify.
        case closed
        case failed(TLSError)
    }

    /// Decrypts into `buffer` as much as it holds. Call it until `.needMoreData` (or `.closed`,
    /// `.failed`): OpenSSL can hold decrypted bytes of a record larger than the buffer, and a loop
    /// that stops at the first short read would leave them stuck (the original's did). Before the handshake
    /// completes this continues it, as `handshake()` would.
    package func readPlaintext(into buffer: inout ReadBuffer) -> ReadResult {
        var result = ReadResult.data(0)
        buffer.fill { bytes in
            bytes.withUnsafeMutableBufferPointer { room in
                result = readPlaintext(into: UnsafeMutableRawBufferPointer(room))
                if case .data(let n) = result { return n }
                return 0
            }
        }
        return result
    }

    private func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        if let deferred = deferredRead {
            deferredRead = nil
            return deferred
        }
        if case .failed(let error) = state { return .failed(error) }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .data(0) }
        var total = 0
        while total < buffer.count {
            TLSError.clearQueue()
            var count = 0
            let rc = SSL_read_ex(ssl, base + total, buffer.count - total, &count)
            if rc == 1 {
                total += count
                continue
            }
            let outcome: ReadResult
            switch classify(rc, during: "TLS read") {
            case .retry: outcome = .needMoreData
            case .peerClosed: outcome = .closed
            case .failed(let error):
                state = .failed(error)
                outcome = .failed(error)
            }
            noteImplicitHandshake()
            if total == 0 { return outcome }
            if case .needMoreData = outcome {} else { deferredRead = outcome }
            break
        }
        noteImplicitHandshake()
        return .data(total)
    }

    /// Encrypts all of `bytes` into the outgoing ciphertext. Returns 0 (nothing taken) while the
    /// handshake is incomplete; a memory BIO never pushes back, so otherwise everything is taken.
    package func writePlaintext(_ bytes: RawSpan) -> Result<Int, TLSError> {
        bytes.withUnsafeBytes { writePlaintext($0) }
    }

    private func writePlaintext(_ bytes: UnsafeRawBufferPointer) -> Result<Int, TLSError> {
        switch state {
        case .failed(let error): return .failure(error)
        case .shutDown: return .failure(TLSError("TLS write after close_notify was sent"))
        case .handshaking, .established: break
        }
        guard let base = bytes.baseAddress, bytes.count > 0, isHandshakeComplete else { return .success(0) }
        TLSError.clearQueue()
        var written = 0
        let rc = SSL_write_ex(ssl, base, bytes.count, &written)
        if rc == 1 { return .success(written) }
        switch classify(rc, during: "TLS write") {
        case .retry: return .success(0)
        case .peerClosed: return .failure(TLSError("TLS write failed: the connection is closed"))
        case .failed(let error):
            state = .failed(error)
            return .failure(error)
        }
    }

    /// Queues a close_notify alert (send it with `takeCiphertext`). No effect before the handshake
    /// has completed or after a failure, where OpenSSL forbids it; the caller just closes then.
    package func shutdown() {
        noteImplicitHandshake()
        guard case .established = state else { return }
        state = .shutDown
        TLSError.clearQueue()
        // 0 means "sent, the peer's close_notify not seen yet": we do not wait for it.
        _ = SSL_shutdown(ssl)
        TLSError.clearQueue()
    }

    // MARK: Negotiated parameters

    /// The server_name the client sent (SNI), lowercased; nil when it sent none.
    package var serverName: String? {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0).lowercased() }
    }

    /// The ALPN protocol selected, e.g. "http/1.1"; nil when the client offered none.
    package var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// "TLSv1.3", "TLSv1.2" (before the handshake: the highest version enabled).
    package var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    /// The cipher suite, e.g. "TLS_AES_128_GCM_SHA256"; nil before the handshake.
    package var cipherName: String? {
        guard let cipher = SSL_get_current_cipher(ssl) else { return nil }
        return String(cString: SSL_CIPHER_get_name(cipher))
    }

    /// Whether the handshake resumed an earlier session (session ticket) instead of a full one.
    package var sessionReused: Bool { SSL_session_reused(ssl) == 1 }

    // MARK: Errors

    private enum Outcome {
        case retry
        case peerClosed
        case failed(TLSError)
    }

    /// Maps a failed SSL_* return code through SSL_get_error (the queue was cleared before the call).
    private func classify(_ rc: Int32, during operation: String) -> Outcome {
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ:
            return .retry
        case SSL_ERROR_WANT_WRITE:
            // The outgoing memory BIO grows without limit, so this means a bug, not back-pressure.
            assertionFailure("TLS: WANT_WRITE from a memory BIO")
            return .retry
        case SSL_ERROR_ZERO_RETURN:
            return .peerClosed
        case SSL_ERROR_SYSCALL:
            return .failed(TLSError("\(operation) failed: unexpected end of data"))
        case SSL_ERROR_SSL:
            var error = TLSError("\(operation) failed")
            // The ClientHello callbacks know better than "callback failed".
            switch refusal {
            case .serverName(let name?):
                error.message = "\(operation) failed: no certificate for server name \"\(name)\""
                    + " and no default certificate"
            case .serverName(nil):
                error.message = "\(operation) failed: the client sent no server name (SNI)"
                    + " and there is no default certificate"
            case .protocols(let offered):
                error.message = "\(operation) failed: the client offers ALPN protocols \(offered),"
                    + " we support \(context.alpn)"
            case nil:
                break
            }
            return .failed(error)
        case let code:
            return .failed(TLSError("\(operation) failed: SSL_get_error \(code)"))
        }
    }
}
