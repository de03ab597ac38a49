import BlastBeatCore
import BlastBeatSystem
import Testing

/// The server half of CurveZMQ against a client written here from RFC 26 (what libzmq's curve_client
/// sends). Interoperability with libzmq itself is tested with pyzmq in Tests/IntegrationTests/test_curve.py.
private struct CurveClient {
    let server: CurveKey
    let longTerm = CurveCrypto.KeyPair.generate()
    let transient = CurveCrypto.KeyPair.generate()
    var serverTransient: CurveKey? = nil
    var nonce: UInt64 = 1

    init(server: CurveKey) { self.server = server }

    static func nonce(_ prefix: String, _ tail: [UInt8]) -> [UInt8] { Array(prefix.utf8) + tail }
    static func bigEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }

    mutating func nextNonce() -> [UInt8] {
        defer { nonce += 1 }
        return Self.bigEndian(nonce)
    }

    mutating func hello(serverKeyUsed: CurveKey? = nil) -> [UInt8] {
        let short = nextNonce()
        let box = CurveCrypto.box(
            [UInt8](repeating: 0, count: 64), nonce: Self.nonce("CurveZMQHELLO---", short),
            theirPublic: serverKeyUsed ?? server, ourSecret: transient.secretKey)!
        return [5] + Array("HELLO".utf8) + [1, 0] + [UInt8](repeating: 0, count: 72) + transient.publicKey.bytes + short + box
    }

    /// Reads WELCOME; returns the cookie.
    mutating func welcome(_ body: [UInt8]) throws -> [UInt8] {
        #expect(body.count == 168 && Array(body[0..<8]) == [7] + Array("WELCOME".utf8))
        let opened = try #require(body[24...].withUnsafeBytes {
            CurveCrypto.open($0, nonce: Self.nonce("WELCOME-", Array(body[8..<24])), theirPublic: server, ourSecret: transient.secretKey)
        })
        serverTransient = CurveKey(bytes: Array(opened[0..<32]))
        return Array(opened[32..<128])
    }

    mutating func initiate(cookie: [UInt8], identity: String, socketType: String = "DEALER", vouchFor: CurveKey? = nil) -> [UInt8] {
        let vouchNonce = CurveCrypto.randomBytes(16)
        let vouch = CurveCrypto.box(
            transient.publicKey.bytes + (vouchFor ?? server).bytes, nonce: Self.nonce("VOUCH---", vouchNonce),
            theirPublic: serverTransient!, ourSecret: longTerm.secretKey)!
        var metadata = [UInt8(11)] + Array("Socket-Type".utf8) + Self.bigEndian(UInt64(socketType.utf8.count)).suffix(4) + Array(socketType.utf8)
        metadata += [UInt8(8)] + Array("Identity".utf8) + Self.bigEndian(UInt64(identity.utf8.count)).suffix(4) + Array(identity.utf8)
        let short = nextNonce()
        let box = CurveCrypto.box(
            longTerm.publicKey.bytes + vouchNonce + vouch + metadata, nonce: Self.nonce("CurveZMQINITIATE", short),
            theirPublic: serverTransient!, ourSecret: transient.secretKey)!
        return [8] + Array("INITIATE".utf8) + cookie + short + box
    }

    func shared() -> [UInt8] { CurveCrypto.precompute(theirPublic: serverTransient!, ourSecret: transient.secretKey)! }

    func readyMetadata(_ body: [UInt8]) -> [UInt8]? {
        guard Array(body[0..<6]) == [5] + Array("READY".utf8) else { return nil }
        return body[14...].withUnsafeBytes { CurveCrypto.open($0, nonce: Self.nonce("CurveZMQREADY---", Array(body[6..<14])), shared: shared()) }
    }

    mutating func message(_ frame: [UInt8], flags: UInt8 = 0, nonceValue: UInt64? = nil) -> [UInt8] {
        let short = nonceValue.map(Self.bigEndian) ?? nextNonce()
        return [7] + Array("MESSAGE".utf8) + short
            + CurveCrypto.box([flags] + frame, nonce: Self.nonce("CurveZMQMESSAGEC", short), shared: shared())
    }

    func openFromServer(_ body: [UInt8]) -> [UInt8]? {
        body[16...].withUnsafeBytes { CurveCrypto.open($0, nonce: Self.nonce("CurveZMQMESSAGES", Array(body[8..<16])), shared: shared()) }
    }
}

