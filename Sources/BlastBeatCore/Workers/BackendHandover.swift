/// What a worker passes along with a backend connection it hands to the worker the connection's label names
/// (WorkerLabel.swift; README.md, "Worker processes"): the body of a `WorkerMessage` of kind `H`, whose
/// identity field is the identity the backend claims and whose socket travels beside it (SCM_RIGHTS, WorkerMesh.swift).
///
/// The connection has finished its handshake but is not admitted yet: the worker receiving it puts the
/// identity (and the CURVE key) to its own admission, sends CURVE's READY itself, and goes on reading the
/// connection where the first worker stopped. So this carries every bit of ZMTP state that reading and writing
/// on need: the mechanism, with CURVE the precomputed key of the session and both nonce counters, and the
/// client's proved long-term key (what `node-key` admits); the peer's address; the bytes of ours not yet
/// written (greeting, NULL READY, CURVE WELCOME); and the bytes already read from the backend and not yet used.
///
/// Wire format, little-endian: `mechanism: UInt8` (0 NULL, 1 CURVE); with CURVE `client key (32) · shared key
/// (32) · last peer nonce: UInt64 · next nonce: UInt64`; `address length: UInt8`, address; `unsent length:
/// UInt16`, unsent bytes; `input length: UInt32`, input bytes; nothing after. Every length is bounded below; the
/// decoder trusts nothing (a worker may be compromised through its clients) and is fuzzed (WorkerMessageCheck.swift).
package struct BackendHandover: Equatable, Sendable {
    package enum Security: Equatable, Sendable {
        case null
        case curve(CurveSession)
    }

    /// A CURVE session past INITIATE: what `ZMTPCurveServer` needs to send READY and every MESSAGE after it.
    package struct CurveSession: Equatable, Sendable {
        /// The client's long-term public key, proved by INITIATE's vouch.
        package var clientKey: [UInt8]
        /// The precomputed key of the client's and the gateway's transient keys (crypto_box_beforenm).
        package var sharedKey: [UInt8]
        /// The highest short nonce the client used (a lower one is a replay).
        package var lastPeerNonce: UInt64
        /// The short nonce of the gateway's next command or MESSAGE.
        package var nextNonce: UInt64

        package init(clientKey: [UInt8], sharedKey: [UInt8], lastPeerNonce: UInt64, nextNonce: UInt64) {
            self.clientKey = clientKey
            self.sharedKey = sharedKey
            self.lastPeerNonce = lastPeerNonce
            self.nextNonce = nextNonce
        }
    }

    package var security: Security
    /// The peer's address as the accepting worker logs it ("ADDRESS:PORT", or a local process's credentials).
    package var address: [UInt8]
    /// Handshake bytes the gateway queued and the socket did not take yet.
    package var unsentOutput: [UInt8]
    /// Bytes read from the backend after its handshake command (it may send messages at once with NULL).
    package var pendingInput: [UInt8]

    /// Most unsent bytes: a greeting, a NULL READY or a CURVE WELCOME are a few hundred.
    package static let maxUnsentOutput = 4096
    /// Most bytes read ahead: one read into a backend connection's input buffer, which holds 64 KiB until the
    /// handshake is done (its frames are at most 4 KiB).
    package static let maxPendingInput = 64 * 1024
    static let keySize = 32
    /// The largest body `encoded()` makes.
    package static let maxEncodedSize = 1 + 2 * keySize + 16 + 1 + 255 + 2 + maxUnsentOutput + 4 + maxPendingInput

    package init(security: Security, address: [UInt8], unsentOutput: [UInt8], pendingInput: [UInt8]) {
        self.security = security
        self.address = address
        self.unsentOutput = unsentOutput
        self.pendingInput = pendingInput
    }

    package enum DecodeError: Error, Equatable, CustomStringConvertible {
        case unknownMechanism(UInt8)
        /// A field runs past the end of the bytes.
        case truncated
        /// A length over its bound (`field` names it).
        case tooLarge(field: String, length: Int, limit: Int)
        /// Bytes after the last field.
        case trailingBytes(Int)

        package var description: String {
            switch self {
            case .unknownMechanism(let m): "a connection handover with unknown mechanism \(m)"
            case .truncated: "a connection handover whose fields run past its end"
            case .tooLarge(let field, let length, let limit): "a connection handover with \(length) bytes of \(field) (at most \(limit))"
            case .trailingBytes(let n): "a connection handover with \(n) bytes after its last field"
            }
        }
    }

    /// The bytes of the message body. Preconditions: the bounds above (the sender's own state keeps them).
    package func encoded() -> [UInt8] {
        precondition(address.count <= 255 && unsentOutput.count <= Self.maxUnsentOutput && pendingInput.count <= Self.maxPendingInput)
        var out: [UInt8] = []
        out.reserveCapacity(1 + 80 + 1 + address.count + 2 + unsentOutput.count + 4 + pendingInput.count)
        switch security {
        case .null:
            out.append(0)
        case .curve(let session):
            precondition(session.clientKey.count == Self.keySize && session.sharedKey.count == Self.keySize)
            out.append(1)
            out += session.clientKey
            out += session.sharedKey
            withUnsafeBytes(of: session.lastPeerNonce.littleEndian) { out += $0 }
            withUnsafeBytes(of: session.nextNonce.littleEndian) { out += $0 }
        }
        out.append(UInt8(address.count))
        out += address
        withUnsafeBytes(of: UInt16(unsentOutput.count).littleEndian) { out += $0 }
        out += unsentOutput
        withUnsafeBytes(of: UInt32(pendingInput.count).littleEndian) { out += $0 }
        out += pendingInput
        return out
    }

    /// Decodes a whole body: exactly the fields above, each within its bound.
    package static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> BackendHandover {
        var at = 0
        func take(_ count: Int) throws(DecodeError) -> UnsafeRawBufferPointer {
            guard bytes.count - at >= count else { throw .truncated }
            defer { at += count }
            return UnsafeRawBufferPointer(rebasing: bytes[at..<at + count])
        }
        func integer(_ size: Int) throws(DecodeError) -> Int {
            let field = try take(size)
            var value: UInt64 = 0
            for k in (0..<size).reversed() { value = value << 8 | UInt64(field[k]) }
            return Int(truncatingIfNeeded: value)
        }
        func nonce() throws(DecodeError) -> UInt64 { UInt64(truncatingIfNeeded: try integer(8)) }
        let security: Security
        switch try take(1)[0] {
        case 0:
            security = .null
        case 1:
            let clientKey = Array(try take(keySize))
            let sharedKey = Array(try take(keySize))
            let last = try nonce()
            let next = try nonce()
            security = .curve(CurveSession(clientKey: clientKey, sharedKey: sharedKey, lastPeerNonce: last, nextNonce: next))
        case let other:
            throw .unknownMechanism(other)
        }
        let address = Array(try take(try integer(1)))
        let unsentCount = try integer(2)
        guard unsentCount <= maxUnsentOutput else {
            throw .tooLarge(field: "unsent output", length: unsentCount, limit: maxUnsentOutput)
        }
        let unsent = Array(try take(unsentCount))
        let inputCount = try integer(4)
        guard inputCount <= maxPendingInput else {
            throw .tooLarge(field: "input read ahead", length: inputCount, limit: maxPendingInput)
        }
        let input = Array(try take(inputCount))
        guard at == bytes.count else { throw .trailingBytes(bytes.count - at) }
        return BackendHandover(security: security, address: address, unsentOutput: unsent, pendingInput: input)
    }
}
