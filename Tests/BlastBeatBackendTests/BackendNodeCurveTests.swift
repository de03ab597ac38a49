import BlastBeatCore
import Testing

@testable import BlastBeatBackend

/// CURVE end to end against a libzmq ROUTER that is a CURVE server with a ZAP handler (the part of the
/// gateway that decides which node keys get in).
@Suite struct BackendNodeCurveTests {
    let server = TestKeyPair()
    let node = TestKeyPair()

    private func credentials(serverKey: [UInt8]? = nil) throws -> CurveCredentials {
        try CurveCredentials(
            secretCertificate: node.certificates.secret,
            serverKey: serverKey.map { Z85.encode($0) } ?? server.publicZ85)
    }

    /// A node with the right keys gets through: the handshake shows the gateway the node's own public key,
    /// and requests are answered as without CURVE.
    @Test func roundTrip() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let router = TestRouter(curveSecretKey: server.secretKey, allowedClientKeys: [node.publicKey])
        let curve = try CurveCredentials(
            curveKeyFile: directory.write("secure.key_secret", node.certificates.secret),
            serverKey: directory.write("gateway.key", server.certificates.public))
        let backend = try BackendNode(node: "secure", instance: .named("1"), endpoints: [router.endpoint], curve: curve)
        let thread = NodeThread(backend)
        defer { backend.stop() }

        let announcement = try #require(router.receive(timeoutMilliseconds: 2000))
        #expect(announcement == [bytes("secure#1"), [], bytes("pong"), bytes("credit")])
        #expect(router.zapRequests.count == 1)
        #expect(router.zapRequests.first?.mechanism == "CURVE")
        #expect(router.zapRequests.first?.clientKey == node.publicKey)
        let request = try Uwsgi.packet("GET /secret HTTP/1.1", "Host: h")
        #expect(router.send([bytes("secure#1"), sid(1), bytes("uwsgi"), request]))
        let reply = try #require(router.receive(timeoutMilliseconds: 2000))
        #expect(String(decoding: reply[3], as: UTF8.self) == "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n/secret")

