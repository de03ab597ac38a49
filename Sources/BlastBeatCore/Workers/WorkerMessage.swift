/// The messages worker processes exchange about backend connections (WorkerMesh.swift in BlastBeatSystem;
/// README.md, "Worker processes"). A backend connection lands in one worker; the others reach its node
/// through that worker.
///
/// Wire format, little-endian: `length: UInt32` (of everything after it), `kind: UInt8`, `identity length:
/// UInt8`, identity, `sid length: UInt8`, sid, `type length: UInt8`, type, body (the rest). Kinds:
/// `J` the sending worker now holds a connection with this identity, `L` it no longer does, `S` send
/// [sid, type, body] to the backend with this identity (to its holder), `U` the same for a `uwsgi` the sending
/// worker sends without credit (it did not know yet that the connection takes credit): a holder that
/// acknowledged the connection's credit follows it with the largest grant, so the backend answers it without
/// waiting (docs/PROTOCOL.md, "Credit"), `R` a message [sid, type, body]
/// received from the backend with this identity (from its holder: to the worker its sid names, or to
/// every worker for an empty sid, a pong), `D` the sending worker is stopping and has nothing in flight any
/// more (its identity field is empty): it will send no `S` again; `Q` asks for the worker's `/metrics` text
/// and `A` answers with it in the body (both with an 8-byte query id in the sid field, no identity); `H` hands a
/// backend connection that finished its handshake over to the worker its `X-BlastBeat-Worker` label names: the
/// identity it claims, its ZMTP state in the body (`BackendHandover`), and its socket attached to the link's bytes
/// (SCM_RIGHTS: it arrives no later than the message's first byte); `P` asks the holder of the backend with this
/// identity to stop reading its connection for the sending worker, whose memory budget is full, and `C` to read
/// it again (README.md, "Memory budget"); `F` tells a worker whose `S` messages filled the holder's queue for the
/// backend with this identity to `max-node-queue` that it is full (the worker's clients uploading to it wait), and
/// `E` that it drained to three quarters (docs/PROTOCOL.md, "Flow control and limits").
///
/// The bytes come from another worker of the same gateway, but a worker may be compromised through its
/// clients: the decoder trusts nothing, bounds every length and is fuzzed (WorkerMessageCheck.swift).
package enum WorkerMessage {
    package enum Kind: UInt8, Sendable {
        case joined = 74  // "J"
        case left = 76  // "L"
        case send = 83  // "S"
        case sendUncreditedRequest = 85  // "U"
        case received = 82  // "R"
        case done = 68  // "D"
        case metricsQuery = 81  // "Q"
        case metricsAnswer = 65  // "A"
        case handover = 72  // "H"
        case pauseReading = 80  // "P"
        case resumeReading = 67  // "C"
        case queueFull = 70  // "F"
        case queueDrained = 69  // "E"
    }

    /// A decoded message: ranges into the buffer it was decoded from.
    package struct Parsed: Equatable {
        package var kind: Kind
        package var identity: Range<Int>
        package var sid: Range<Int>
        package var type: Range<Int>
        package var body: Range<Int>
    }

    package enum DecodeError: Error, Equatable, CustomStringConvertible {
        /// The length prefix is past `limit`.
        case tooLarge(length: Int, limit: Int)
        case unknownKind(UInt8)
        /// A field's length runs past the message.
        case truncated
        /// An identity of 0 bytes (never a connected backend's) in a message about a backend.
        case emptyIdentity

        package var description: String {
            switch self {
            case .tooLarge(let length, let limit): "a worker message of \(length) bytes (at most \(limit))"
            case .unknownKind(let kind): "a worker message of unknown kind \(kind)"
            case .truncated: "a worker message whose fields run past its length"
            case .emptyIdentity: "a worker message without an identity"
            }
        }
    }

    /// Bytes before the body: the length prefix and the fields.
    package static func headerSize(identity: Int, sid: Int, type: Int) -> Int { 4 + 1 + 1 + identity + 1 + sid + 1 + type }

    /// Writes everything but the body into `room` (`headerSize` bytes); the body follows it on the wire.
    /// Identity, sid and type are at most 255 bytes each (a ZMTP identity is; sids are 16 bytes or empty, types
    /// a few letters).
    package static func encodeHeader(
        kind: Kind, identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer,
        bodyCount: Int, into room: UnsafeMutableRawPointer
    ) {
        precondition(identity.count <= 255 && sid.count <= 255 && type.count <= 255, "worker message field over 255 bytes")
        let size = headerSize(identity: identity.count, sid: sid.count, type: type.count)
        room.storeBytes(of: UInt32(size - 4 + bodyCount).littleEndian, toByteOffset: 0, as: UInt32.self)
        room.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        var at = 5
        // No array of the three fields: this runs for every forwarded message.
        func put(_ field: UnsafeRawBufferPointer) {
            room.storeBytes(of: UInt8(field.count), toByteOffset: at, as: UInt8.self)
            at += 1
            if let source = field.baseAddress { (room + at).copyMemory(from: source, byteCount: field.count) }
            at += field.count
        }
        put(identity)
        put(sid)
        put(type)
    }

    /// The first message in `bytes`: nil while incomplete, else the message and how many bytes it took.
    /// `limit` bounds the length prefix (a bigger one is an error at once, before its bytes arrive).
    package static func decode(
        _ bytes: UnsafeRawBufferPointer, limit: Int
    ) throws(DecodeError) -> (message: Parsed, consumed: Int)? {
        guard bytes.count >= 4 else { return nil }
        let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        guard length <= limit else { throw .tooLarge(length: length, limit: limit) }
        guard bytes.count - 4 >= length else { return nil }
        let end = 4 + length
        guard length >= 1 else { throw .truncated }
        guard let kind = Kind(rawValue: bytes[4]) else { throw .unknownKind(bytes[4]) }
        var at = 5
        func field() throws(DecodeError) -> Range<Int> {
            guard at < end else { throw .truncated }
            let count = Int(bytes[at])
            at += 1
            guard end - at >= count else { throw .truncated }
            defer { at += count }
            return at..<at + count
        }
        let identity = try field()
        guard !identity.isEmpty || kind == .done || kind == .metricsQuery || kind == .metricsAnswer else {
            throw .emptyIdentity
        }
        let sid = try field()
        let type = try field()
        return (Parsed(kind: kind, identity: identity, sid: sid, type: type, body: at..<end), end)
    }
}
