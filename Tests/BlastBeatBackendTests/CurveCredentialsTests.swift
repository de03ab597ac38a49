import BlastBeatCore
import Testing

@testable import BlastBeatBackend

@Suite struct CurveCredentialsTests {
    /// The node's certificate as pyzmq writes it, and the server key as Z85 text.
    @Test func pyzmqCertificateAndZ85ServerKey() throws {
        let server = TestKeyPair()
        let credentials = try CurveCredentials(secretCertificate: PyzmqCertificate.secret, serverKey: server.publicZ85)
        // The secret key was read too: the public key was checked against it (see invalidNodeCertificates),
        // and BackendNodeCurveTests shakes hands with it.
        #expect(credentials.publicKey == PyzmqCertificate.publicKey)
        #expect(credentials.serverKey == server.publicZ85)
    }

    /// Both from files: the node's secret certificate and the gateway's public certificate.
    @Test func certificateFiles() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let node = TestKeyPair()
        let server = TestKeyPair()
        let keyFile = directory.write("node.key_secret", node.certificates.secret)
        let serverFile = directory.write("gateway.key", server.certificates.public)
        let credentials = try CurveCredentials(curveKeyFile: keyFile, serverKey: serverFile)
        #expect(credentials.publicKey == node.publicZ85)
        #expect(credentials.serverKey == server.publicZ85)
        // The secret key never shows in what a program may print or log.
        #expect("\(credentials)" == "CURVE (node key \(node.publicZ85), gateway key \(server.publicZ85))")
        #expect(!"\(credentials)".contains(node.secretZ85) && !String(reflecting: credentials).contains(node.secretZ85))
    }

    @Test func unreadableFiles() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = TestKeyPair().publicZ85
        #expect {
            try CurveCredentials(curveKeyFile: "\(directory.path)/missing.key_secret", serverKey: server)
        } throws: { error in
            (error as? BackendError) == .curveKeyUnreadable && "\(error)".contains("No such file or directory")
                && "\(error)".contains("missing.key_secret")
        }
        #expect {
            try CurveCredentials(curveKeyFile: directory.path, serverKey: server)
        } throws: { error in
            (error as? BackendError) == .curveKeyUnreadable && "\(error)".contains("Is a directory")
        }
        // A server key naming an existing file is read as one, never taken for a key.
        #expect {
            try CurveCredentials(secretCertificate: PyzmqCertificate.secret, serverKey: directory.path)
        } throws: { error in
            (error as? BackendError) == .curveKeyUnreadable && "\(error)".contains("server key file")
        }
        #expect {
            try CurveCredentials(secretCertificate: PyzmqCertificate.secret, serverKey: "/dev/zero")
        } throws: { error in
            (error as? BackendError) == .curveKeyUnreadable && "\(error)".contains("not a ZeroMQ certificate file")
        }
    }

    @Test func invalidNodeCertificates() throws {
        let node = TestKeyPair()
        let other = TestKeyPair()
        let server = TestKeyPair().publicZ85
        let cases: [(text: String, message: String)] = [
            (node.certificates.public, "has no secret-key: give the node's secret certificate"),
            ("just some text\n", "is not a ZeroMQ certificate: no public-key"),
            ("curve\n    public-key = \"short\"\n", "line 2: public-key is not a 40-character Z85 key"),
            (
                "curve\n    public-key = \"\(other.publicZ85)\"\n    secret-key = \"\(node.secretZ85)\"\n",
                "the public-key does not belong to the secret-key"
            ),
        ]
        for (text, message) in cases {
            #expect {
                try CurveCredentials(secretCertificate: text, serverKey: server)
            } throws: { error in
                (error as? BackendError) == .invalidCurveKey && "\(error)".contains(message)
            }
        }
    }

    @Test func invalidServerKeys() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = TestKeyPair()
        let cases: [(serverKey: String, message: String)] = [
            (String(server.publicZ85.dropLast()), "neither an existing certificate file nor a 40-character Z85 key"),
            (server.publicZ85 + "0", "neither an existing certificate file nor a 40-character Z85 key"),
            (String(repeating: "~", count: 40), "neither an existing certificate file nor a 40-character Z85 key"),
            (directory.write("gateway.key_secret", server.certificates.secret), "holds the gateway's secret-key"),
            (directory.write("notes.txt", "hello\n"), "is not a ZeroMQ certificate"),
        ]
        for (serverKey, message) in cases {
            #expect {
                try CurveCredentials(secretCertificate: PyzmqCertificate.secret, serverKey: serverKey)
            } throws: { error in
                (error as? BackendError) == .invalidCurveKey && "\(error)".contains(message)
            }
        }
    }
}
