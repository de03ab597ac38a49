import Glibc
import Testing

@testable import BlastBeatBackend

@Suite struct BackendNodeTests {
    @Test func validatesIdentityAndEndpoints() throws {
        let endpoints = ["tcp://127.0.0.1:1"]
        #expect(throws: BackendError.invalidIdentity) { try BackendNode(identity: "", endpoints: endpoints) }
        #expect(throws: BackendError.invalidIdentity) {
            try BackendNode(identity: String(repeating: "n", count: 256), endpoints: endpoints)
        }
        #expect(throws: BackendError.invalidIdentity) { try BackendNode(identity: "\u{0}x", endpoints: endpoints) }
        #expect(throws: BackendError.invalidEndpoint) { try BackendNode(identity: "n", endpoints: []) }
        #expect(throws: BackendError.invalidIdentity) {
            try BackendNode(node: "a#b", instance: .named("1"), endpoints: endpoints)
        }
        #expect(
            try BackendNode(identity: String(repeating: "n", count: 255), endpoints: endpoints).identity.count == 255)
        #expect(try BackendNode(node: "app", instance: .named("2"), endpoints: endpoints).identity == "app#2")
        #expect(try BackendNode(node: "app", instance: .plain, endpoints: endpoints).identity == "app")
    }

    /// Without an instance, each node draws `NAME#<pid>-<8 hex digits>`.
    @Test func uniqueInstanceByDefault() throws {
        let endpoints = ["tcp://127.0.0.1:1"]
        let identity = try BackendNode(node: "app", endpoints: endpoints).identity
        let prefix = "app#\(getpid())-"
        #expect(identity.hasPrefix(prefix), "\(identity)")
        let random = identity.dropFirst(prefix.count)
        #expect(random.count == 8 && random.allSatisfy { "0123456789abcdef".contains($0) }, "\(identity)")
        #expect(try BackendNode(node: "app", instance: .unique, endpoints: endpoints).identity != identity)
        // 32 random bits: 300 draws in one process (same pid) collide with odds of about 1 in 100,000.
        let suffixes = (0..<300).map { _ in BackendNode.uniqueInstanceSuffix() }
        #expect(Set(suffixes).count == suffixes.count)
    }

    @Test(arguments: [
        ("", BackendNode.Instance.unique, "invalid node name"),
        ("a#b", .unique, "invalid node name"),
        ("a#b", .plain, "invalid node name"),
        ("a#b", .named("1"), "invalid node name"),
        ("\u{0}a", .plain, "invalid node name"),
        ("app", .named(""), "empty instance name"),
        (String(repeating: "n", count: 239), .unique, "no room for a unique instance suffix"),
        (String(repeating: "n", count: 250), .named("123456"), "invalid node identity"),
    ])
    func refusesBadNamesAndInstances(node: String, instance: BackendNode.Instance, message: String) {
        #expect {
            try BackendNode(node: node, instance: instance, endpoints: ["tcp://127.0.0.1:1"])
        } throws: { error in
            (error as? BackendError) == .invalidIdentity && "\(error)".contains(message)
        }
    }

    /// The longest names that fit: 238 bytes with a unique suffix (at most 17 bytes), 255 for a plain identity.
    @Test func longestNodeNames() throws {
        let endpoints = ["tcp://127.0.0.1:1"]
        let unique = try BackendNode(node: String(repeating: "n", count: 238), endpoints: endpoints)
        #expect(unique.identity.utf8.count <= 255)
        let plain = try BackendNode(node: String(repeating: "n", count: 255), instance: .plain, endpoints: endpoints)
        #expect(plain.identity.utf8.count == 255)
    }

    /// The same program started twice adds capacity: two default nodes of one name connect side by side, each
    /// with its own identity, and each answers the requests sent to it.
    @Test func twoDefaultNodesServeSideBySide() throws {
        let router = TestRouter()
        let nodes = [
            try BackendNode(node: "twin", endpoints: [router.endpoint]),
            try BackendNode(node: "twin", endpoints: [router.endpoint]),
        ]
        let threads = nodes.map { NodeThread($0) }
        defer { for node in nodes { node.stop() } }
        var announced: Set<[UInt8]> = []
        while announced.count < 2, let announcement = router.receive(timeoutMilliseconds: 2000) {
            #expect(Array(announcement.dropFirst()) == [[], bytes("pong"), bytes("credit")])
            announced.insert(announcement[0])
        }
        #expect(announced == Set(nodes.map { bytes($0.identity) }))
        for (index, node) in nodes.enumerated() {
            let path = "/\(index)"
            let request = try Uwsgi.packet("GET \(path) HTTP/1.1", "Host: h")
            #expect(router.send([bytes(node.identity), sid(1), bytes("uwsgi"), request]))
            let reply = try #require(router.receive(timeoutMilliseconds: 2000))
            #expect(reply[0] == bytes(node.identity))
            #expect(String(decoding: reply[3], as: UTF8.self).hasSuffix("\r\n\r\n\(path)"))
        }
        for node in nodes { node.stop() }
        for thread in threads { try thread.join() }
    }

    @Test func refusedEndpointFailsRun() throws {
        let node = try BackendNode(identity: "n", endpoints: ["nonsense"])
        #expect(throws: BackendError.invalidEndpoint) { try node.run(handler: Quiet()) }
    }

    @Test func errorsCompareByKind() {
        #expect(BackendError.sessionEnded == BackendError.sessionEnded.with("other text"))
        #expect(BackendError.sessionEnded != BackendError.sendTimedOut)
        #expect(BackendError.invalidHeader.with("detail").description == "detail")
    }

    /// Serves a ROUTER from another thread while `run` blocks; `stop()` from outside ends it within 100 ms.
    @Test func runServesUntilStopped() throws {
        let router = TestRouter()
        let node = try BackendNode(identity: "runner", endpoints: [router.endpoint])
        let handler = Quiet()
        let thread = NodeThread(node)
        defer { node.stop() }  // on an early exit; the thread ends by itself then

        // The announcement (with credit, docs/PROTOCOL.md "Credit"), then a ping answered by the running loop.
        let announcement = try #require(router.receive(timeoutMilliseconds: 2000))
        #expect(announcement == [bytes("runner"), [], bytes("pong"), bytes("credit")])
        #expect(router.send([bytes("runner"), [], bytes("ping"), []]))
        let pong = try #require(router.receive(timeoutMilliseconds: 2000))
        #expect(pong == [bytes("runner"), [], bytes("pong"), []])
        // A request is answered by the handler.
        #expect(router.send([bytes("runner"), sid(1), bytes("uwsgi"), try Uwsgi.packet("GET /x HTTP/1.1", "Host: h")]))
        let reply = try #require(router.receive(timeoutMilliseconds: 2000))
        #expect(String(decoding: reply[3], as: UTF8.self) == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/x")
        // A second run at the same time is refused.
        #expect(throws: BackendError.alreadyRunning) { try node.run(handler: handler) }

        let stopped = ContinuousClock.now
        node.stop()
        try thread.join()
        #expect(ContinuousClock.now - stopped < .seconds(2))
    }
}

/// Answers every request with its path.
struct Quiet: BackendHandler, Sendable {
    func requestStarted(_ request: Request, session: Session) throws {
        try session.respond(body: request.path)
    }
}

extension TestRouter: @unchecked Sendable {}
