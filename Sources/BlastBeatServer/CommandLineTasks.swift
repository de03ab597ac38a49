package import BlastBeatCore
package import BlastBeatSystem
import Glibc

/// What the `blastbeat` command does besides running the gateway: read and check a configuration,
/// and write CURVE key pairs. Here rather than in main.swift so it is in one place with the file I/O.
package enum CommandLineTasks {
    /// Reads and parses the configuration file and the files its `include` lines name; errors are
    /// `FILE:LINE: key: what was expected`, FILE being the included file where the line is there.
    package static func loadConfiguration(_ path: String, files: FileSource = .direct) throws(StartupError) -> Configuration {
        let bytes: [UInt8]
        do { bytes = try files.read(path) } catch {
            throw StartupError(description: "\(path): cannot read: \(error)")
        }
        do { return try ConfigParser.parse(String(decoding: bytes, as: UTF8.self), file: path, includes: ConfigFiles(files)) } catch {
            throw StartupError(description: "\(error)")
        }
    }

    /// `--check`: what startup checks without binding: the CURVE key files (readable, well-formed, pairs),
    /// every TLS listener's certificates and keys (readable, parse, each key its certificate's), each error at
    /// the line of the key that names the file; that the log files can be opened (nothing is created); and,
    /// as root, that `uid` and `gid` name an account. Messages as at startup.
    package static func check(_ config: Configuration, files: FileSource = .direct) throws(StartupError) {
        do { _ = try BackendKeys.load(config, files: files) } catch {
            throw StartupError(description: "\(error)")
        }
        for (index, listener) in config.listeners.enumerated() where listener.tls {
            _ = try TLSFiles.context(config, forListener: index, files: files)
        }
        for (key, path) in [("error-log", config.errorLog), ("access-log", config.accessLog)] {
            guard let path else { continue }
            do { try LogSink.checkOpenable(path) } catch {
                throw StartupError(description: "\(config.file): \(key): \(error)")
            }
        }
        for (vhost, path) in Gateway.vhostAccessLogPaths(config) {
            do { try LogSink.checkOpenable(path) } catch {
                throw StartupError(description: "\(config.file):\(vhost.accessLogLine): access-log of vhost \(vhost.name): \(error)")
            }
        }
        do { _ = try Privileges.target(user: config.uid ?? "nobody", group: config.gid ?? "nogroup") } catch {
            throw StartupError(description: "\(config.file): uid/gid: \(error)")
        }
    }

    /// `keygen NAME`: writes NAME.key (public, mode 644) and NAME.key_secret (secret, mode 600) in the
    /// ZeroMQ certificate format; refuses to overwrite either. Returns the public key.
    package static func generateKeyPair(name: String, version: String) throws(StartupError) -> CurveKey {
        let pair = CurveCrypto.KeyPair.generate()
        let (publicText, secretText) = CurveCertificate.files(
            publicKey: pair.publicKey, secretKey: pair.secretKey, generatedBy: "blastbeat \(version) keygen")
        try write(secretText, to: name + ".key_secret", mode: 0o600)
        do throws(StartupError) {
            try write(publicText, to: name + ".key", mode: 0o644)
        } catch {
            unlink(name + ".key_secret")
            throw error
        }
        return pair.publicKey
    }

    private static func write(_ text: String, to path: String, mode: UInt32) throws(StartupError) {
        do { try Posix.createFile(path, containing: text, mode: mode) } catch {
            let hint = error.call == "create" ? " (keygen never overwrites a key)" : ""
            throw StartupError(description: "\(path): \(error)\(hint)")
        }
    }
}
