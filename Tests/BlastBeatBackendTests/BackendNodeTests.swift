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
            try BackendNode(node: "a#b", instance: "1", endpoints: endpoints)
        }
        #expect(
            try BackendNode(identity: String(repeating: "n", count: 255), endpoints: endpoints).identity.count == 255)
        #expect(try BackendNode(node: "app", instance: "2", endpoints: endpoints).identity == "app#2")
        #expect(try BackendNode(node: "app", instance: nil, endpoints: endpoints).identity == "app")
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

        // The announcement, then a ping answered by the running loop.
        let announcement = try #require(router.receive(timeoutMilliseconds: 2000))
        #expect(announcement == [bytes("runner"), [], bytes("pong"), []])
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
