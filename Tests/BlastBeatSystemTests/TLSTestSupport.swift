// Test-only helpers for TLSTests: a throwaway PKI made with the `openssl` CLI at test time (no key
// is ever committed), and a minimal OpenSSL client over memory BIOs to handshake against
// TLSConnection without sockets.
import BlastBeatCore
import BlastBeatSystem
internal import COpenSSL
import Foundation

// MARK: - PKI fixture

/// Root CA → intermediate → leaves, in a temporary directory removed when the test process exits.
/// Every leaf's `.pem` holds the leaf followed by the intermediate; clients trust only the root,
/// so a successful verification proves the chain is sent.
struct TestPKI: Sendable {
    let directory: String

    var rootCA: String { path("root.pem") }
    func certificate(_ name: String) -> String { path("\(name).pem") }
    func key(_ name: String) -> String { path("\(name).key") }
    func path(_ file: String) -> String { directory + "/" + file }

    /// Made once per test process.
    static let shared: TestPKI = {
        do {
            let pki = try make()
            atexit { try? FileManager.default.removeItem(atPath: TestPKI.shared.directory) }
            return pki
        } catch {
            fatalError("cannot create the test PKI with the openssl CLI: \(error)")
        }
    }()

    /// Leaf certificates: file name, subject CN, subjectAltNames, key type.
    private static let leaves: [(name: String, cn: String, sans: [String], rsa: Bool)] = [
        ("a", "a.test", ["a.test", "www.a.test"], false),
        ("b", "b.test", ["B.Test"], false),
        ("wild", "*.wild.test", ["*.wild.test"], false),
        ("default", "default.test", ["default.test"], true),
        ("a2", "reloaded.a.test", ["a.test"], false),
    ]

    private static func make() throws -> TestPKI {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("blastbeat-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pki = TestPKI(directory: directory)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try pki.run(
            ["req", "-x509", "-new"] + ec + [
                "-keyout", "root.key", "-out", "root.pem", "-days", "2", "-subj", "/CN=BlastBeat Test Root",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        try "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
            .write(toFile: pki.path("int.ext"), atomically: true, encoding: .utf8)
        try pki.run(
            ["req", "-new"] + ec + ["-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=BlastBeat Test Intermediate"])
        try pki.run([
            "x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "2",
            "-days", "2", "-extfile", "int.ext", "-out", "int.pem",
        ])
        for (serial, leaf) in leaves.enumerated() {
            let keyOptions = leaf.rsa ? ["-newkey", "rsa:2048", "-nodes"] : ec
            try pki.run(
                ["req", "-new"] + keyOptions
                    + ["-keyout", "\(leaf.name).key", "-out", "\(leaf.name).csr", "-subj", "/CN=\(leaf.cn)"])
            let ext = "subjectAltName=" + leaf.sans.map { "DNS:\($0)" }.joined(separator: ",")
                + "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            try ext.write(toFile: pki.path("\(leaf.name).ext"), atomically: true, encoding: .utf8)
            try pki.run([
                "x509", "-req", "-in", "\(leaf.name).csr", "-CA", "int.pem", "-CAkey", "int.key",
                "-set_serial", "\(100 + serial)", "-days", "2", "-extfile", "\(leaf.name).ext",
                "-out", "\(leaf.name).leaf.pem",
            ])
            let chain = try String(contentsOfFile: pki.path("\(leaf.name).leaf.pem"), encoding: .utf8)
                + String(contentsOfFile: pki.path("int.pem"), encoding: .utf8)
            try chain.write(toFile: pki.certificate(leaf.name), atomically: true, encoding: .utf8)
        }
        // Extras for the error tests.
        try pki.run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key"])
        try pki.run(["pkey", "-in", "a.key", "-aes256", "-passout", "pass:secret", "-out", "encrypted.key"])
        let combined = try String(contentsOfFile: pki.certificate("a"), encoding: .utf8)
            + String(contentsOfFile: pki.key("a"), encoding: .utf8)
        try combined.write(toFile: pki.path("combined.pem"), atomically: true, encoding: .utf8)
        try "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
            .write(toFile: pki.path("garbage.pem"), atomically: true, encoding: .utf8)
        try "just some text\n".write(toFile: pki.path("text.txt"), atomically: true, encoding: .utf8)
        return pki
    }

    private func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            struct OpenSSLFailed: Error, CustomStringConvertible { var description: String }
            throw OpenSSLFailed(
                description: "openssl \(arguments.joined(separator: " ")): \(String(decoding: output, as: UTF8.self))")
        }
    }

