import BlastBeatCore
import BlastBeatSystem
import Glibc
import Testing

/// What a `BackendRouter` reported, copied out of the views (valid only during the calls).
private final class Recorder: BackendRouterDelegate {
    var received: [(identity: [UInt8], sid: [UInt8], type: BackendMessageType, body: [UInt8])] = []
    var malformed: [(identity: [UInt8], problem: String)] = []
    var admitted: [[UInt8]] = []
    var joined: [[UInt8]] = []
    var dropped: [String] = []
    /// What `backendRouterRecheck` answers, by identity (nil: still admitted).
    var recheck: [[UInt8]: (refusal: String?, busy: Bool)] = [:]

    func backendRouter(
        received type: BackendMessageType, sid: RawSpan, body: RawSpan, from identity: RawSpan, origin: BackendMessage.Origin
    ) {
        received.append((identity.copiedBytes, sid.copiedBytes, type, body.copiedBytes))
    }

    func backendRouter(forwardedFrom identity: RawSpan) {}  // these routers have no worker mesh
    func backendRouter(receivedMalformed problem: MalformedBackendMessage, identity: RawSpan) {
        switch problem {
        case .frameCount(let count): malformed.append((identity.copiedBytes, "\(count) frames"))
        case .unknownType(let type): malformed.append((identity.copiedBytes, "type " + String(decoding: type, as: UTF8.self)))
        }
    }

    func backendRouterAdmit(
        identity: RawSpan, key: CurveKey?, address: String, holder: BackendIdentityHolder?
    ) -> String? {
        admitted.append(identity.copiedBytes)
        return nil
    }

    func backendRouterPeerJoined(identity: RawSpan, address: String, replaced: BackendIdentityHolder?) {
        joined.append(identity.copiedBytes)
    }

    /// Joined at another worker (a router in the worker mesh): recorded as `worker N: IDENTITY`.
    var remoteJoined: [String] = []

    func backendRouterRemotePeerJoined(identity: RawSpan, worker: Int, replacedAt: Int?) {
        remoteJoined.append("worker \(worker): \(String(decoding: identity.copiedBytes, as: UTF8.self))")
    }

    func backendRouterDroppedPeer(identity: RawSpan, reason: String, host: String, protocolError: Bool) {
        dropped.append(reason)
    }

    /// Messages another worker sent past a connection's bound, as `worker N: QUEUED`.
    var droppedSends: [String] = []

    func backendRouter(droppedForwardedSendFrom worker: Int, identity: RawSpan, queuedBytes: Int) {
        droppedSends.append("worker \(worker): \(queuedBytes)")
    }

    /// Worker labels acted on (Gateway+Handover.swift in the gateway).
    var placements: [BackendPlacementEvent] = []

    func backendRouter(placement event: BackendPlacementEvent, identity: RawSpan) {
        placements.append(event)
    }

    func backendRouterRecheck(identity: RawSpan, key: CurveKey?) -> (refusal: String?, busy: Bool) {
        recheck[identity.copiedBytes] ?? (nil, false)
    }

    func backendRouterAdmitKey(_ key: CurveKey?, address: String) -> String? { nil }

    func backendRouterAllowsClaim(identity: RawSpan, key: CurveKey?) -> Bool { true }
}

/// The suites that drive libev's default loop (one per process): run one at a time, not in parallel.
@Suite(.serialized) enum OnTheEventLoop {}

/// Both engines through the one seam: a `BackendRouter` on an `ipc://` socket, driven by hand on the event
/// loop (as the gateway's loop would: run, then `receivePending` and `flush` before blocking), and a
/// libzmq DEALER as the backend.
extension OnTheEventLoop {
@Suite struct BackendRouterTests {
    static let sid: [UInt8] = Array(0..<16)

    /// Runs the loop until `done` holds or 5 s pass.
    static func run(_ loop: EventLoop, _ router: BackendRouter, until done: () -> Bool) -> Bool {
        run(loop, [router], until: done)
    }

    /// The same for several routers on one loop (workers joined by a mesh).
    static func run(_ loop: EventLoop, _ routers: [BackendRouter], until done: () -> Bool) -> Bool {
        for _ in 0..<5000 {
            loop.runReady()
            for router in routers {
                router.receivePending()
                router.flush()
            }
            if done() { return true }
            usleep(1000)
        }
        return false
    }