private func call<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try bytes.withUnsafeBytes(body)
}

@Suite struct ZMTPCurveServerTests {
    let serverKeys = CurveCrypto.KeyPair.generate()

    /// HELLO, WELCOME, INITIATE (key and metadata out), READY, then one MESSAGE each way.
    @Test func handshakeAndMessagesBothWays() throws {
        let server = ZMTPCurveServer(server: serverKeys)
        var client = CurveClient(server: serverKeys.publicKey)
        let cookie = try client.welcome(try call(client.hello()) { try server.hello($0) })
        let (key, metadata) = try call(client.initiate(cookie: cookie, identity: "alpha#1")) { try server.initiate($0) }
        #expect(key == client.longTerm.publicKey)
        #expect(metadata.identity == Array("alpha#1".utf8) && metadata.socketType == Array("DEALER".utf8))
        let ours = ZMTPCommand.routerMetadata(workers: 3)
        #expect(client.readyMetadata(server.readyCommand(metadata: ours)) == ours)

        var incoming = client.message(Array("sid-bytes".utf8), flags: 0x01)
        let flags = try incoming.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
        #expect(flags == 0x01)
        #expect(Array(incoming[ZMTPCurveServer.openedFrameOffset...].prefix(9)) == Array("sid-bytes".utf8))

        // Sizes around the 32 bytes that block 0 of the keystream covers, and a long one, both ways,
        // against libsodium's own crypto_box_easy_afternm / open_easy_afternm on the client side.
        for size in [0, 1, 31, 32, 33, 63, 64, 65, 1000, 70_000] {
            let frame = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            var outgoing = [UInt8](repeating: 0, count: ZMTPCurveServer.sealedSize(frame.count))
            outgoing.withUnsafeMutableBytes { room in
                server.sealMessage(flags: 0x02, count: frame.count, into: room.baseAddress!) { at in
                    frame.withUnsafeBytes { if let source = $0.baseAddress { at.copyMemory(from: source, byteCount: frame.count) } }
                }
            }
            #expect(client.openFromServer(outgoing) == [0x02] + frame, "sealed \(size) bytes")
            var message = client.message(frame)
            let flags = try message.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
            #expect(flags == 0 && Array(message[ZMTPCurveServer.openedFrameOffset...]) == frame, "opened \(size) bytes")
        }
    }

