package import BlastBeatCore
import Glibc

/// The server side of CurveZMQ (ZeroMQ RFC 26, the ZMTP CURVE mechanism) on one backend connection,
/// byte-compatible with libzmq's CURVE clients.
///
/// Handshake, after the greetings (both naming CURVE, the gateway as server):
///
///     expectingHello ──HELLO──▶ (WELCOME sent) expectingInitiate ──INITIATE──▶ initiated ──admitted──▶ ready
///
/// - HELLO: the client's transient key C' and a box of 64 zeros from C' to our long-term key S (proves it
///   knows S). We answer WELCOME: our transient key S' and a cookie (C' and s' under a key only we hold).
/// - INITIATE: the cookie back, then a box from C' to S' holding the client's long-term key C, a vouch
///   (C' and S boxed from C to S': proves it holds C's secret) and its metadata (Socket-Type, Identity).
/// - READY: our metadata boxed from S' to C'. Then every frame either way is a MESSAGE: a short nonce and
///   a box (S'↔C') of one flags byte (0x01 more, 0x02 command) and the frame's body.
///
/// Nonces only go up: a HELLO, INITIATE or MESSAGE whose short nonce is not above the last one seen is
/// a replay and refused, as libzmq refuses it. Any failure is a `Refusal`; the connection is then closed.
package final class ZMTPCurveServer {
    package enum Step { case expectingHello, expectingInitiate, initiated, ready }

    /// Why a handshake or message was refused (for the warning the gateway logs).
    package enum Refusal: Error, Equatable, CustomStringConvertible {
        case unexpectedCommand(expected: String)
        case malformed(String)
        case wrongServerKey
        case badCookie
        case badBox(String)
        case badVouch
        case replayedNonce
        case badMetadata

        package var description: String {
            switch self {
            case .unexpectedCommand(let expected): "CURVE handshake: expected \(expected)"
            case .malformed(let what): "CURVE handshake: malformed \(what)"
            case .wrongServerKey: "CURVE HELLO does not open with the gateway's key (the backend has the wrong server key)"
            case .badCookie: "CURVE INITIATE carries a cookie the gateway did not issue"
            case .badBox(let what): "CURVE \(what) box does not authenticate"
            case .badVouch: "CURVE INITIATE vouch does not prove the client's key"
            case .replayedNonce: "CURVE nonce not above the previous one (a replayed or reordered command)"
            case .badMetadata: "CURVE INITIATE metadata is malformed or has no Socket-Type"
            }
        }
    }

    package private(set) var step = Step.expectingHello
    private let server: CurveCrypto.KeyPair
    private var transient = CurveCrypto.KeyPair.generate()
    private var clientTransient: CurveKey? = nil
    private var cookieKey: [UInt8] = []
    /// The client's long-term public key, proved by INITIATE's vouch.
    package private(set) var clientKey: CurveKey? = nil
    private var lastPeerNonce: UInt64 = 0
    private var nextNonce: UInt64 = 1
    /// The keystreams of the MESSAGEs we seal and of those we open, from INITIATE on.
    private var sealStream: MessageKeystream? = nil
    private var openStream: MessageKeystream? = nil
    /// The precomputed (C', s') key, kept from INITIATE to READY.
    private var shared: [UInt8] = []

    /// Bytes a MESSAGE adds to a frame body: "\x07MESSAGE", the short nonce, the MAC and the flags byte.
    package static let messageOverhead = 8 + 8 + CurveCrypto.macSize + 1
    private static let messageName: [UInt8] = [7] + Array("MESSAGE".utf8)

    package init(server: CurveCrypto.KeyPair) {
        self.server = server
    }

    deinit {
        CurveCrypto.wipe(&cookieKey)
        CurveCrypto.wipe(&shared)
    }

    private static func nonce(_ prefix: StaticString, _ tail: some Collection<UInt8>) -> [UInt8] {
        var bytes = [UInt8](UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
        bytes += tail
        precondition(bytes.count == CurveCrypto.nonceSize)
        return bytes
    }

    private static func shortNonce(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in offset..<offset + 8 { value = value << 8 | UInt64(bytes[i]) }
        return value
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    private func acceptNonce(_ nonce: UInt64) throws(Refusal) {
        guard nonce > lastPeerNonce else { throw .replayedNonce }
        lastPeerNonce = nonce
    }

    // MARK: handshake

    /// HELLO (a whole command body, name included) → the WELCOME command body to send.
    package func hello(_ body: UnsafeRawBufferPointer) throws(Refusal) -> [UInt8] {
        guard step == .expectingHello else { throw .unexpectedCommand(expected: "nothing before READY") }
        guard body.starts(with: [5] + Array("HELLO".utf8)) else { throw .unexpectedCommand(expected: "HELLO") }
        // name (6) · version (2) · padding (72) · C' (32) · short nonce (8) · Box[64 zeros] (80)
        guard body.count == 200 else { throw .malformed("HELLO (\(body.count) bytes, expected 200)") }
        guard body[6] == 1, body[7] == 0 else { throw .malformed("HELLO version \(body[6]).\(body[7])") }
        let clientTransient = CurveKey(bytes: Array(body[80..<112]))!
        let nonceValue = Self.shortNonce(body, at: 112)
        try acceptNonce(nonceValue)
        guard let signature = CurveCrypto.open(
                UnsafeRawBufferPointer(rebasing: body[120..<200]), nonce: Self.nonce("CurveZMQHELLO---", body[112..<120]),
                theirPublic: clientTransient, ourSecret: server.secretKey),
            signature.allSatisfy({ $0 == 0 })
        else { throw .wrongServerKey }
        self.clientTransient = clientTransient

        // The cookie: Box[C' + s'](K) under a key of this connection's, as libzmq makes it.
        cookieKey = CurveCrypto.randomBytes(32)
        let cookieNonce = CurveCrypto.randomBytes(16)
        let cookie = cookieNonce
            + CurveCrypto.secretBox(
                clientTransient.bytes + transient.secretKey.bytes, nonce: Self.nonce("COOKIE--", cookieNonce), key: cookieKey)
        let welcomeNonce = CurveCrypto.randomBytes(16)
        guard let welcomeBox = CurveCrypto.box(
                transient.publicKey.bytes + cookie, nonce: Self.nonce("WELCOME-", welcomeNonce),
                theirPublic: clientTransient, ourSecret: server.secretKey)
        else { throw .badBox("WELCOME") }
        step = .expectingInitiate
        return [7] + Array("WELCOME".utf8) + welcomeNonce + welcomeBox
    }

    /// INITIATE → the client's proved long-term key and its metadata. The caller decides whether that
    /// key may claim the identity, then sends `readyCommand()` or refuses.
    package func initiate(_ body: UnsafeRawBufferPointer) throws(Refusal) -> (key: CurveKey, metadata: ZMTPCommand.Ready) {
        guard step == .expectingInitiate, let clientTransient else {
            throw .unexpectedCommand(expected: step == .expectingHello ? "HELLO" : "nothing before READY")
        }
        guard body.starts(with: [8] + Array("INITIATE".utf8)) else { throw .unexpectedCommand(expected: "INITIATE") }
        // name (9) · cookie (16 nonce + 80 box) · short nonce (8) · Box[C + vouch + metadata] (144 + metadata)
        guard body.count >= 257 else { throw .malformed("INITIATE (\(body.count) bytes, at least 257 expected)") }
        guard let cookie = CurveCrypto.secretOpen(
                UnsafeRawBufferPointer(rebasing: body[25..<105]), nonce: Self.nonce("COOKIE--", body[9..<25]), key: cookieKey),
            cookie == clientTransient.bytes + transient.secretKey.bytes
        else { throw .badCookie }
        try acceptNonce(Self.shortNonce(body, at: 105))
        guard let shared = CurveCrypto.precompute(theirPublic: clientTransient, ourSecret: transient.secretKey),
            let plaintext = CurveCrypto.open(
                UnsafeRawBufferPointer(rebasing: body[113...]), nonce: Self.nonce("CurveZMQINITIATE", body[105..<113]),
                shared: shared)
        else { throw .badBox("INITIATE") }
        // C (32) · vouch nonce (16) · vouch box (80) · metadata
        let clientKey = CurveKey(bytes: Array(plaintext[0..<32]))!
        let vouch = plaintext[48..<128].withUnsafeBytes {
            CurveCrypto.open($0, nonce: Self.nonce("VOUCH---", plaintext[32..<48]), theirPublic: clientKey, ourSecret: transient.secretKey)
        }
        // The vouch holds C' and the server key the client meant (RFC 26): both must be ours.
        guard let vouch, vouch == clientTransient.bytes + server.publicKey.bytes else { throw .badVouch }
        guard let metadata = plaintext[128...].withUnsafeBytes({ ZMTPCommand.parseReady($0.bytes) }) else { throw .badMetadata }
        self.shared = shared
        startMessageStreams()
        CurveCrypto.wipe(&cookieKey)
        self.clientKey = clientKey
        step = .initiated
        return (clientKey, metadata)
    }

    /// The READY command body (`metadata`, ZMTPCommand.routerMetadata, in a box), sent once the claim is admitted.
    package func readyCommand(metadata: [UInt8]) -> [UInt8] {
        precondition(step == .initiated, "READY before INITIATE was accepted")
        step = .ready
        let nonce = Self.bigEndian(nextNonce)
        nextNonce += 1
        let box = CurveCrypto.box(metadata, nonce: Self.nonce("CurveZMQREADY---", nonce), shared: shared)
        CurveCrypto.wipe(&shared)
        return [5] + Array("READY".utf8) + nonce + box
    }

    // MARK: handing the session to another worker

    /// The session after INITIATE, for the worker a labelled connection is handed to (BackendHandover.swift);
    /// nil in any other step. The caller wipes the copy of the shared key once it is sent.
    package func handoverSession() -> BackendHandover.CurveSession? {
        guard step == .initiated, let clientKey else { return nil }
        return BackendHandover.CurveSession(
            clientKey: clientKey.bytes, sharedKey: shared, lastPeerNonce: lastPeerNonce, nextNonce: nextNonce)
    }

    /// Continues a session another worker began (`handoverSession()` there): at `initiated`, with the client's
    /// proved key, the same precomputed key and nonces; READY is sent from here. Nil for a malformed key.
    package convenience init?(server: CurveCrypto.KeyPair, adopting session: BackendHandover.CurveSession) {
        guard let clientKey = CurveKey(bytes: session.clientKey), session.sharedKey.count == CurveCrypto.keySize else {
            return nil
        }
        self.init(server: server)
        self.clientKey = clientKey
        shared = session.sharedKey
        lastPeerNonce = session.lastPeerNonce
        nextNonce = session.nextNonce
        startMessageStreams()
        step = .initiated
    }

    // MARK: messages

    /// The message keystreams of the precomputed key (once INITIATE proved the client).
    private func startMessageStreams() {
        shared.withUnsafeBytes { key in
            sealStream = MessageKeystream(shared: key.baseAddress!, noncePrefix: "CurveZMQMESSAGES")
            openStream = MessageKeystream(shared: key.baseAddress!, noncePrefix: "CurveZMQMESSAGEC")
        }
    }

    /// Opens a MESSAGE body in place. On success the frame's own body is `count - messageOverhead`
    /// bytes at `body + openedFrameOffset`, and `flags` says whether more frames follow (0x01) and
    /// whether it is a command (0x02).
    package func openMessage(_ body: UnsafeMutableRawPointer, count: Int) throws(Refusal) -> UInt8 {
        guard count >= Self.messageOverhead,
            memcmp(body, Self.messageName, Self.messageName.count) == 0
        else { throw .malformed("MESSAGE") }
        let nonce = UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard nonce > lastPeerNonce else { throw .replayedNonce }
        guard let openStream, CurveCrypto.openInPlace(body + 16, count: count - 32, nonce: nonce, stream: openStream) else {
            throw .badBox("MESSAGE")
        }
        lastPeerNonce = nonce  // only once it authenticated: a forged nonce must not block the real ones
        return body.load(fromByteOffset: 32, as: UInt8.self)
    }

    /// Where the frame lies in an opened MESSAGE body: name (8), nonce (8), MAC (16), flags (1).
    package static let openedFrameOffset = 33

    /// The size of the ZMTP frame body that carries a `count`-byte frame as a MESSAGE.
    package static func sealedSize(_ count: Int) -> Int { messageOverhead + count }

    /// Writes a MESSAGE for a frame at `destination` (which has `sealedSize(count)` bytes): `fill` writes
    /// the frame's `count` plaintext bytes at the pointer it is given, then they are sealed in place.
    @inline(__always)
    package func sealMessage(flags: UInt8, count: Int, into destination: UnsafeMutableRawPointer, _ fill: (UnsafeMutableRawPointer) -> Void) {
        Self.messageName.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        let nonce = nextNonce
        destination.storeBytes(of: nonce.bigEndian, toByteOffset: 8, as: UInt64.self)
        nextNonce += 1
        let plaintext = destination + 16 + CurveCrypto.macSize
        plaintext.storeBytes(of: flags, as: UInt8.self)
        fill(plaintext + 1)
        guard let sealStream else { preconditionFailure("a MESSAGE sealed before INITIATE") }
        CurveCrypto.sealInPlace(destination + 16, count: count + 1, nonce: nonce, stream: sealStream)
    }
}