    /// The dealer's next message as (sid, type, body), waiting up to 5 s while the router flushes.
    static func next(_ dealer: ZMQDealer, _ loop: EventLoop, _ router: BackendRouter) -> ([UInt8], String, [UInt8])? {
        var got: ([UInt8], String, [UInt8])? = nil
        _ = run(loop, router) {
            if case .message(let m) = dealer.receive() {
                got = (Array(m.sid), String(decoding: m.type, as: UTF8.self), Array(m.body))
            }
            return got != nil
        }
        return got
    }

    /// After a reload (native engine): a connection the delegate no longer admits is closed, at once when it is
    /// idle, and only when asked `evenBusy` while it has requests in flight; admitted ones stay.
    @Test func recheckClosesRefusedConnectionsOnceTheyAreIdle() throws {
        let endpoint = "ipc:///tmp/blastbeat-recheck-test-\(getpid()).sock"
        let loop = EventLoop()
        let recorder = Recorder()
        let router = try BackendRouter(
            loop: loop, endpoint: endpoint, engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: recorder)
        defer { router.close() }
        let kept = try ZMQDealer(identity: Array("kept".utf8), endpoint: endpoint)
        defer { kept.close() }
        let busy = try ZMQDealer(identity: Array("busy".utf8), endpoint: endpoint)
        defer { busy.close() }
        let idle = try ZMQDealer(identity: Array("idle".utf8), endpoint: endpoint)
        defer { idle.close() }
        #expect(Self.run(loop, router) { recorder.joined.count == 3 })
        recorder.recheck[Array("busy".utf8)] = ("revoked", true)
        recorder.recheck[Array("idle".utf8)] = ("revoked", false)
        #expect(router.recheckConnectedPeers(evenBusy: false) == 1)
        #expect(recorder.dropped == ["no longer admitted after a reload: revoked"])
        #expect(router.recheckConnectedPeers(evenBusy: true) == 0)
        #expect(recorder.dropped.count == 2)
        #expect(router.recheckConnectedPeers(evenBusy: true) == 0)
        #expect(recorder.dropped.count == 2, "only the refused connections close, each once")
        // The admitted one still gets messages.
        let sent = Array("kept".utf8).withUnsafeBytes { to in
            Self.sid.withUnsafeBytes { sid in
                Array("still here".utf8).withUnsafeBytes { try? router.send(to: to, sid: sid, type: "body", body: .copying($0)) }
            }
        }
        #expect(sent == .sent)
        #expect(Self.next(kept, loop, router)?.2 == Array("still here".utf8))
    }

