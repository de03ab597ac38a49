package import BlastBeatCore

/// The CURVE keys of a configuration, read from their files: the gateway's key pair and, per node
/// name, the public keys that may claim it. Read at start (before privileges are dropped, so a
/// root-only secret file works) and by `--check`; every problem names the configuration line.
package struct BackendKeys: Sendable {
    /// The gateway's long-term key pair; nil without `curve-key` (backends use NULL).
    package var server: CurveCrypto.KeyPair?
    /// Node name → keys that may claim NAME or NAME#anything (collected over every vhost listing it).
    package var byNode: [[UInt8]: [CurveKey]] = [:]

    package init(server: CurveCrypto.KeyPair? = nil, byNode: [[UInt8]: [CurveKey]] = [:]) {
        self.server = server
        self.byNode = byNode
    }

    package static func load(_ config: Configuration, files: FileSource = .direct) throws(ConfigError) -> BackendKeys {
        guard let path = config.curveKeyFile else { return BackendKeys() }
        func fail(_ line: Int, _ key: String, _ message: String) -> ConfigError {
            config.error(at: line, key: key, message)
        }
        let certificate = try readCertificate(at: path, files) { message throws(ConfigError) in
            throw fail(config.curveKeyLine, "curve-key", message)
        }
        guard let secret = certificate.secretKey else {
            throw fail(config.curveKeyLine, "curve-key", "\(path) has no secret-key: curve-key needs the gateway's secret certificate (NAME.key_secret), not the public one")
        }
        let pair = CurveCrypto.KeyPair(publicKey: certificate.publicKey, secretKey: secret)
        guard pair.isConsistent else {
            throw fail(config.curveKeyLine, "curve-key", "\(path): its public-key is not the public half of its secret-key")
        }
        var keys = BackendKeys(server: pair)
        for vhost in config.vhosts {
            for nodeKey in vhost.nodeKeys {
                let key: CurveKey
                switch nodeKey.source {
                case .key(let inline):
                    key = inline
                case .file(let file):
                    key = try readCertificate(at: file, files) { message throws(ConfigError) in
                        throw fail(nodeKey.line, "node-key", message)
                    }.publicKey
                }
                if !keys.byNode[nodeKey.node, default: []].contains(key) { keys.byNode[nodeKey.node, default: []].append(key) }
            }
        }
        return keys
    }

    private static func readCertificate(
        at path: String, _ files: FileSource, orFail fail: (String) throws(ConfigError) -> Never
    ) throws(ConfigError) -> CurveCertificate {
        let bytes: [UInt8]
        do { bytes = try files.read(path) } catch { try fail("cannot \(error)") }
        do { return try CurveCertificate.parse(String(decoding: bytes, as: UTF8.self)) } catch {
            try fail("\(path): \(error)")
        }
    }
}
