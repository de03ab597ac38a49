import BlastBeatCore
import BlastBeatSystem
internal import COpenSSL
import Testing

private let pki = TestPKI.shared

/// A context serving a.test, b.test and *.wild.test, with default.test as the fallback.
private func standardContext(alpn: [String] = ["http/1.1"], withDefault: Bool = true) throws -> TLSServerContext {
    try TLSServerContext(
        defaultCertificate: withDefault ? pki.load("default") : nil,
        certificates: [pki.load("a"), pki.load("b"), pki.load("wild")], alpn: alpn)
}

/// Handshakes a fresh client against a fresh connection of `context`.
private func connect(
    _ context: TLSServerContext, _ options: TestTLSClient.Options
) throws -> (TestTLSClient, TLSConnection, PairOutcome, TLSError?) {
    let client = TestTLSClient(options)
    let server = try TLSConnection(context: context)
    var error: TLSError?
    let outcome = runHandshake(client, server, serverError: &error)
    return (client, server, outcome, error)
}

@Suite struct TLSHandshakeTests {
    @Test func handshakeAndDataBothWays() throws {
        let context = try standardContext()
        let (client, server, outcome, _) = try connect(context, .init(serverName: "a.test", verifyHostName: true))
        #expect(outcome == .established)
        #expect(server.isHandshakeComplete)
        #expect(client.verifiedOK)
        // Leaf plus intermediate: the chain is sent (the original sent the leaf only).
        #expect(client.peerChainLength == 2)
        #expect(server.protocolVersion == "TLSv1.3")
        #expect(client.protocolVersion == "TLSv1.3")
        #expect(server.cipherName?.hasPrefix("TLS_AES_") == true)
        #expect(server.negotiatedProtocol == nil)  // the client offered no ALPN
        #expect(!server.sessionReused)

        // Client → server.
        let request = Array("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8)
        client.write(request)
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        let (received, end) = readAll(server)
        #expect(received == request)
        guard case .needMoreData = end else { Issue.record("expected needMoreData, got \(end)"); return }

        // Server → client, larger than one record.
        let response = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try serverWrite(server, response).get() == response.count)
        #expect(server.hasCiphertextToSend)
        deliver(server, to: client)
        #expect(!server.hasCiphertextToSend)
        #expect(client.read() == .data(response))
    }

    @Test func tls12WithECDHEAndAEAD() throws {
        let context = try standardContext()
        let (client, server, outcome, _) = try connect(
            context, .init(serverName: "a.test", maxVersion: TLS1_2_VERSION))
        #expect(outcome == .established)
        #expect(server.protocolVersion == "TLSv1.2")
        #expect(client.protocolVersion == "TLSv1.2")
        let cipher = server.cipherName ?? ""
        #expect(cipher.hasPrefix("ECDHE-") && (cipher.contains("GCM") || cipher.contains("CHACHA20")))
    }

    @Test func tls12WithoutForwardSecrecyIsRefused() throws {
        let context = try standardContext()
        let (_, _, outcome, error) = try connect(
            context, .init(serverName: "a.test", maxVersion: TLS1_2_VERSION, ciphers: "AES128-SHA:AES256-GCM-SHA384"))
        #expect(outcome == .serverFailed)
        #expect(error?.description.contains("no shared cipher") == true)
    }

    @Test func tls11ClientIsRefused() throws {
        let context = try standardContext()
        let (client, server, outcome, error) = try connect(
            context,
            .init(
                serverName: "a.test", minVersion: TLS1_VERSION, maxVersion: TLS1_1_VERSION,
                ciphers: "DEFAULT@SECLEVEL=0"))
        #expect(outcome == .serverFailed)
        #expect(error?.description.contains("unsupported protocol") == true)
        #expect(client.lastError.contains("protocol version"))
        // A failed connection stays failed and reads/writes report it.
        guard case .failed = server.handshake() else { Issue.record("handshake should stay failed"); return }
        var buffer = ReadBuffer(capacity: 16)
        guard case .failed = server.readPlaintext(into: &buffer) else {
            Issue.record("read after failure should fail"); return
        }
        #expect(throws: TLSError.self) { try serverWrite(server, [1, 2, 3]).get() }
    }

