package import BlastBeatCore
package import BlastBeatSystem

/// The certificates of the TLS listeners, read the same way at startup, on SIGHUP and by `--check`, so that
/// `--check` answers OK only for files the real start can load. A file that fails is reported at the line
/// that names it: `FILE:LINE: certificate: …` for a certificate that cannot be read or parsed, `FILE:LINE: key: …`
/// for a key that cannot be read or parsed or that is not the certificate's key.
package enum TLSFiles {
    /// The certificates listener `index` serves: one per distinct (certificate, key) pair of its vhosts, and
    /// the default (no SNI match): the `[blastbeat]` pair, or on a listener dedicated to vhosts, the first
    /// vhost's pair.
    package static func certificates(
        _ config: Configuration, forListener index: Int, files: FileSource = .direct
    ) throws(StartupError) -> (defaultCertificate: TLSCertificate?, certificates: [TLSCertificate]) {
        var loaded: [String: TLSCertificate] = [:]
        func load(_ certificate: String, _ key: String, lines: (Int, Int)) throws(StartupError) -> TLSCertificate {
            let id = certificate + "\u{0}" + key
            if let existing = loaded[id] { return existing }
            do {
                let fresh = try TLSCertificate(certificateFile: certificate, keyFile: key, files: files)
                loaded[id] = fresh
                return fresh
            } catch {
                let blamesKey = error.file == .key
                throw StartupError(
                    description: config.error(
                        at: blamesKey ? lines.1 : lines.0, key: blamesKey ? "key" : "certificate", "\(error)"
                    ).description)
            }
        }
        var certificates: [TLSCertificate] = []
        for v in config.vhostIndices(forListener: index) {
            let vhost = config.vhosts[v]
            guard let certificate = vhost.certificate, let key = vhost.key else { continue }
            let loadedCertificate = try load(certificate, key, lines: (vhost.certificateLine, vhost.keyLine))
            if !certificates.contains(where: { $0 === loadedCertificate }) { certificates.append(loadedCertificate) }
        }
        var defaultCertificate: TLSCertificate? = nil
        if let certificate = config.certificate, let key = config.key {
            defaultCertificate = try load(certificate, key, lines: (config.certificateLine, config.keyLine))
        } else if config.listeners[index].dedicatedVhosts != nil {
            defaultCertificate = certificates.first
        }
        return (defaultCertificate, certificates)
    }

    private static func protocols(_ config: Configuration) -> [String] {
        config.http2 ? ["h2", "http/1.1"] : ["http/1.1"]
    }

    /// What ALPN offers on listener `index`: `h2` before `http/1.1` (`http2 = true`), except to clients naming a
    /// vhost with `http2 = false` by SNI. At start and after a reload.
    package static func offerProtocols(_ config: Configuration, forListener index: Int, on context: TLSServerContext) {
        context.alpn = protocols(config)
        context.http2RefusedServerNames = Set(
            config.vhostIndices(forListener: index).filter { !config.vhosts[$0].http2 }.map {
                String(decoding: config.vhosts[$0].hostName, as: UTF8.self)
            })
    }

    /// A TLS context for listener `index` with its certificates loaded: ALPN offers `h2` before `http/1.1`
    /// (`http2 = true`), except to clients naming a vhost with `http2 = false` by SNI.
    package static func context(
        _ config: Configuration, forListener index: Int, files: FileSource = .direct
    ) throws(StartupError) -> TLSServerContext {
        let (defaultCertificate, certificates) = try self.certificates(config, forListener: index, files: files)
        do {
            let context = try TLSServerContext(
                defaultCertificate: defaultCertificate, certificates: certificates, alpn: protocols(config))
            offerProtocols(config, forListener: index, on: context)
            return context
        } catch {
            throw StartupError(description: "\(config.file):\(config.listeners[index].line): bind-ssl: \(error)")
        }
    }
}