    /// A session handed to another worker after INITIATE (BackendHandover) goes on there: READY and MESSAGEs both
    /// ways open with the client's keys, and the nonce counters carry over (a replayed INITIATE nonce is refused).
    @Test func aSessionHandedOverAfterInitiateContinuesInAnotherServer() throws {
        let first = ZMTPCurveServer(server: serverKeys)
        var client = CurveClient(server: serverKeys.publicKey)
        let cookie = try client.welcome(try call(client.hello()) { try first.hello($0) })
        _ = try call(client.initiate(cookie: cookie, identity: "alpha")) { try first.initiate($0) }
        let session = try #require(first.handoverSession())
        #expect(session.clientKey == client.longTerm.publicKey.bytes && session.nextNonce == 1)

        let second = try #require(ZMTPCurveServer(server: serverKeys, adopting: session))
        #expect(second.step == .initiated && second.clientKey == client.longTerm.publicKey)
        let ours = ZMTPCommand.routerMetadata(workers: 2)
        #expect(client.readyMetadata(second.readyCommand(metadata: ours)) == ours)
        var incoming = client.message(Array("sid".utf8), flags: 0x01)
        let flags = try incoming.withUnsafeMutableBytes { try second.openMessage($0.baseAddress!, count: $0.count) }
        #expect(flags == 0x01 && Array(incoming[ZMTPCurveServer.openedFrameOffset...]) == Array("sid".utf8))
        var outgoing = [UInt8](repeating: 0, count: ZMTPCurveServer.sealedSize(2))
        outgoing.withUnsafeMutableBytes { room in
            second.sealMessage(flags: 0, count: 2, into: room.baseAddress!) { $0.storeBytes(of: 0x6968, as: UInt16.self) }
        }
        #expect(client.openFromServer(outgoing) == [0, 0x68, 0x69])
        var replay = client.message([1], nonceValue: session.lastPeerNonce)
        #expect(throws: ZMTPCurveServer.Refusal.replayedNonce) {
            try replay.withUnsafeMutableBytes { try second.openMessage($0.baseAddress!, count: $0.count) }
        }
        // Only a session past INITIATE can be handed over; a malformed key is refused.
        #expect(ZMTPCurveServer(server: serverKeys).handoverSession() == nil)
        var bad = session
        bad.clientKey = [1, 2, 3]
        #expect(ZMTPCurveServer(server: serverKeys, adopting: bad) == nil)
    }

    @Test func helloForAnotherServerKeyIsRefused() {
        let server = ZMTPCurveServer(server: serverKeys)
        var client = CurveClient(server: serverKeys.publicKey)
        let hello = client.hello(serverKeyUsed: CurveCrypto.KeyPair.generate().publicKey)
        #expect(throws: ZMTPCurveServer.Refusal.self) { try call(hello) { try server.hello($0) } }
    }

    @Test func malformedHandshakeCommandsAreRefused() throws {
        var client = CurveClient(server: serverKeys.publicKey)
        let hello = client.hello()
        // Truncated, wrong version, wrong command, INITIATE first.
        for bad in [Array(hello.prefix(150)), Array(hello[0..<6]) + [2, 0] + Array(hello[8...]), [5] + Array("HELLX".utf8) + Array(hello[6...])] {
            let server = ZMTPCurveServer(server: serverKeys)
            #expect(throws: ZMTPCurveServer.Refusal.self) { try call(bad) { try server.hello($0) } }
        }
        let fresh = ZMTPCurveServer(server: serverKeys)
        #expect(throws: ZMTPCurveServer.Refusal.self) { try call([8] + Array("INITIATE".utf8) + [UInt8](repeating: 0, count: 300)) { try fresh.initiate($0) } }
    }

    @Test func forgedCookieAndVouchAreRefused() throws {
        // A cookie from another connection's server state does not open.
        let server = ZMTPCurveServer(server: serverKeys)
        var client = CurveClient(server: serverKeys.publicKey)
        var cookie = try client.welcome(try call(client.hello()) { try server.hello($0) })
        cookie[40] ^= 0xFF
        let forged = client.initiate(cookie: cookie, identity: "alpha")
        #expect(throws: ZMTPCurveServer.Refusal.self) { try call(forged) { try server.initiate($0) } }

        // A vouch for another server key (a relayed handshake) is refused.
        let second = ZMTPCurveServer(server: serverKeys)
        var other = CurveClient(server: serverKeys.publicKey)
        let goodCookie = try other.welcome(try call(other.hello()) { try second.hello($0) })
        let relayed = other.initiate(cookie: goodCookie, identity: "alpha", vouchFor: CurveCrypto.KeyPair.generate().publicKey)
        #expect(throws: ZMTPCurveServer.Refusal.self) { try call(relayed) { try second.initiate($0) } }
    }

    @Test func replayedAndAlteredMessagesAreRefused() throws {
        let server = ZMTPCurveServer(server: serverKeys)
        var client = CurveClient(server: serverKeys.publicKey)
        let cookie = try client.welcome(try call(client.hello()) { try server.hello($0) })
        _ = try call(client.initiate(cookie: cookie, identity: "alpha")) { try server.initiate($0) }
        _ = server.readyCommand(metadata: ZMTPCommand.routerMetadata(workers: 1))
        var first = client.message([1, 2, 3], nonceValue: 10)
        let replay = first
        _ = try first.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
        var again = replay
        #expect(throws: ZMTPCurveServer.Refusal.replayedNonce) {
            try again.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
        }
        var altered = client.message([4, 5, 6], nonceValue: 11)
        altered[altered.count - 1] ^= 1
        #expect(throws: ZMTPCurveServer.Refusal.self) {
            try altered.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
        }
        var short = Array(client.message([7], nonceValue: 12).prefix(20))
        #expect(throws: ZMTPCurveServer.Refusal.self) {
            try short.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
        }
    }

    @Test func keyPairConsistency() {
        let pair = CurveCrypto.KeyPair.generate()
        #expect(pair.isConsistent)
        #expect(!CurveCrypto.KeyPair(publicKey: CurveCrypto.KeyPair.generate().publicKey, secretKey: pair.secretKey).isConsistent)
    }
}