    @Test(arguments: [Configuration.ZMQEngine.native, .libzmq])
    func sendAndReceiveThroughTheSeam(engine: Configuration.ZMQEngine) throws {
        let endpoint = "ipc:///tmp/blastbeat-router-test-\(getpid())-\(engine).sock"
        let loop = EventLoop()
        let recorder = Recorder()
        let router = try BackendRouter(
            loop: loop, endpoint: endpoint, engine: engine, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: recorder)
        defer { router.close() }
        let dealer = try ZMQDealer(identity: Array("node1".utf8), endpoint: endpoint)
        defer { dealer.close() }
        let identity = Array("node1".utf8)

        // Backend → gateway: a typed message, then one of a type no backend may send.
        _ = try Self.sid.withUnsafeBytes { sid in
            try Array("hello".utf8).withUnsafeBytes { try dealer.send(sid: sid, type: "body", body: $0) }
        }
        #expect(Self.run(loop, router) { !recorder.received.isEmpty })
        #expect(recorder.received.first?.identity == identity)
        #expect(recorder.received.first?.sid == Self.sid)
        #expect(recorder.received.first?.type == .body)
        #expect(recorder.received.first?.body == Array("hello".utf8))
        if engine == .native {
            #expect(recorder.admitted == [identity] && recorder.joined == [identity])
        }
        _ = try Self.sid.withUnsafeBytes { sid in
            try [UInt8]().withUnsafeBytes { try dealer.send(sid: sid, type: "bogus", body: $0) }
        }
        #expect(Self.run(loop, router) { !recorder.malformed.isEmpty })
        #expect(recorder.malformed.first?.identity == identity)
        #expect(recorder.malformed.first?.problem == "type bogus")

        // Gateway → backend: copied bytes, then a counted body the router takes over.
        let sent = identity.withUnsafeBytes { to in
            Self.sid.withUnsafeBytes { sid in
                Array("uwsgi packet".utf8).withUnsafeBytes { try? router.send(to: to, sid: sid, type: "uwsgi", body: .copying($0)) }
            }
        }
        #expect(sent == .sent)
        let first = Self.next(dealer, loop, router)
        #expect(first?.0 == Self.sid && first?.1 == "uwsgi" && first?.2 == Array("uwsgi packet".utf8))

        let meter = NodeQueueMeter()
        let large = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let counted = identity.withUnsafeBytes { to in
            Self.sid.withUnsafeBytes { sid in
                large.withUnsafeBytes { bytes in
                    try? router.send(to: to, sid: sid, type: "body", body: .counted(CountedBody(copying: bytes.bytes, meter: meter)!))
                }
            }
        }
        #expect(counted == .sent)
        let second = Self.next(dealer, loop, router)
        #expect(second?.1 == "body" && second?.2 == large)
        // Written (native) or freed by libzmq's I/O thread: off the meter either way.
        #expect(Self.run(loop, router) { meter.queuedBytes == 0 })

        // An identity nobody holds: refused, and the counted body freed at once.
        let unknown = Array("nobody".utf8).withUnsafeBytes { to in
            Self.sid.withUnsafeBytes { sid in
                large.withUnsafeBytes { bytes in
                    try? router.send(to: to, sid: sid, type: "body", body: .counted(CountedBody(copying: bytes.bytes, meter: meter)!))
                }
            }
        }
        #expect(unknown == .unreachable)
        #expect(meter.queuedBytes == 0)
    }
}
}

/// Answers a worker's metrics query with `text` and records the answers it gets.
private final class MetricsRecorder: WorkerMeshDelegate {
    let text: String
    var answers: [String] = []
    init(text: String) { self.text = text }
    func workerMeshMetricsText() -> [UInt8] { Array(text.utf8) }
    func workerMesh(metrics: RawSpan, from worker: Int, query: UInt64) {
        answers.append("\(query) from \(worker): \(String(decoding: metrics.copiedBytes, as: UTF8.self))")
    }
}