    // Loaded objects (fresh per test: nothing is shared between concurrently running tests).
    func load(_ name: String) throws -> TLSCertificate {
        try TLSCertificate(certificateFile: certificate(name), keyFile: key(name))
    }
}

// MARK: - Client

/// A TLS client over two memory BIOs, the mirror image of TLSConnection.
final class TestTLSClient {
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    private let incoming: OpaquePointer
    private let outgoing: OpaquePointer
    private(set) var handshakeDone = false
    /// The client's OpenSSL error queue from its last failure.
    private(set) var lastError = ""

    struct Options {
        var serverName: String?
        var alpn: [String] = []
        /// Also check that the certificate is valid for `serverName`.
        var verifyHostName = false
        var minVersion: Int32 = TLS1_2_VERSION
        var maxVersion: Int32 = TLS1_3_VERSION
        var ciphers: String?
        var session: TestSession?
    }

    init(pki: TestPKI = .shared, _ options: Options) {
        ctx = SSL_CTX_new(TLS_client_method())!
        _ = COpenSSL_SSL_CTX_set_min_proto_version(ctx, options.minVersion)
        _ = COpenSSL_SSL_CTX_set_max_proto_version(ctx, options.maxVersion)
        if let ciphers = options.ciphers { precondition(SSL_CTX_set_cipher_list(ctx, ciphers) == 1) }
        precondition(SSL_CTX_load_verify_locations(ctx, pki.rootCA, nil) == 1)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        if !options.alpn.isEmpty {
            var wire: [UInt8] = []
            for p in options.alpn { wire.append(UInt8(p.utf8.count)); wire += p.utf8 }
            precondition(SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0)
        }
        ssl = SSL_new(ctx)!
        incoming = BIO_new(BIO_s_mem())!
        outgoing = BIO_new(BIO_s_mem())!
        _ = COpenSSL_BIO_set_mem_eof_return(incoming, -1)
        SSL_set_bio(ssl, incoming, outgoing)
        SSL_set_connect_state(ssl)
        if let name = options.serverName {
            precondition(COpenSSL_SSL_set_tlsext_host_name(ssl, name) == 1)
            if options.verifyHostName { precondition(SSL_set1_host(ssl, name) == 1) }
        }
        if let session = options.session { precondition(SSL_set_session(ssl, session.raw) == 1) }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    func feed(_ bytes: [UInt8]) {
        if bytes.isEmpty { return }
        bytes.withUnsafeBytes { precondition(BIO_write(incoming, $0.baseAddress, Int32($0.count)) == Int32($0.count)) }
    }

    func takeCiphertext() -> [UInt8] {
        let pending = Int(BIO_ctrl_pending(outgoing))
        var out = [UInt8](repeating: 0, count: pending)
        if pending > 0 { out.withUnsafeMutableBytes { _ = BIO_read(outgoing, $0.baseAddress, Int32(pending)) } }
        return out
    }

    /// nil: in progress; true: done; false: failed (see lastError).
    func handshakeStep() -> Bool? {
        if handshakeDone { return true }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            return true
        }
        if SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ { return nil }
        lastError = drainErrors()
        return false
    }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            var written = 0
            let rc = bytes.withUnsafeBytes { SSL_write_ex(ssl, $0.baseAddress! + offset, $0.count - offset, &written) }
            precondition(rc == 1, "client write failed: \(drainErrors())")
            offset += written
        }
    }

    enum ReadOutcome: Equatable { case data([UInt8]), closed, failed }

    /// Everything readable now (processes post-handshake messages such as session tickets too).
    func read() -> ReadOutcome {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            ERR_clear_error()
            var count = 0
            let rc = buffer.withUnsafeMutableBytes { SSL_read_ex(ssl, $0.baseAddress, $0.count, &count) }
            if rc == 1 {
                result += buffer[0..<count]
                continue
            }
            switch SSL_get_error(ssl, rc) {
            case SSL_ERROR_WANT_READ: return .data(result)
            case SSL_ERROR_ZERO_RETURN: return result.isEmpty ? .closed : .data(result)
            default:
                lastError = drainErrors()
                return .failed
            }
        }
    }

    func shutdown() { _ = SSL_shutdown(ssl) }

    /// Subject CN of the certificate the server presented.
    var peerCommonName: String? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        var buffer = [CChar](repeating: 0, count: 256)
        let n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &buffer, Int32(buffer.count))
        return n < 0 ? nil : buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Number of certificates the server sent (leaf + chain).
    var peerChainLength: Int {
        guard let chain = SSL_get_peer_cert_chain(ssl) else { return 0 }
        return Int(COpenSSL_sk_X509_num(chain))
    }

    var verifiedOK: Bool { SSL_get_verify_result(ssl) == X509_V_OK }
    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }
    var sessionReused: Bool { SSL_session_reused(ssl) == 1 }

    /// The session for resumption, once the server's ticket has been processed.
    func resumableSession() -> TestSession? {
        guard let raw = SSL_get1_session(ssl) else { return nil }
        let session = TestSession(raw: raw)
        return SSL_SESSION_is_resumable(raw) == 1 ? session : nil
    }

    private func drainErrors() -> String {
        var parts: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return parts.joined(separator: "; ")
    }
}

