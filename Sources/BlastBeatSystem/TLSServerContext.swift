internal import COpenSSL

/// The server side of TLS for one listener: one `SSL_CTX` plus the certificates it can serve.
///
/// Policy (the original served one certificate per listener without SNI, enabled SSLv3 and offered NPN only):
/// - TLS 1.2 and 1.3 only; TLS 1.2 limited to ECDHE key exchange with AEAD ciphers; the server's
///   cipher order wins; no compression; no renegotiation of any kind.
/// - Stateless session tickets (TLS 1.2 tickets and TLS 1.3 PSK tickets), no server-side session
///   cache: resumption costs no memory per client. The ticket keys belong to the `SSL_CTX`, which
///   lives as long as this object, so tickets stay valid across `reload`.
/// - ALPN: the first protocol of `alpn` (server preference order) that the client also offers; a
///   client that offers ALPN but none of ours gets a no_application_protocol alert (RFC 7301).
///   Clients that send no ALPN are served without it.
/// - SNI: an exact name match among all certificates, then a one-label wildcard match, then the
///   default certificate; with no default the handshake fails with an unrecognized_name alert.
///   The chosen certificate, key and chain are attached to that one `SSL` during the ClientHello.
///
/// One thread only, like everything driven by the event loop.
package final class TLSServerContext {
    /// SSL_CTX*. Owned: freed in deinit. Each `SSL` made from it holds its own reference to it.
    let raw: OpaquePointer
    /// Offered by ALPN in this order; a reload may change it (`http2`).
    package var alpn: [String]
    /// Server names (SNI, lowercase) not offered `h2` even when `alpn` lists it: their vhosts set
    /// `http2 = false`, so those clients speak HTTP/1.1.
    package var http2RefusedServerNames: Set<String> = []
    private var table: CertificateTable

    package init(defaultCertificate: TLSCertificate?, certificates: [TLSCertificate], alpn: [String]) throws(TLSError) {
        TLSError.clearQueue()
        for name in alpn where name.utf8.isEmpty || name.utf8.count > 255 {
            throw TLSError("invalid ALPN protocol name \"\(name)\" (1 to 255 bytes)")
        }
        let table = try CertificateTable(defaultCertificate: defaultCertificate, certificates: certificates)
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("cannot create a TLS context") }
        self.raw = ctx
        self.alpn = alpn
        self.table = table
        // Fully initialised: deinit frees the context if configuration fails below.
        try configure()
    }

    deinit {
        SSL_CTX_free(raw)
    }

    private func configure() throws(TLSError) {
        if COpenSSL_SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION) != 1 {
            throw TLSError("cannot restrict TLS to version 1.2 and later")
        }
        _ = SSL_CTX_set_options(
            raw,
            COpenSSL_SSL_OP_NO_COMPRESSION | COpenSSL_SSL_OP_CIPHER_SERVER_PREFERENCE
                | COpenSSL_SSL_OP_NO_RENEGOTIATION)
        _ = SSL_CTX_clear_options(raw, COpenSSL_SSL_OP_NO_TICKET | COpenSSL_SSL_OP_ALLOW_CLIENT_RENEGOTIATION)
        // TLS 1.2: forward secrecy (ECDHE) and AEAD only; AES-128 first (as fast, and enough).
        let tls12Ciphers = [
            "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        ].joined(separator: ":")
        if SSL_CTX_set_cipher_list(raw, tls12Ciphers) != 1 { throw TLSError("cannot set the TLS 1.2 cipher list") }
        let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
        if SSL_CTX_set_ciphersuites(raw, tls13Suites) != 1 { throw TLSError("cannot set the TLS 1.3 cipher suites") }
        // Idle keep-alive connections give their 34 KiB of record buffers back; writes may be
        // retried from a moved buffer (the caller's array can reallocate between calls).
        _ = COpenSSL_SSL_CTX_set_mode(raw, Int(SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        // Tickets only: no per-session memory on the server.
        _ = COpenSSL_SSL_CTX_set_session_cache_mode(raw, Int(SSL_SESS_CACHE_OFF))
        let sessionContext: [UInt8] = Array("BlastBeat".utf8)
        if SSL_CTX_set_session_id_context(raw, sessionContext, UInt32(sessionContext.count)) != 1 {
            throw TLSError("cannot set the session id context")
        }

        // Callbacks get this object back through their arg pointer. Unretained: the SSL_CTX is
        // freed in our deinit, and every TLSConnection (whose SSL holds a reference to the
        // SSL_CTX) keeps a strong reference to us, so no callback can run after we are gone.
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = COpenSSL_SSL_CTX_set_tlsext_servername_callback(raw, serverNameCallback)
        _ = COpenSSL_SSL_CTX_set_tlsext_servername_arg(raw, me)
        if !alpn.isEmpty {
            SSL_CTX_set_alpn_select_cb(raw, alpnSelectCallback, me)
        }
        TLSError.clearQueue()
    }

    /// Bytes of session ticket keys (`setTicketKeys`).
    package static let ticketKeysSize = 80

    /// Uses `keys` (`ticketKeysSize` bytes) for session tickets instead of the keys OpenSSL made for this
    /// context: worker processes given the same keys (by their parent) resume each other's sessions.
    package func setTicketKeys(_ keys: [UInt8]) throws(TLSError) {
        guard keys.count == Self.ticketKeysSize else { throw TLSError("session ticket keys must be \(Self.ticketKeysSize) bytes") }
        var copy = keys
        let result = copy.withUnsafeMutableBytes { COpenSSL_SSL_CTX_set_tlsext_ticket_keys(raw, $0.baseAddress, $0.count) }
        if result != 1 { throw TLSError("cannot set the session ticket keys") }
    }

    /// Replaces the certificates (SIGHUP). All files were loaded and checked by the caller already,
    /// so the only failure left is an empty set, and then nothing changes. New handshakes use the
    /// new set; established and in-progress connections keep the certificate they were given.
    /// Session tickets issued before the reload stay valid.
    package func reload(defaultCertificate: TLSCertificate?, certificates: [TLSCertificate]) throws(TLSError) {
        table = try CertificateTable(defaultCertificate: defaultCertificate, certificates: certificates)
    }

    /// The certificate for a client's server_name (nil: no SNI), or nil to refuse.
    package func certificate(forServerName name: String?) -> TLSCertificate? {
        table.certificate(forServerName: name)
    }

    // MARK: Callbacks

    /// During the ClientHello: attaches the certificate chosen by SNI to this one `SSL`, and tells
    /// its TLSConnection (for logging, and for a readable error when there is none).
    fileprivate func selectCertificate(_ ssl: OpaquePointer, alert: UnsafeMutablePointer<Int32>) -> Int32 {
        let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
        let connection = TLSConnection.owner(of: ssl)
        guard let certificate = table.certificate(forServerName: name) else {
            connection?.certificateSelected(nil, forServerName: name)
            alert.pointee = SSL_AD_UNRECOGNIZED_NAME
            return SSL_TLSEXT_ERR_ALERT_FATAL
        }
        // Copies the chain and up-refs the certificate and key into the SSL's own CERT, which is
        // why a later reload does not touch this connection.
        if SSL_use_cert_and_key(ssl, certificate.certificate, certificate.privateKey, certificate.chain, 1) != 1 {
            alert.pointee = SSL_AD_INTERNAL_ERROR
            return SSL_TLSEXT_ERR_ALERT_FATAL
        }
        connection?.certificateSelected(certificate, forServerName: name)
        return SSL_TLSEXT_ERR_OK
    }

    /// During the ClientHello: our first protocol that the client offers (server preference).
    /// `out` must point into `offered`, which OpenSSL keeps alive for the handshake.
    fileprivate func selectProtocol(
        _ ssl: OpaquePointer, offered: UnsafeBufferPointer<UInt8>, out: UnsafeMutablePointer<UnsafePointer<UInt8>?>,
        outLength: UnsafeMutablePointer<UInt8>
    ) -> Int32 {
        guard let base = offered.baseAddress else { return SSL_TLSEXT_ERR_ALERT_FATAL }
        let refusesH2 =
            !http2RefusedServerNames.isEmpty
            && SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map {
                http2RefusedServerNames.contains(String(cString: $0).lowercased())
            } == true
        for wanted in alpn where !(refusesH2 && wanted == "h2") {
            var i = 0
            while i < offered.count {
                let length = Int(offered[i])
                let start = i + 1
                if length == 0 || start + length > offered.count { return SSL_TLSEXT_ERR_ALERT_FATAL }
                let candidate = UnsafeBufferPointer(rebasing: offered[start..<(start + length)])
                if candidate.elementsEqual(wanted.utf8) {
                    out.pointee = base + start
                    outLength.pointee = UInt8(length)
                    return SSL_TLSEXT_ERR_OK
                }
                i = start + length
            }
        }
        // OpenSSL turns this into a no_application_protocol alert.
        TLSConnection.owner(of: ssl)?.protocolsRejected(Self.parseProtocolList(offered))
        return SSL_TLSEXT_ERR_ALERT_FATAL
    }

    /// The protocol names of an ALPN wire list, for error messages.
    private static func parseProtocolList(_ wire: UnsafeBufferPointer<UInt8>) -> [String] {
        var names: [String] = []
        var i = 0
        while i < wire.count {
            let end = min(i + 1 + Int(wire[i]), wire.count)
            names.append(String(decoding: UnsafeBufferPointer(rebasing: wire[(i + 1)..<end]), as: UTF8.self))
            i = end
        }
        return names
    }
}

private func serverNameCallback(
    _ ssl: OpaquePointer?, _ alert: UnsafeMutablePointer<Int32>?, _ arg: UnsafeMutableRawPointer?
) -> Int32 {
    guard let ssl, let alert, let arg else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    return Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue().selectCertificate(ssl, alert: alert)
}

private func alpnSelectCallback(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    _ outLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32, _ arg: UnsafeMutableRawPointer?
) -> Int32 {
    guard let ssl, let out, let outLength, let offered, let arg else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    return Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue().selectProtocol(
        ssl, offered: UnsafeBufferPointer(start: offered, count: Int(offeredLength)), out: out, outLength: outLength)
}

/// SNI lookup table, rebuilt whole on reload.
private struct CertificateTable {
    let defaultCertificate: TLSCertificate?
    /// Exact names ("www.example.com") to certificate; the first certificate listing a name wins.
    private var exact: [String: TLSCertificate] = [:]
    /// Wildcard parents ("example.com" for "*.example.com") to certificate.
    private var wildcard: [String: TLSCertificate] = [:]

    init(defaultCertificate: TLSCertificate?, certificates: [TLSCertificate]) throws(TLSError) {
        if defaultCertificate == nil && certificates.isEmpty {
            throw TLSError("a TLS listener needs at least one certificate")
        }
        self.defaultCertificate = defaultCertificate
        // The default certificate's own names match too, after every other certificate's.
        for certificate in certificates + (defaultCertificate.map { [$0] } ?? []) {
            for name in certificate.names {
                if name.hasPrefix("*.") {
                    let parent = String(name.dropFirst(2))
                    if !parent.isEmpty && wildcard[parent] == nil { wildcard[parent] = certificate }
                } else if exact[name] == nil {
                    exact[name] = certificate
                }
            }
        }
    }

    func certificate(forServerName serverName: String?) -> TLSCertificate? {
        guard var name = serverName?.lowercased() else { return defaultCertificate }
        if name.hasSuffix(".") { name.removeLast() }
        if let certificate = exact[name] { return certificate }
        // "*.example.com" covers exactly one non-empty label: "a.example.com", not "a.b.example.com"
        // (whose parent "b.example.com" is looked up instead) nor "example.com".
        if let dot = name.firstIndex(of: "."), dot != name.startIndex,
            let certificate = wildcard[String(name[name.index(after: dot)...])]
        {
            return certificate
        }
        return defaultCertificate
    }
}