/// The message keystream (Curve/MessageKeystream.swift) computes blocks four at a time and guesses which
/// frames come next: every pattern of frame sizes must still seal and open exactly as libsodium does.
@Suite struct ZMTPCurveMessageStreamTests {
    let serverKeys = CurveCrypto.KeyPair.generate()

    private func connected() throws -> (ZMTPCurveServer, CurveClient) {
        let server = ZMTPCurveServer(server: serverKeys)
        var client = CurveClient(server: serverKeys.publicKey)
        let cookie = try client.welcome(try call(client.hello()) { try server.hello($0) })
        _ = try call(client.initiate(cookie: cookie, identity: "alpha#1")) { try server.initiate($0) }
        _ = server.readyCommand(metadata: ZMTPCommand.routerMetadata(workers: 1))
        return (server, client)
    }

    private func seal(_ server: ZMTPCurveServer, _ frame: [UInt8]) -> [UInt8] {
        var outgoing = [UInt8](repeating: 0, count: ZMTPCurveServer.sealedSize(frame.count))
        outgoing.withUnsafeMutableBytes { room in
            server.sealMessage(flags: 0x01, count: frame.count, into: room.baseAddress!) { at in
                frame.withUnsafeBytes { if let source = $0.baseAddress { at.copyMemory(from: source, byteCount: frame.count) } }
            }
        }
        return outgoing
    }

    /// Messages of three frames in every combination of sizes around the block edges (a frame's first 32
    /// bytes share block 0 with the Poly1305 key) and around the 512 bytes from which libsodium takes over.
    @Test func messagesOfThreeFramesOfEverySizeBothWays() throws {
        let (server, client) = try connected()
        var clientState = client
        let sizes = [0, 1, 31, 32, 33, 95, 96, 97, 160, 223, 224, 225, 300, 479, 480, 481, 543, 544, 545, 2000]
        for (i, a) in sizes.enumerated() {
            for b in [sizes[(i + 3) % sizes.count], 5] {
                for c in sizes {
                    for size in [a, b, c] {
                        let frame = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ a) }
                        #expect(clientState.openFromServer(seal(server, frame)) == [0x01] + frame, "sealed \(a)/\(b)/\(c)")
                        var message = clientState.message(frame)
                        let flags = try message.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
                        #expect(flags == 0 && Array(message[ZMTPCurveServer.openedFrameOffset...]) == frame, "opened \(a)/\(b)/\(c)")
                    }
                }
            }
        }
    }

    /// A forged MESSAGE uses up the blocks computed for its nonce; the real one with that nonce still opens,
    /// and so do later ones whose nonces skip ahead of what was guessed.
    @Test func aForgedFrameAndSkippedNoncesDoNotDisturbTheStream() throws {
        let (server, client) = try connected()
        var clientState = client
        var forged = clientState.message(Array(repeating: 0x41, count: 40), nonceValue: 10)
        forged[forged.count - 1] ^= 0x01
        #expect(throws: ZMTPCurveServer.Refusal.self) {
            try forged.withUnsafeMutableBytes { _ = try server.openMessage($0.baseAddress!, count: $0.count) }
        }
        for (nonce, size) in [(10, 40), (11, 3), (17, 200), (18, 1), (50, 700), (51, 64)] as [(UInt64, Int)] {
            let frame = [UInt8](repeating: UInt8(size & 0xff), count: size)
            var message = clientState.message(frame, nonceValue: nonce)
            _ = try message.withUnsafeMutableBytes { try server.openMessage($0.baseAddress!, count: $0.count) }
            #expect(Array(message[ZMTPCurveServer.openedFrameOffset...]) == frame, "nonce \(nonce)")
        }
    }
}