    @Test func garbageInsteadOfClientHelloFails() throws {
        let server = try TLSConnection(context: standardContext())
        server.feedCiphertext(Array("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8).span.bytes)
        guard case .failed(let error) = server.handshake() else { Issue.record("plain HTTP should fail"); return }
        #expect(error.description.contains("TLS handshake failed"))
        #expect(!error.openSSLErrors.isEmpty)
        // The error took the whole queue with it.
        #expect(ERR_peek_error() == 0)
    }

    /// TLS 1.3: the client's request can arrive in the same read as its Finished message.
    @Test func requestTogetherWithFinished() throws {
        let client = TestTLSClient(.init(serverName: "a.test"))
        let server = try TLSConnection(context: standardContext())
        #expect(client.handshakeStep() == nil)
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        guard case .needMoreData = server.handshake() else { Issue.record("first flight"); return }
        deliver(server, to: client)
        #expect(client.handshakeStep() == true)
        let request = Array("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8)
        client.write(request)
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        guard case .complete = server.handshake() else { Issue.record("handshake should complete"); return }
        #expect(server.hasCiphertextToSend)  // session tickets
        #expect(readAll(server).bytes == request)
    }

    @Test func partialClientHelloNeedsMoreData() throws {
        let context = try standardContext()
        let client = TestTLSClient(.init(serverName: "a.test"))
        let server = try TLSConnection(context: context)
        #expect(client.handshakeStep() == nil)
        let hello = client.takeCiphertext()
        // Byte by byte: the server must keep asking for more, then answer.
        for (i, byte) in hello.enumerated() {
            server.feedCiphertext([byte].span.bytes)
            let result = server.handshake()
            if i < hello.count - 1 {
                guard case .needMoreData = result else { Issue.record("byte \(i): \(result)"); return }
                #expect(!server.hasCiphertextToSend)
            }
        }
        #expect(server.hasCiphertextToSend)
        #expect(runHandshake(client, server) == .established)
    }
}

@Suite struct TLSServerNameTests {
    @Test(arguments: [
        ("a.test", "a.test"), ("www.a.test", "a.test"), ("b.test", "b.test"), ("A.TEST", "a.test"),
        ("x.wild.test", "*.wild.test"), ("Other.Wild.Test", "*.wild.test"),
        // Wildcards cover exactly one label.
        ("wild.test", "default.test"), ("a.b.wild.test", "default.test"),
        ("unknown.test", "default.test"), ("default.test", "default.test"),
    ])
    func sniPicksCertificate(serverName: String, expectedCN: String) throws {
        let context = try standardContext()
        let verify = expectedCN != "default.test" || serverName == "default.test"
        let (client, server, outcome, _) = try connect(context, .init(serverName: serverName, verifyHostName: verify))
        #expect(outcome == .established)
        #expect(client.peerCommonName == expectedCN)
        #expect(server.serverName == serverName.lowercased())
        #expect(server.certificate?.names.contains(expectedCN) == true)
        if verify { #expect(client.verifiedOK) }
    }

    @Test func noServerNameGetsDefault() throws {
        let (client, server, outcome, _) = try connect(try standardContext(), .init(serverName: nil))
        #expect(outcome == .established)
        #expect(client.peerCommonName == "default.test")
        #expect(server.serverName == nil)
    }

    @Test func unknownNameWithoutDefaultFails() throws {
        let context = try standardContext(withDefault: false)
        let (client, server, outcome, error) = try connect(context, .init(serverName: "unknown.test"))
        #expect(outcome == .serverFailed)
        #expect(
            error?.message
                == "TLS handshake failed: no certificate for server name \"unknown.test\" and no default certificate")
        #expect(client.lastError.contains("unrecognized name"))
        #expect(!server.isHandshakeComplete)
        #expect(server.certificate == nil)
        // A known name still works on the same context.
        let (client2, _, outcome2, _) = try connect(context, .init(serverName: "b.test"))
        #expect(outcome2 == .established)
        #expect(client2.peerCommonName == "b.test")
    }

    @Test func noServerNameWithoutDefaultFails() throws {
        let context = try standardContext(withDefault: false)
        let (client, _, outcome, error) = try connect(context, .init(serverName: nil))
        #expect(outcome == .serverFailed)
        #expect(error?.message.contains("the client sent no server name (SNI)") == true)
        #expect(client.lastError.contains("unrecognized name"))
    }

    @Test func lookupTable() throws {
        let context = try standardContext()
        #expect(context.certificate(forServerName: "www.a.test")?.names == ["a.test", "www.a.test"])
        #expect(context.certificate(forServerName: "a.test.")?.names == ["a.test", "www.a.test"])
        #expect(context.certificate(forServerName: "q.wild.test")?.names == ["*.wild.test"])
        #expect(context.certificate(forServerName: ".wild.test")?.names == ["default.test"])
        #expect(context.certificate(forServerName: nil)?.names == ["default.test"])
    }
}

@Suite struct TLSALPNTests {
    @Test func selectsHTTP11() throws {
        let (_, server, outcome, _) = try connect(
            try standardContext(), .init(serverName: "a.test", alpn: ["h2", "http/1.1"]))
        #expect(outcome == .established)
        #expect(server.negotiatedProtocol == "http/1.1")
    }

    @Test func serverPreferenceWins() throws {
        let context = try standardContext(alpn: ["h2", "http/1.1"])
        let (_, server, outcome, _) = try connect(context, .init(serverName: "a.test", alpn: ["http/1.1", "h2"]))
        #expect(outcome == .established)
        #expect(server.negotiatedProtocol == "h2")
    }

    @Test func noCommonProtocolFails() throws {
        let (client, _, outcome, error) = try connect(
            try standardContext(), .init(serverName: "a.test", alpn: ["spdy/2", "h2"]))
        #expect(outcome == .serverFailed)
        #expect(
            error?.message
                == "TLS handshake failed: the client offers ALPN protocols [\"spdy/2\", \"h2\"], we support [\"http/1.1\"]")
        #expect(client.lastError.contains("no application protocol"))
    }

    @Test func tls12AlsoNegotiates() throws {
        let (_, server, outcome, _) = try connect(
            try standardContext(), .init(serverName: "a.test", alpn: ["http/1.1"], maxVersion: TLS1_2_VERSION))
        #expect(outcome == .established)
        #expect(server.negotiatedProtocol == "http/1.1")
    }

    @Test func invalidProtocolNameIsRejected() throws {
        #expect(throws: TLSError.self) { try standardContext(alpn: [""]) }
        #expect(throws: TLSError.self) { try standardContext(alpn: [String(repeating: "x", count: 256)]) }
    }
}

@Suite struct TLSRecordTests {
    /// A full 16 KiB record read through a 1000-byte buffer: the rest sits inside OpenSSL
    /// (SSL_pending), not in the socket, and must come out without feeding more (the original left it stuck).
    @Test func recordLargerThanBufferIsDrained() throws {
        let (client, server, outcome, _) = try connect(try standardContext(), .init(serverName: "a.test"))
        #expect(outcome == .established)
        let record = (0..<16_384).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        client.write(record)
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        #expect(server.bufferedCiphertextCount > 16_384)

        var buffer = ReadBuffer(capacity: 1000)
        let first = server.readPlaintext(into: &buffer)
        guard case .data(1000) = first else { Issue.record("first read: \(first)"); return }
        #expect(server.bufferedCiphertextCount == 0)  // all ciphertext consumed, plaintext held inside
        var received = buffer.withBytes { span in span.withUnsafeBytes { Array($0) } }
        let (rest, end) = readAll(server)
        received += rest
        #expect(received == record)
        guard case .needMoreData = end else { Issue.record("end: \(end)"); return }
    }

    @Test func manyRecordsInOneFeed() throws {
        let (client, server, _, _) = try connect(try standardContext(), .init(serverName: "a.test"))
        var sent: [UInt8] = []
        for i in 0..<40 {
            let chunk = [UInt8](repeating: UInt8(i), count: 3000 + i * 101)
            client.write(chunk)
            sent += chunk
        }
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        let (received, end) = readAll(server, bufferSize: 4096)
        #expect(received == sent)
        guard case .needMoreData = end else { Issue.record("end: \(end)"); return }
    }

    @Test func recordSplitAcrossFeeds() throws {
        let (client, server, _, _) = try connect(try standardContext(), .init(serverName: "a.test"))
        let message = Array("hello, split world".utf8)
        client.write(message)
        let ciphertext = client.takeCiphertext()
        server.feedCiphertext(ciphertext.span.bytes.extracting(0..<10))
        var buffer = ReadBuffer(capacity: 100)
        guard case .needMoreData = server.readPlaintext(into: &buffer) else {
            Issue.record("a partial record must not produce data"); return
        }
        server.feedCiphertext(ciphertext.span.bytes.extracting(10...))
        #expect(readAll(server).bytes == message)
    }

    @Test func closeNotifyFromClient() throws {
        let (client, server, _, _) = try connect(try standardContext(), .init(serverName: "a.test"))
        client.write(Array("last words".utf8))
        client.shutdown()
        server.feedCiphertext(client.takeCiphertext().span.bytes)
        // Data before the close_notify comes first, then .closed.
        let (bytes, end) = readAll(server)
        #expect(bytes == Array("last words".utf8))
        guard case .closed = end else { Issue.record("end: \(end)"); return }
    }

    @Test func shutdownQueuesCloseNotify() throws {
        let (client, server, _, _) = try connect(try standardContext(), .init(serverName: "a.test"))
        #expect(try serverWrite(server, Array("bye".utf8)).get() == 3)
        server.shutdown()
        #expect(server.hasCiphertextToSend)
        deliver(server, to: client)
        #expect(client.read() == .data(Array("bye".utf8)))
        #expect(client.read() == .closed)
        #expect(throws: TLSError.self) { try serverWrite(server, [1]).get() }
    }

    /// A caller may skip `handshake()` and just read: SSL_read runs the handshake itself.
    @Test func readAloneDrivesTheHandshake() throws {
        let client = TestTLSClient(.init(serverName: "a.test"))
        let server = try TLSConnection(context: standardContext())
        var received: [UInt8] = []
        for _ in 0..<5 where !client.handshakeDone || received.isEmpty {
            if client.handshakeStep() == true && received.isEmpty { client.write(Array("ping".utf8)) }
            server.feedCiphertext(client.takeCiphertext().span.bytes)
            received += readAll(server).bytes
            deliver(server, to: client)
        }
        #expect(received == Array("ping".utf8))
        #expect(server.isHandshakeComplete)
        server.shutdown()
        deliver(server, to: client)
        #expect(client.read() == .closed)
    }

    @Test func writeBeforeHandshakeTakesNothing() throws {
        let server = try TLSConnection(context: standardContext())
        #expect(try serverWrite(server, [1, 2, 3]).get() == 0)
        #expect(!server.hasCiphertextToSend)
        server.shutdown()  // no effect before the handshake
        #expect(!server.hasCiphertextToSend)
    }
}

@Suite struct TLSCertificateFileTests {
    @Test func namesAreLowercasedSANsAndCN() throws {
        #expect(try pki.load("a").names == ["a.test", "www.a.test"])
        #expect(try pki.load("b").names == ["b.test"])
        #expect(try pki.load("wild").names == ["*.wild.test"])
        #expect(try pki.load("a2").names == ["a.test", "reloaded.a.test"])
        #expect(try pki.load("a").chainLength == 1)
    }

    @Test func combinedFileLoads() throws {
        let combined = pki.path("combined.pem")
        let certificate = try TLSCertificate(certificateFile: combined, keyFile: combined)
        #expect(certificate.names == ["a.test", "www.a.test"])
        #expect(certificate.chainLength == 1)
    }

    private func loadError(_ certificate: String, _ key: String) -> String {
        do {
            _ = try TLSCertificate(certificateFile: certificate, keyFile: key)
            return "no error"
        } catch {
            #expect(ERR_peek_error() == 0, "the error queue must be drained")
            return error.description
        }
    }

    @Test func missingFiles() {
        let missing = pki.path("missing.pem")
        #expect(loadError(missing, pki.key("a")) == "cannot read \(missing): No such file or directory")
        #expect(loadError(pki.certificate("a"), missing) == "cannot read \(missing): No such file or directory")
        #expect(loadError(pki.directory, pki.key("a")) == "cannot read \(pki.directory): Is a directory")
    }

    @Test func filesWithoutTheExpectedContent() {
        let keyOnly = pki.key("a")
        #expect(loadError(keyOnly, keyOnly) == "no certificate found in \(keyOnly)")
        let text = pki.path("text.txt")
        #expect(loadError(text, keyOnly) == "no certificate found in \(text)")
        let certOnly = pki.certificate("a")
        #expect(loadError(certOnly, certOnly) == "no private key found in \(certOnly)")
        let garbage = pki.path("garbage.pem")
        #expect(loadError(garbage, keyOnly).hasPrefix("cannot parse the certificate in \(garbage) ("))
        let encrypted = pki.path("encrypted.key")
        #expect(
            loadError(certOnly, encrypted) == "the private key in \(encrypted) is encrypted; store it without a passphrase")
    }

    @Test func keyMismatch() {
        let message = loadError(pki.certificate("a"), pki.path("other.key"))
        let other = pki.path("other.key")
        #expect(message.hasPrefix("key in \(other) does not match certificate in \(pki.certificate("a"))"))
        #expect(loadError(pki.certificate("a"), pki.key("b")).contains("does not match certificate in"))
    }

    @Test func contextNeedsACertificate() {
        #expect(throws: TLSError.self) { try TLSServerContext(defaultCertificate: nil, certificates: [], alpn: []) }
    }
}

@Suite struct TLSReloadAndResumptionTests {
    @Test func reloadSwapsCertificatesForNewHandshakesOnly() throws {
        let context = try standardContext()
        let (oldClient, oldServer, outcome, _) = try connect(context, .init(serverName: "a.test"))
        #expect(outcome == .established)
        #expect(oldClient.peerCommonName == "a.test")

        // Another connection is mid-handshake during the reload: it already has its certificate.
        let midClient = TestTLSClient(.init(serverName: "a.test"))
        let midServer = try TLSConnection(context: context)
        _ = midClient.handshakeStep()
        midServer.feedCiphertext(midClient.takeCiphertext().span.bytes)
        guard case .needMoreData = midServer.handshake() else { Issue.record("mid handshake"); return }

        try context.reload(defaultCertificate: pki.load("default"), certificates: [pki.load("a2")])

        let (newClient, _, newOutcome, _) = try connect(context, .init(serverName: "a.test", verifyHostName: true))
        #expect(newOutcome == .established)
        #expect(newClient.peerCommonName == "reloaded.a.test")
        #expect(newClient.verifiedOK)
        // b.test is gone from the new set: it now falls back to the default.
        let (bClient, _, _, _) = try connect(context, .init(serverName: "b.test"))
        #expect(bClient.peerCommonName == "default.test")

        #expect(runHandshake(midClient, midServer) == .established)
        #expect(midClient.peerCommonName == "a.test")

        // The connection made before the reload carries on both ways.
        oldClient.write(Array("still here".utf8))
        oldServer.feedCiphertext(oldClient.takeCiphertext().span.bytes)
        #expect(readAll(oldServer).bytes == Array("still here".utf8))
        #expect(try serverWrite(oldServer, Array("me too".utf8)).get() == 6)
        deliver(oldServer, to: oldClient)
        #expect(oldClient.read() == .data(Array("me too".utf8)))
    }

