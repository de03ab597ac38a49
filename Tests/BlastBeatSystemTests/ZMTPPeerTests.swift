import BlastBeatCore
import BlastBeatSystem
import Glibc
import Testing

/// The native engine's framing and handshake states (ZMTPPeer) against a peer written byte by byte here:
/// greeting and READY in pieces, commands between the frames of a message, malformed messages, and a
/// frame too large for a connection still in its handshake.
extension OnTheEventLoop {
@Suite struct ZMTPPeerTests {
    /// A ZMTP frame: flags, short or long size, body.
    static func frame(_ body: [UInt8], more: Bool = false, command: Bool = false) -> [UInt8] {
        var flags: UInt8 = (more ? 0x01 : 0) | (command ? 0x04 : 0)
        if body.count > 255 {
            flags |= 0x02
            return [flags] + (0..<8).map { UInt8(truncatingIfNeeded: UInt64(body.count) >> (56 - 8 * $0)) } + body
        }
        return [flags, UInt8(body.count)] + body
    }

    static func property(_ name: String, _ value: [UInt8]) -> [UInt8] {
        [UInt8(name.utf8.count)] + Array(name.utf8) + [0, 0, 0, UInt8(value.count)] + value
    }

    static let ready = frame(
        [5] + Array("READY".utf8) + property("Socket-Type", Array("DEALER".utf8)) + property("Identity", Array("node1".utf8)),
        command: true)

    /// A router on a fresh Unix socket, and a connected raw client socket.
    final class Harness {
        let loop = EventLoop()
        let recorder = PeerRecorder()
        let router: BackendRouter
        let client: Int32

        init() throws {
            let path = "/tmp/blastbeat-peer-test-\(getpid()).sock"
            router = try BackendRouter(
                loop: loop, endpoint: "ipc://" + path, engine: .native, maxMessageSize: 1 << 16, maxQueuedBytes: 1 << 20,
                curveKeys: nil, delegate: recorder)
            client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            precondition(connected == 0, "connect failed")
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
        }

        deinit {
            close(client)
            router.close()
        }

        /// Sends `bytes` in pieces of `piece` bytes, letting the router read after each.
        func send(_ bytes: [UInt8], piece: Int = 1) {
            var at = 0
            while at < bytes.count {
                let end = min(at + piece, bytes.count)
                let n = bytes[at..<end].withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                precondition(n == end - at, "short write in a test")
                at = end
                turn()
            }
        }

        /// One loop turn as the gateway makes it: handle what is ready, then flush before blocking.
        func turn() {
            usleep(200)
            loop.runReady()
            router.receivePending()
            router.flush()
        }

        func run(until done: () -> Bool) -> Bool {
            for _ in 0..<2000 {
                turn()
                if done() { return true }
                usleep(1000)
            }
            return false
        }

        /// What the router wrote so far; nil once it has closed the connection (and nothing is left).
        func readAvailable() -> [UInt8]? {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                if n > 0 {
                    bytes += chunk[0..<n]
                    continue
                }
                return n == 0 && bytes.isEmpty ? nil : bytes
            }
        }
    }

    final class PeerRecorder: BackendRouterDelegate {
        var received: [(sid: [UInt8], type: BackendMessageType, body: [UInt8])] = []
        var malformed: [String] = []
        var joined = 0
        var dropped: [(reason: String, protocolError: Bool)] = []

        func backendRouter(
            received type: BackendMessageType, sid: RawSpan, body: RawSpan, from identity: RawSpan, origin: BackendMessage.Origin
        ) {
            received.append((sid.copiedBytes, type, body.copiedBytes))
        }
        func backendRouter(forwardedFrom identity: RawSpan) {}  // these routers have no worker mesh
        func backendRouter(receivedMalformed problem: MalformedBackendMessage, identity: RawSpan) {
            switch problem {
            case .frameCount(let count): malformed.append("\(count) frames")
            case .unknownType(let type): malformed.append("type " + String(decoding: type, as: UTF8.self))
            }
        }
        func backendRouterAdmit(
            identity: RawSpan, key: CurveKey?, address: String, holder: BackendIdentityHolder?
        ) -> String? { identity.copiedBytes == Array("node1".utf8) ? nil : "unknown" }
        func backendRouterRecheck(identity: RawSpan, key: CurveKey?) -> (refusal: String?, busy: Bool) {
            (nil, false)
        }
        func backendRouterPeerJoined(identity: RawSpan, address: String, replaced: BackendIdentityHolder?) {
            joined += 1
        }
        func backendRouterRemotePeerJoined(identity: RawSpan, worker: Int, replacedAt: Int?) {
            joined += 1
        }
        func backendRouterDroppedPeer(identity: RawSpan, reason: String, host: String, protocolError: Bool) {
            dropped.append((reason, protocolError))
        }
        func backendRouter(droppedForwardedSendFrom worker: Int, identity: RawSpan, queuedBytes: Int) {}
        var placements: [BackendPlacementEvent] = []
        func backendRouter(placement event: BackendPlacementEvent, identity: RawSpan) { placements.append(event) }
        func backendRouterAdmitKey(_ key: CurveKey?, address: String) -> String? { nil }
        func backendRouterAllowsClaim(identity: RawSpan, key: CurveKey?) -> Bool { true }
    }