final class TestSession {
    let raw: OpaquePointer
    init(raw: OpaquePointer) { self.raw = raw }
    deinit { SSL_SESSION_free(raw) }
}

// MARK: - Driving both sides

enum PairOutcome: Equatable { case established, clientFailed, serverFailed }

/// Moves ciphertext between the two sides until the handshake finishes or one side fails. The
/// failing side's alert is still delivered to the other side, as a socket would.
@discardableResult
func runHandshake(_ client: TestTLSClient, _ server: TLSConnection, serverError: inout TLSError?) -> PairOutcome {
    var serverDone = false
    for _ in 0..<20 {
        let clientStep = client.handshakeStep()
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        if clientStep == false { return .clientFailed }
        if !serverDone {
            switch server.handshake() {
            case .complete: serverDone = true
            case .needMoreData: break
            case .failed(let error):
                serverError = error
                deliver(server, to: client)
                _ = client.handshakeStep()
                return .serverFailed
            }
        }
        deliver(server, to: client)
        if serverDone && clientStep == true {
            // Let the client process anything sent with the server's last flight (TLS 1.3 tickets).
            if case .failed = client.read() { return .clientFailed }
            return .established
        }
    }
    return .clientFailed
}

@discardableResult
func runHandshake(_ client: TestTLSClient, _ server: TLSConnection) -> PairOutcome {
    var ignored: TLSError?
    return runHandshake(client, server, serverError: &ignored)
}

func deliver(_ server: TLSConnection, to client: TestTLSClient) {
    var out: [UInt8] = []
    server.takeCiphertext(into: &out)
    client.feed(out)
}

/// Reads everything the server can decrypt now, with a deliberately small buffer.
func readAll(_ server: TLSConnection, bufferSize: Int = 1000) -> (bytes: [UInt8], end: TLSConnection.ReadResult) {
    var bytes: [UInt8] = []
    var buffer = ReadBuffer(capacity: bufferSize)
    while true {
        let result = server.readPlaintext(into: &buffer)
        if case .data = result {
            bytes += buffer.withBytes { span in span.withUnsafeBytes { Array($0) } }
            continue
        }
        return (bytes, result)
    }
}

func serverWrite(_ server: TLSConnection, _ bytes: [UInt8]) -> Result<Int, TLSError> {
    server.writePlaintext(bytes.span.bytes)
}
