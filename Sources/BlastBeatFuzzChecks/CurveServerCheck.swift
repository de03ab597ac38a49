import BlastBeatCore
import BlastBeatSystem

extension FuzzChecks {
    /// The gateway's keys and a backend's long-term keys, fixed for the process (key generation is slow).
    private static let serverKeys = CurveCrypto.KeyPair.generate()
    private static let clientKeys = CurveCrypto.KeyPair.generate()

    /// `ZMTPCurveServer` fed the command bodies of one connection, in the order the gateway would: HELLO,
    /// then INITIATE, then MESSAGEs, dispatched by the server's step. Input: operations, each an op byte
    /// and its operands, until the input ends:
    /// - op 0 (raw): `length (2) · bytes` given as the next command body; it must be refused (it cannot
    ///   authenticate);
    /// - op 1 (valid): the next command of a correct RFC 26 client (identity or frame from the next
    ///   `length (1) · bytes`); it must be accepted with the client's key, metadata, flags and frame;
    /// - op 2 (altered): that valid command with 1–4 bytes flipped at positions from the input, or cut or
    ///   extended; INITIATE and MESSAGE must then be refused (every byte is authenticated or checked).
    /// Every refusal is a `Refusal` (the method signatures say so); after one the connection is over.
    /// Each accepted MESSAGE is answered by a sealed one that the client must open to the same frame.
    @Sendable public static func curveServer(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let server = ZMTPCurveServer(server: serverKeys)
        var client = FuzzCurveClient(server: serverKeys.publicKey, longTerm: clientKeys)
        var operations = 0
        while !reader.isAtEnd && operations < 32 {
            operations += 1
            let op = reader.byte() % 3
            let body: [UInt8]
            let valid: Bool
            let identity: [UInt8]
            let frame: [UInt8]
            let flags: UInt8
            if op == 0 {
                body = reader.take(reader.uint16())
                (valid, identity, frame, flags) = (false, [], [], 0)
            } else {
                let operand = reader.take(Int(reader.byte()))
                flags = reader.byte() & 0x03
                identity = Array(operand.prefix(255))
                frame = operand
                var command: [UInt8]
                switch server.step {
                case .expectingHello: command = client.hello()
                case .expectingInitiate: command = client.initiate(identity: identity)
                case .initiated, .ready: command = client.message(frame, flags: flags)
                }
                if op == 2 {
                    let original = command
                    let edits = Int(reader.byte() % 6)
                    switch edits {
                    case 4: command.removeLast(1 + Int(reader.byte()) % command.count)
                    case 5: command += reader.take(1 + Int(reader.byte() % 16)) + [0]
                    default:
                        for _ in 0...edits {
                            let position = reader.uint16() % command.count
                            command[position] ^= reader.byte() | 1
                        }
                    }
                    valid = command == original
                } else {
                    valid = true
                }
                body = command
            }

            switch server.step {
            case .expectingHello:
                let welcome: [UInt8]
                switch body.withUnsafeBytes({ b in Result { () throws(ZMTPCurveServer.Refusal) in try server.hello(b) } }) {
                case .success(let result): welcome = result
                case .failure(let error):
                    invariant(op != 1, "a valid HELLO refused: \(error)")
                    invariant(server.step == .expectingHello, "a refused HELLO moved the handshake on")
                    return
                }
                invariant(op != 0, "a forged HELLO accepted")
                invariant(server.step == .expectingInitiate, "HELLO accepted but the step is \(server.step)")
                invariant(client.welcome(welcome), "the client cannot open WELCOME")
            case .expectingInitiate:
                let accepted: (key: CurveKey, metadata: ZMTPCommand.Ready)
                switch body.withUnsafeBytes({ b in Result { () throws(ZMTPCurveServer.Refusal) in try server.initiate(b) } }) {
                case .success(let result): accepted = result
                case .failure(let error):
                    invariant(!valid || op == 0, "a valid INITIATE refused: \(error)")
                    return
                }
                invariant(valid, "an altered or forged INITIATE accepted")
                invariant(accepted.key == clientKeys.publicKey && server.clientKey == clientKeys.publicKey, "INITIATE proved another key")
                invariant(
                    accepted.metadata == ZMTPCommand.Ready(socketType: Array("DEALER".utf8), identity: identity),
                    "INITIATE metadata differs")
                invariant(
                    client.ready(server.readyCommand(metadata: ZMTPCommand.routerMetadata(workers: 2)))
                        == ZMTPCommand.routerMetadata(workers: 2), "the client cannot open READY")
            case .initiated, .ready:
                var message = body
                let opened: UInt8
                switch message.withUnsafeMutableBytes({ b in
                    Result { () throws(ZMTPCurveServer.Refusal) in try server.openMessage(b.baseAddress!, count: b.count) }
                }) {
                case .success(let result): opened = result
                case .failure(let error):
                    invariant(!valid || op == 0, "a valid MESSAGE refused: \(error)")
                    return
                }
                invariant(valid, "an altered or forged MESSAGE opened")
                invariant(opened == flags, "MESSAGE flags \(opened), sent \(flags)")
                invariant(Array(message[ZMTPCurveServer.openedFrameOffset...]) == frame, "MESSAGE frame differs")

                var reply = [UInt8](repeating: 0, count: ZMTPCurveServer.sealedSize(frame.count))
                reply.withUnsafeMutableBytes { room in
                    server.sealMessage(flags: flags, count: frame.count, into: room.baseAddress!) { at in
                        frame.withUnsafeBytes { if let source = $0.baseAddress { at.copyMemory(from: source, byteCount: frame.count) } }
                    }
                }
                invariant(client.openFromServer(reply) == [flags] + frame, "the client cannot open the server's MESSAGE")
            }
        }
    }
}