    @Test func aMessageArrivingByteByByteWithAPingBetweenItsFramesIsDeliveredWhole() throws {
        let h = try Harness()
        h.send(ZMTPGreeting.bytes(.null) + Self.ready)
        #expect(h.recorder.joined == 1)

        let sid: [UInt8] = Array(100..<116)
        let ping = Self.frame([4] + Array("PING".utf8) + [0, 10] + Array("ctx".utf8), command: true)
        h.send(Self.frame(sid, more: true) + ping + Self.frame(Array("body".utf8), more: true) + Self.frame(Array("hi".utf8)))
        #expect(h.recorder.received.count == 1)
        #expect(h.recorder.received.first?.sid == sid)
        #expect(h.recorder.received.first?.type == .body)
        #expect(h.recorder.received.first?.body == Array("hi".utf8))

        // Our greeting, our READY, then the PONG with the PING's context.
        let output = h.readAvailable() ?? []
        #expect(output.count > ZMTPGreeting.size)
        #expect(Array(output.prefix(10)) == Array(ZMTPGreeting.bytes(.null).prefix(10)))
        let pong = Self.frame([4] + Array("PONG".utf8) + Array("ctx".utf8), command: true)
        #expect(Array(output.suffix(pong.count)) == pong)
        #expect(h.recorder.dropped.isEmpty)
    }

    @Test func wrongFrameCountsAndTypesAreReportedAndTheConnectionStays() throws {
        let h = try Harness()
        h.send(ZMTPGreeting.bytes(.null) + Self.ready, piece: 1000)
        h.send(Self.frame([1], more: true) + Self.frame(Array("body".utf8)), piece: 1000)
        h.send(Self.frame([1], more: true) + Self.frame(Array("BODY".utf8), more: true) + Self.frame([]), piece: 1000)
        h.send(Self.frame([2], more: true) + Self.frame(Array("end".utf8), more: true) + Self.frame([]), piece: 1000)
        #expect(h.run { h.recorder.received.count == 1 })
        #expect(h.recorder.malformed == ["3 frames", "type BODY"])
        #expect(h.recorder.received.first?.type == .end)
        #expect(h.recorder.dropped.isEmpty)
    }

    @Test func aLargeFrameBeforeTheHandshakeEndsClosesTheConnection() throws {
        let h = try Harness()
        h.send(ZMTPGreeting.bytes(.null), piece: 64)
        h.send(Array(Self.frame([UInt8](repeating: 0, count: 5000), command: true).prefix(9)))
        #expect(h.run { !h.recorder.dropped.isEmpty })
        #expect(h.recorder.dropped.first?.protocolError == true)
        #expect(h.recorder.dropped.first?.reason.contains("before the handshake") == true)
        #expect(h.recorder.joined == 0)
        _ = h.readAvailable()
        #expect(h.run { h.readAvailable() == nil }, "the router closes the connection")
    }

    @Test func aRefusedIdentityGetsAnErrorAndNoConnection() throws {
        let h = try Harness()
        let stranger = Self.frame(
            [5] + Array("READY".utf8) + Self.property("Socket-Type", Array("DEALER".utf8))
                + Self.property("Identity", Array("stranger".utf8)), command: true)
        h.send(ZMTPGreeting.bytes(.null) + stranger, piece: 1000)
        var output: [UInt8] = []
        #expect(h.run {
            guard let more = h.readAvailable() else { return true }  // closed
            output += more
            return false
        })
        #expect(h.recorder.joined == 0)
        let error = Self.frame([5] + Array("ERROR".utf8) + [3] + Array("400".utf8), command: true)
        #expect(Array(output.suffix(error.count)) == error)
    }
}
}
