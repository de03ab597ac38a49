import Testing

@testable import BlastBeatBackend

/// The node against an in-process ROUTER that advertises a worker count: the labelled connections it opens
/// and closes. (A libzmq ROUTER ignores a second connection with the same identity, so what travels on the
/// extra connections is checked by Tests/SDKTests/test_sdk_swift_workers.py, whose stand-in hands
/// connections over as the gateway does.)
@Suite(.serialized) struct NodeCoreWorkersTests {
    /// Pumps the node while the router pings it (as a gateway does every ping-freq) until `done`.
    private func pump(
        _ core: NodeCore, _ router: TestRouter, identity: String, seconds: Int = 3, until done: () -> Bool
    ) throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var nextPing = ContinuousClock.now
        while !done() && ContinuousClock.now < deadline {
            if ContinuousClock.now >= nextPing {
                router.send([bytes(identity), [], bytes("ping"), []])
                nextPing = .now + .milliseconds(50)
            }
            try core.pump(handler: Recorder(), timeoutMilliseconds: 5)
            while router.receive() != nil {}
        }
    }

    @Test func opensAConnectionPerAdvertisedWorkerAndClosesThemWhenTheCountDrops() throws {
        var router: TestRouter? = TestRouter(metadata: "X-BlastBeat-Workers:3")
        let port = router!.port
        let core = try NodeCore(identity: "workers", endpoints: [router!.endpoint])
        defer { core.close() }
        try pump(core, router!, identity: "workers") { core.links(gateway: 0).count == 3 }
        #expect(core.links(gateway: 0).count == 3)
        #expect(core.workerConnectionsOpened == 2)
        // Each extra connection completes its handshake and announces itself (the router drops what
        // arrives on them: same identity).
        try pump(core, router!, identity: "workers") { core.announcements >= 3 }
        #expect(core.announcements >= 3)

        // The gateway restarts with 2 workers on the same endpoint.
        router = nil
        router = TestRouter(metadata: "X-BlastBeat-Workers:2", port: port)
        try pump(core, router!, identity: "workers", seconds: 5) { core.links(gateway: 0).count == 2 }
        #expect(core.links(gateway: 0).count == 2)
        #expect(core.workerConnectionsClosed == 1)
    }

    /// Each gateway endpoint gets its own set, as many as that gateway has workers.
    @Test func severalGatewaysEachGetTheirOwnSet() throws {
        let two = TestRouter(metadata: "X-BlastBeat-Workers:2")
        let three = TestRouter(metadata: "X-BlastBeat-Workers:3")
        let core = try NodeCore(identity: "both", endpoints: [two.endpoint, three.endpoint])
        defer { core.close() }
        let deadline = ContinuousClock.now + .seconds(3)
        var nextPing = ContinuousClock.now
        while (core.links(gateway: 0).count, core.links(gateway: 1).count) != (2, 3) && ContinuousClock.now < deadline {
            if ContinuousClock.now >= nextPing {
                for router in [two, three] { router.send([bytes("both"), [], bytes("ping"), []]) }
                nextPing = .now + .milliseconds(50)
            }
            try core.pump(handler: Recorder(), timeoutMilliseconds: 5)
            for router in [two, three] { while router.receive() != nil {} }
        }
        #expect(core.links(gateway: 0).count == 2 && core.links(gateway: 1).count == 3)
        #expect(core.workerConnectionsOpened == 3)
    }

    @Test func noPropertyKeepsOneConnection() throws {
        let router = TestRouter()
        let core = try NodeCore(identity: "single", endpoints: [router.endpoint])
        defer { core.close() }
        try pump(core, router, identity: "single") { core.pingsAnswered >= 3 }
        #expect(core.pingsAnswered >= 3)
        #expect(core.links(gateway: 0) == [.connected])
        #expect(core.workerConnectionsOpened == 0)
    }

    @Test func malformedCountChangesNothing() throws {
        let router = TestRouter(metadata: "X-BlastBeat-Workers:many")
        let core = try NodeCore(identity: "odd", endpoints: [router.endpoint])
        defer { core.close() }
        try pump(core, router, identity: "odd") { core.pingsAnswered >= 3 }
        #expect(core.pingsAnswered >= 3)
        #expect(core.links(gateway: 0).count == 1 && core.workerConnectionsOpened == 0)
    }
}