extension OnTheEventLoop {
/// Two native routers joined as workers 0 and 1 by a socket pair (WorkerMesh.swift), one DEALER connected to
/// worker 0: worker 1 learns of it, its sends reach the DEALER through worker 0, the answers to its sids come
/// back to it (and only to it), a pong reaches both, and the DEALER's leaving reaches worker 1.
@Suite struct WorkerMeshTests {
    /// A raw client on a Unix socket (non-blocking), connected to `path`.
    static func connectUnix(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        precondition(connected == 0, "connect failed")
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    /// A connection labelled for worker 1 that worker 0 accepts is handed to worker 1 with the message that came
    /// in the same write as its READY; worker 1 admits it (worker 0 never does), reads that message, and what it
    /// sends follows the gateway's greeting and READY (which says 2 workers) on the one connection.
    @Test func aConnectionLabelledForTheOtherWorkerIsHandedOverWithWhatItSent() throws {
        let loop = EventLoop()
        let (zero, one) = (Recorder(), Recorder())
        let path = "/tmp/blastbeat-handover-test-\(getpid()).sock"
        let first = try BackendRouter(
            loop: loop, endpoint: "ipc://" + path, engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: zero)
        defer { first.close() }
        let second = try BackendRouter(
            loop: loop, endpoint: "ipc://" + path + "-1", engine: .native, maxMessageSize: 1 << 20,
            maxQueuedBytes: 1 << 22, curveKeys: nil, delegate: one)
        defer { second.close() }
        let (a, b) = try ParentProcess.socketPair()
        let (metricsZero, metricsOne) = (MetricsRecorder(text: "zero"), MetricsRecorder(text: "one"))  // held: the mesh does not
        first.joinWorkers(index: 0, count: 2, links: [1: a], delegate: metricsZero)
        second.joinWorkers(index: 1, count: 2, links: [0: b], delegate: metricsOne)
        defer { withExtendedLifetime((metricsZero, metricsOne)) {} }
        func run(until done: () -> Bool) -> Bool { BackendRouterTests.run(loop, [first, second], until: done) }

        let client = Self.connectUnix(path)
        defer { close(client) }
        let ready = ZMTPPeerTests.frame(
            [5] + Array("READY".utf8) + ZMTPPeerTests.property("Socket-Type", Array("DEALER".utf8))
                + ZMTPPeerTests.property("Identity", Array("node1".utf8))
                + ZMTPPeerTests.property("X-BlastBeat-Worker", Array("1".utf8)),
            command: true)
        let pong = ZMTPPeerTests.frame([], more: true) + ZMTPPeerTests.frame(Array("pong".utf8), more: true)
            + ZMTPPeerTests.frame(Array("credit".utf8))
        let hello = ZMTPGreeting.bytes(.null) + ready + pong
        #expect(hello.withUnsafeBytes { write(client, $0.baseAddress, $0.count) } == hello.count)

        #expect(run { one.joined == [Array("node1".utf8)] && one.received.count == 1 })
        #expect(one.received.first?.type == .pong && one.received.first?.body == Array("credit".utf8))
        #expect(zero.admitted.isEmpty && zero.joined.isEmpty, "worker 0 never registers the identity")
        #expect(run { zero.remoteJoined == ["worker 1: node1"] })
        guard case .handedOver(to: 1)? = zero.placements.first, zero.placements.count == 1 else {
            Issue.record("worker 0 reported \(zero.placements)")
            return
        }
        #expect(one.placements.isEmpty)

        // Worker 1 sends on the connection it now holds.
        let sid: [UInt8] = [1] + Array(1..<16)
        let sent = Array("node1".utf8).withUnsafeBytes { to in
            sid.withUnsafeBytes { s in Array("hi".utf8).withUnsafeBytes { try? second.send(to: to, sid: s, type: "body", body: .copying($0)) } }
        }
        #expect(sent == .sent)
        let expected = ZMTPGreeting.bytes(.null) + ZMTPCommand.routerReadyFrame(workers: 2)
            + ZMTPPeerTests.frame(sid, more: true) + ZMTPPeerTests.frame(Array("body".utf8), more: true)
            + ZMTPPeerTests.frame(Array("hi".utf8))
        var got: [UInt8] = []
        #expect(run {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if n > 0 { got += chunk[0..<n] }
            return got.count >= expected.count
        })
        #expect(got == expected)
    }