/// A CURVE client written from RFC 26 (what libzmq's curve_client sends), as in ZMTPCurveServerTests.
struct FuzzCurveClient {
    let server: CurveKey
    let longTerm: CurveCrypto.KeyPair
    let transient = CurveCrypto.KeyPair.generate()
    var serverTransient: CurveKey? = nil
    var cookie: [UInt8] = []
    var nonce: UInt64 = 1

    init(server: CurveKey, longTerm: CurveCrypto.KeyPair) {
        self.server = server
        self.longTerm = longTerm
    }

    static func nonce(_ prefix: String, _ tail: some Collection<UInt8>) -> [UInt8] { Array(prefix.utf8) + tail }
    static func bigEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }

    mutating func nextNonce() -> [UInt8] {
        defer { nonce += 1 }
        return Self.bigEndian(nonce)
    }

    mutating func hello() -> [UInt8] {
        let short = nextNonce()
        let box = CurveCrypto.box(
            [UInt8](repeating: 0, count: 64), nonce: Self.nonce("CurveZMQHELLO---", short),
            theirPublic: server, ourSecret: transient.secretKey)!
        return [5] + Array("HELLO".utf8) + [1, 0] + [UInt8](repeating: 0, count: 72) + transient.publicKey.bytes + short + box
    }

    /// Reads WELCOME: keeps the server's transient key and the cookie.
    mutating func welcome(_ body: [UInt8]) -> Bool {
        guard body.count == 168, Array(body[0..<8]) == [7] + Array("WELCOME".utf8),
            let opened = body[24...].withUnsafeBytes({
                CurveCrypto.open($0, nonce: Self.nonce("WELCOME-", body[8..<24]), theirPublic: server, ourSecret: transient.secretKey)
            }), opened.count == 128
        else { return false }
        serverTransient = CurveKey(bytes: Array(opened[0..<32]))
        cookie = Array(opened[32..<128])
        return true
    }

    mutating func initiate(identity: [UInt8]) -> [UInt8] {
        let vouchNonce = CurveCrypto.randomBytes(16)
        let vouch = CurveCrypto.box(
            transient.publicKey.bytes + server.bytes, nonce: Self.nonce("VOUCH---", vouchNonce),
            theirPublic: serverTransient!, ourSecret: longTerm.secretKey)!
        var metadata = [UInt8(11)] + Array("Socket-Type".utf8) + [0, 0, 0, 6] + Array("DEALER".utf8)
        metadata += [UInt8(8)] + Array("Identity".utf8) + Self.bigEndian(UInt64(identity.count)).suffix(4) + identity
        let short = nextNonce()
        let box = CurveCrypto.box(
            longTerm.publicKey.bytes + vouchNonce + vouch + metadata, nonce: Self.nonce("CurveZMQINITIATE", short),
            theirPublic: serverTransient!, ourSecret: transient.secretKey)!
        return [8] + Array("INITIATE".utf8) + cookie + short + box
    }

    func shared() -> [UInt8] { CurveCrypto.precompute(theirPublic: serverTransient!, ourSecret: transient.secretKey)! }

    func ready(_ body: [UInt8]) -> [UInt8]? {
        guard body.count >= 14, Array(body[0..<6]) == [5] + Array("READY".utf8) else { return nil }
        return body[14...].withUnsafeBytes { CurveCrypto.open($0, nonce: Self.nonce("CurveZMQREADY---", body[6..<14]), shared: shared()) }
    }

    mutating func message(_ frame: [UInt8], flags: UInt8) -> [UInt8] {
        let short = nextNonce()
        return [7] + Array("MESSAGE".utf8) + short
            + CurveCrypto.box([flags] + frame, nonce: Self.nonce("CurveZMQMESSAGEC", short), shared: shared())
    }

    func openFromServer(_ body: [UInt8]) -> [UInt8]? {
        body[16...].withUnsafeBytes { CurveCrypto.open($0, nonce: Self.nonce("CurveZMQMESSAGES", body[8..<16]), shared: shared()) }
    }
}