        backend.stop()
        try thread.join()
    }

    /// A node whose server key is not the gateway's never gets a message through (the gateway cannot open
    /// its HELLO and hangs up, at every retry), while a node with the right key does on the same router.
    @Test func wrongServerKeyNeverGetsThrough() throws {
        let router = TestRouter(curveSecretKey: server.secretKey)
        let wrongKey = try credentials(serverKey: TestKeyPair().publicKey)
        let impostor = try BackendNode(identity: "secure", endpoints: [router.endpoint], curve: wrongKey)
        let impostorThread = NodeThread(impostor)
        defer { impostor.stop() }
        // libzmq retries every 100 ms at first: well over one attempt in this time.
        #expect(router.receive(timeoutMilliseconds: 1500) == nil)
        #expect(router.zapRequests.isEmpty)
        impostor.stop()
        try impostorThread.join()

        let good = try BackendNode(identity: "secure", endpoints: [router.endpoint], curve: try credentials())
        let goodThread = NodeThread(good)
        defer { good.stop() }
        #expect(router.receive(timeoutMilliseconds: 2000) == [bytes("secure"), [], bytes("pong"), bytes("credit")])
        good.stop()
        try goodThread.join()
    }

    /// Every connection of a node to a gateway with workers is a CURVE client with the node's keys: the
    /// gateway authenticates each one (here: one ZAP request per connection, each with the node's key).
    @Test func everyWorkerConnectionUsesTheKeys() throws {
        let router = TestRouter(
            curveSecretKey: server.secretKey, allowedClientKeys: [node.publicKey], metadata: "X-BlastBeat-Workers:3")
        let core = try NodeCore(identity: "secure", endpoints: [router.endpoint], curve: try credentials())
        defer { core.close() }
        let deadline = ContinuousClock.now + .seconds(3)
        var nextPing = ContinuousClock.now
        while (core.announcements < 3 || router.zapRequests.count < 3) && ContinuousClock.now < deadline {
            if ContinuousClock.now >= nextPing {
                router.send([bytes("secure"), [], bytes("ping"), []])
                nextPing = .now + .milliseconds(50)
            }
            try core.pump(handler: Recorder(), timeoutMilliseconds: 5)
            while router.receive(timeoutMilliseconds: 1) != nil {}
        }
        #expect(core.links(gateway: 0).count == 3 && core.announcements == 3)
        #expect(router.zapRequests.count == 3)
        #expect(router.zapRequests.allSatisfy { $0.mechanism == "CURVE" && $0.clientKey == node.publicKey })
    }

    /// The same, step by step: the node sees the failed handshakes, keeps retrying, and counts them.
    @Test func wrongServerKeyIsReportedAsAClosedHandshake() throws {
        let router = TestRouter(curveSecretKey: server.secretKey)
        let core = try NodeCore(
            identity: "secure", endpoints: [router.endpoint], curve: try credentials(serverKey: node.publicKey))
        defer { core.close() }
        let deadline = ContinuousClock.now + .seconds(2)
        while core.handshakeFailures < 2 && ContinuousClock.now < deadline {
            try core.pump(handler: Recorder(), timeoutMilliseconds: 5)
            #expect(router.receive(timeoutMilliseconds: 5) == nil)
        }
        #expect(core.handshakeFailures >= 2)
        // Named as the log names it (the failure's type is BlastBeatSystem's, which this target does not import).
        #expect("\(core.links[0])".contains("failing(the gateway closed the connection during the handshake"))
        #expect(core.announcements == 0 && core.reconnects == 0)  // libzmq retries this one by itself
    }

    /// A node without CURVE cannot talk to a CURVE gateway.
    @Test func plainNodeNeverGetsThrough() throws {
        let router = TestRouter(curveSecretKey: server.secretKey)
        let core = try NodeCore(identity: "secure", endpoints: [router.endpoint])
        defer { core.close() }
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline {
            try core.pump(handler: Recorder(), timeoutMilliseconds: 5)
            #expect(router.receive(timeoutMilliseconds: 5) == nil)
        }
        #expect("\(core.links[0])".contains("failing(the gateway uses a different security mechanism"))
        #expect(core.announcements == 0)
        #expect(core.handshakeFailures >= 1)
        #expect(router.zapRequests.isEmpty)
    }

    /// A gateway that does not (yet) list the node's key refuses it; libzmq would never try again, so the
    /// node connects anew after a delay and gets in once the key is allowed.
    @Test func refusedKeyIsRetriedUntilAllowed() throws {
        let router = TestRouter(curveSecretKey: server.secretKey, allowedClientKeys: [])
        let core = try NodeCore(identity: "secure", endpoints: [router.endpoint], curve: try credentials())
        defer { core.close() }
        func pump(until done: () -> Bool, seconds: Int) throws -> [[UInt8]]? {
            let deadline = ContinuousClock.now + .seconds(seconds)
            while !done() && ContinuousClock.now < deadline {
                try core.pump(handler: Recorder(), timeoutMilliseconds: 5)
                if let message = router.receive(timeoutMilliseconds: 5) { return message }
            }
            return nil
        }
        #expect(try pump(until: { core.handshakeFailures > 0 }, seconds: 2) == nil)
        #expect("\(core.links[0])".contains("failing(the gateway refused this node's key (status 400)"))
        #expect(router.zapRequests.map(\.clientKey) == [node.publicKey])

        // Refused again at the first retry (one second later), then allowed.
        #expect(try pump(until: { router.zapRequests.count >= 2 }, seconds: 3) == nil)
        #expect(core.reconnects == 1)
        router.allowedClientKeys = [node.publicKey]
        let announcement = try pump(until: { false }, seconds: 5)
        #expect(announcement == [bytes("secure"), [], bytes("pong"), bytes("credit")])
        #expect(core.links[0] == .awaitingWorkerCount && core.reconnects == 2)
    }
}