    @Test func aBackendConnectedToOneWorkerServesTheOther() throws {
        let loop = EventLoop()
        let (zero, one) = (Recorder(), Recorder())
        let endpoint = "ipc:///tmp/blastbeat-mesh-test-\(getpid()).sock"
        let first = try BackendRouter(
            loop: loop, endpoint: endpoint, engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: zero)
        defer { first.close() }
        let second = try BackendRouter(
            loop: loop, endpoint: endpoint + "-1", engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: one)
        defer { second.close() }
        let (a, b) = try ParentProcess.socketPair()
        let (metricsZero, metricsOne) = (MetricsRecorder(text: "zero"), MetricsRecorder(text: "one"))
        first.joinWorkers(index: 0, count: 2, links: [1: a], delegate: metricsZero)
        second.joinWorkers(index: 1, count: 2, links: [0: b], delegate: metricsOne)
        func run(until done: () -> Bool) -> Bool { BackendRouterTests.run(loop, [first, second], until: done) }
        let dealer = try ZMQDealer(identity: Array("node1".utf8), endpoint: endpoint)
        var dealerOpen = true
        defer { if dealerOpen { dealer.close() } }
        #expect(run { zero.joined.count == 1 && one.remoteJoined == ["worker 0: node1"] })

        // Worker 1's sid (first byte 1) goes out through worker 0 and its answer comes back to worker 1 only.
        let sid: [UInt8] = [1] + Array(1..<16)
        let sent = Array("node1".utf8).withUnsafeBytes { to in
            sid.withUnsafeBytes { s in Array("hi".utf8).withUnsafeBytes { try? second.send(to: to, sid: s, type: "body", body: .copying($0)) } }
        }
        #expect(sent == .sent)
        var got: ([UInt8], String, [UInt8])? = nil
        #expect(run {
            if case .message(let m) = dealer.receive() { got = (Array(m.sid), String(decoding: m.type, as: UTF8.self), Array(m.body)) }
            return got != nil
        })
        #expect(got?.0 == sid && got?.1 == "body" && got?.2 == Array("hi".utf8))
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        _ = try sid.withUnsafeBytes { try dealer.send(sid: $0, type: "end", body: empty) }
        _ = try dealer.send(sid: empty, type: "pong", body: empty)
        #expect(run { one.received.count == 2 && zero.received.count == 1 })
        #expect(one.received.map(\.type) == [.end, .pong] && one.received[0].sid == sid)
        #expect(zero.received.map(\.type) == [.pong], "worker 0 gets the pong, not worker 1's answer")

        // A scrape at worker 1 asks worker 0 for its text.
        #expect(second.queryWorkerMetrics(7) == 1)
        #expect(run { metricsOne.answers == ["7 from 0: zero"] })

        // The DEALER leaves: worker 1 is told, as of a connection of its own.
        dealer.close()
        dealerOpen = false
        #expect(run { one.dropped.contains("its connection to worker 0 closed") })
        let unreachable = Array("node1".utf8).withUnsafeBytes { to in
            sid.withUnsafeBytes { s in try? second.send(to: to, sid: s, type: "end", body: .copying(UnsafeRawBufferPointer(start: nil, count: 0))) }
        }
        #expect(unreachable == .unreachable)

        // A restarted process of the same identity that reaches the other worker: unlabelled, it is handed to
        // the identity's home worker (WorkerLabel.home: worker 0 for "node1") and takes over there from the old
        // connection, as in one process, instead of becoming a second holder at worker 1.
        let old = try ZMQDealer(identity: Array("node1".utf8), endpoint: endpoint)
        #expect(run { zero.joined.count == 2 })
        let restarted = try ZMQDealer(identity: Array("node1".utf8), endpoint: endpoint + "-1")
        defer { restarted.close() }
        #expect(run { zero.joined.count == 3 }, "adopted at worker 0")
        #expect(one.joined.isEmpty, "never admitted at worker 1")
        old.close()
        let sidZero: [UInt8] = [0] + Array(1..<16)
        let relayed = Array("node1".utf8).withUnsafeBytes { to in
            sidZero.withUnsafeBytes { s in try? first.send(to: to, sid: s, type: "end", body: .copying(UnsafeRawBufferPointer(start: nil, count: 0))) }
        }
        #expect(relayed == .sent)
        var received: [UInt8]? = nil
        #expect(run {
            if case .message(let m) = restarted.receive() { received = Array(m.sid) }
            return received != nil
        })
        #expect(received == sidZero)
    }

    /// A worker that ignores the holder's "queue full" (`F`) and goes on sending to a backend that reads nothing:
    /// past twice the connection's limit its messages are dropped, counted and reported, and the holder's memory
    /// for that connection stays bounded. The other worker is played by the test, writing `S` messages on its
    /// end of the link.
    @Test func sendsOfAWorkerThatIgnoresQueueFullAreDroppedAndCountedPastTwiceTheLimit() throws {
        let loop = EventLoop()
        let zero = Recorder()
        let path = "/tmp/blastbeat-mesh-drop-\(getpid()).sock"
        let limit = 1 << 16
        let holder = try BackendRouter(
            loop: loop, endpoint: "ipc://" + path, engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: limit,
            curveKeys: nil, delegate: zero)
        defer { holder.close() }
        let (a, b) = try ParentProcess.socketPair()
        defer { close(b) }
        let metrics = MetricsRecorder(text: "zero")
        holder.joinWorkers(index: 0, count: 2, links: [1: a], delegate: metrics)
        defer { withExtendedLifetime(metrics) {} }

        // A backend ("node1": its home worker is 0, so it stays) that completes its handshake and never reads.
        let client = Self.connectUnix(path)
        defer { close(client) }
        let ready = ZMTPPeerTests.frame(
            [5] + Array("READY".utf8) + ZMTPPeerTests.property("Socket-Type", Array("DEALER".utf8))
                + ZMTPPeerTests.property("Identity", Array("node1".utf8)),
            command: true)
        let hello = ZMTPGreeting.bytes(.null) + ready
        #expect(hello.withUnsafeBytes { write(client, $0.baseAddress, $0.count) } == hello.count)
        #expect(BackendRouterTests.run(loop, holder) { zero.joined == [Array("node1".utf8)] })

        // Worker 1's messages: 64 of 16 KiB, 1 MiB, far past what the socket and twice the limit hold.
        let identity = Array("node1".utf8)
        let sid: [UInt8] = [1] + Array(1..<16)
        let type = Array("body".utf8)
        let body = [UInt8](repeating: 0x61, count: 16 * 1024)
        var message = [UInt8](repeating: 0, count: WorkerMessage.headerSize(identity: identity.count, sid: sid.count, type: type.count))
        identity.withUnsafeBytes { i in
            sid.withUnsafeBytes { s in
                type.withUnsafeBytes { t in
                    message.withUnsafeMutableBytes {
                        WorkerMessage.encodeHeader(kind: .send, identity: i, sid: s, type: t, bodyCount: body.count, into: $0.baseAddress!)
                    }
                }
            }
        }
        message += body
        _ = fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK)
        var written = 0
        let all = 64 * message.count
        #expect(BackendRouterTests.run(loop, holder) {
            while written < all {
                let at = written % message.count
                let n = message.withUnsafeBytes { write(b, $0.baseAddress! + at, $0.count - at) }
                if n <= 0 { break }
                written += n
            }
            return written == all && !zero.droppedSends.isEmpty && holder.workerMeshDroppedSends == zero.droppedSends.count
                && holder.workerMeshDroppedSends >= 64 - (2 * limit + 512 * 1024) / body.count
        })
        #expect(zero.droppedSends.allSatisfy { $0.hasPrefix("worker 1: ") })
        #expect(zero.received.isEmpty && zero.dropped.isEmpty, "the backend's connection stays")
    }

    /// Two workers joined by a mesh, a DEALER connected to worker 0 (found by both): the routers, the recorders,
    /// the DEALER, and a loop runner. The caller closes the DEALER and the routers.
    private static func meshWithOneBackend(_ name: String) throws -> (
        loop: EventLoop, first: BackendRouter, second: BackendRouter, zero: Recorder, one: Recorder, dealer: ZMQDealer,
        delegates: (MetricsRecorder, MetricsRecorder)
    ) {
        let loop = EventLoop()
        let (zero, one) = (Recorder(), Recorder())
        let endpoint = "ipc:///tmp/blastbeat-\(name)-\(getpid()).sock"
        let first = try BackendRouter(
            loop: loop, endpoint: endpoint, engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: zero)
        let second = try BackendRouter(
            loop: loop, endpoint: endpoint + "-1", engine: .native, maxMessageSize: 1 << 20, maxQueuedBytes: 1 << 22,
            curveKeys: nil, delegate: one)
        let (a, b) = try ParentProcess.socketPair()
        let delegates = (MetricsRecorder(text: "zero"), MetricsRecorder(text: "one"))
        first.joinWorkers(index: 0, count: 2, links: [1: a], delegate: delegates.0)
        second.joinWorkers(index: 1, count: 2, links: [0: b], delegate: delegates.1)
        let dealer = try ZMQDealer(identity: Array("node1".utf8), endpoint: endpoint)
        #expect(BackendRouterTests.run(loop, [first, second]) { zero.joined.count == 1 && one.remoteJoined == ["worker 0: node1"] })
        return (loop, first, second, zero, one, dealer, delegates)
    }

    /// Credit across the mesh (docs/PROTOCOL.md, "Credit"): only the holder acknowledges; a request another
    /// worker sends uncredited to the acknowledged connection is followed by the largest grant, a credited one
    /// is not.
    @Test func anUncreditedRequestThroughTheHolderOfAnAcknowledgedConnectionGetsTheLargestGrant() throws {
        let mesh = try Self.meshWithOneBackend("mesh-credit")
        defer { mesh.dealer.close(); mesh.first.close(); mesh.second.close(); withExtendedLifetime(mesh.delegates) {} }
        let node = Array("node1".utf8)
        #expect(try mesh.second.acknowledgeCredit(identity: node.span.bytes) == .unreachable)
        #expect(try mesh.first.acknowledgeCredit(identity: node.span.bytes) == .sent)
        func next() -> ([UInt8], String, [UInt8])? {
            var got: ([UInt8], String, [UInt8])? = nil
            _ = BackendRouterTests.run(mesh.loop, [mesh.first, mesh.second]) {
                if case .message(let m) = mesh.dealer.receive() {
                    got = (Array(m.sid), String(decoding: m.type, as: UTF8.self), Array(m.body))
                }
                return got != nil
            }
            return got
        }
        let ack = next()
        #expect(ack?.0 == [] && ack?.1 == "credit" && ack?.2 == [])
        let uncredited: [UInt8] = [1] + Array(1..<16)
        let credited: [UInt8] = [1] + Array(2..<17)
        let packet = Array("env".utf8)
        for (sid, isCredited) in [(uncredited, false), (credited, true)] {
            let sent = try node.withUnsafeBytes { to in
                try sid.withUnsafeBytes { s in
                    try packet.withUnsafeBytes { try mesh.second.sendRequest(to: to, sid: s, body: .copying($0), credited: isCredited) }
                }
            }
            #expect(sent == .sent)
        }
        let end = try node.withUnsafeBytes { to in
            try credited.withUnsafeBytes { s in
                try mesh.second.send(to: to, sid: s, type: "end", body: .copying(UnsafeRawBufferPointer(start: nil, count: 0)))
            }
        }
        #expect(end == .sent)
        let messages = (0..<4).compactMap { _ in next() }
        #expect(messages.map(\.0) == [uncredited, uncredited, credited, credited])
        #expect(messages.map(\.1) == ["uwsgi", "credit", "uwsgi", "end"])
        #expect(messages[1].2 == [0xFF, 0xFF, 0xFF, 0xFF])
    }

    /// The budget across the mesh: worker 1 pausing a backend held by worker 0 stops worker 0 reading it (`P`);
    /// the messages wait in the connection, none is lost, and they arrive in order once worker 1 resumes (`C`).
    @Test func aPauseByTheOtherWorkerHoldsTheConnectionAtItsHolder() throws {
        let mesh = try Self.meshWithOneBackend("mesh-pause")
        defer { mesh.first.close(); mesh.second.close(); withExtendedLifetime(mesh.delegates) {} }
        let node = Array("node1".utf8)
        #expect(mesh.second.pauseReading(identity: node.span.bytes) == .connection)
        var turns = 0
        _ = BackendRouterTests.run(mesh.loop, [mesh.first, mesh.second]) {
            turns += 1
            return turns == 50
        }
        let sid: [UInt8] = [1] + Array(1..<16)
        for i in 0..<3 {
            _ = try sid.withUnsafeBytes { s in try [UInt8(i)].withUnsafeBytes { try mesh.dealer.send(sid: s, type: "body", body: $0) } }
        }
        turns = 0
        _ = BackendRouterTests.run(mesh.loop, [mesh.first, mesh.second]) {
            turns += 1
            return turns == 100
        }
        #expect(mesh.one.received.isEmpty && mesh.zero.received.isEmpty, "held at worker 0 for worker 1")
        mesh.second.resumeReading(identity: node.span.bytes)
        #expect(BackendRouterTests.run(mesh.loop, [mesh.first, mesh.second]) { mesh.one.received.count == 3 })
        #expect(mesh.one.received.map(\.body) == [[0], [1], [2]])
        #expect(mesh.zero.received.isEmpty)
        mesh.dealer.close()
    }
}
}

extension RawSpan {
    /// The bytes the delegate was lent, kept for the expectations.
    var copiedBytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