    @Test func failedReloadKeepsTheOldSet() throws {
        let context = try standardContext()
        #expect(throws: TLSError.self) { try context.reload(defaultCertificate: nil, certificates: []) }
        let (client, _, outcome, _) = try connect(context, .init(serverName: "b.test"))
        #expect(outcome == .established)
        #expect(client.peerCommonName == "b.test")
    }

    @Test(arguments: [TLS1_3_VERSION, TLS1_2_VERSION])
    func sessionTicketResumes(version: Int32) throws {
        let context = try standardContext()
        let (first, firstServer, outcome, _) = try connect(context, .init(serverName: "a.test", maxVersion: version))
        #expect(outcome == .established)
        #expect(!firstServer.sessionReused)
        let session = try #require(first.resumableSession())

        let (second, secondServer, outcome2, _) = try connect(
            context, .init(serverName: "a.test", maxVersion: version, session: session))
        #expect(outcome2 == .established)
        #expect(secondServer.sessionReused)
        #expect(second.sessionReused)
        #expect(secondServer.serverName == "a.test")

        // Tickets survive a reload: the ticket keys belong to the context, not the certificates.
        try context.reload(defaultCertificate: pki.load("default"), certificates: [pki.load("a2")])
        let (_, thirdServer, outcome3, _) = try connect(
            context, .init(serverName: "a.test", maxVersion: version, session: session))
        #expect(outcome3 == .established)
        #expect(thirdServer.sessionReused)

        // A different context (another listener, or a restart) cannot decrypt the ticket: full handshake.
        let (_, otherServer, outcome4, _) = try connect(
            try standardContext(), .init(serverName: "a.test", maxVersion: version, session: session))
        #expect(outcome4 == .established)
        #expect(!otherServer.sessionReused)
    }
}
