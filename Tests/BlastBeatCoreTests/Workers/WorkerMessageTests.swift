import BlastBeatCore
import Testing

/// The worker mesh's framing: what is encoded decodes to the same fields, whole or a byte at a time, several
/// per buffer; damaged input is an error, never a trap.
struct WorkerMessageTests {
    static func encode(
        _ kind: WorkerMessage.Kind, identity: [UInt8], sid: [UInt8], type: [UInt8], body: [UInt8]
    ) -> [UInt8] {
        let size = WorkerMessage.headerSize(identity: identity.count, sid: sid.count, type: type.count)
        var out = [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBytes { room in
            identity.withUnsafeBytes { i in
                sid.withUnsafeBytes { s in
                    type.withUnsafeBytes { t in
                        WorkerMessage.encodeHeader(
                            kind: kind, identity: i, sid: s, type: t, bodyCount: body.count, into: room.baseAddress!)
                    }
                }
            }
        }
        return out + body
    }

    static func decode(_ bytes: [UInt8], limit: Int = 1 << 20) throws(WorkerMessage.DecodeError) -> (WorkerMessage.Parsed, Int)? {
        var result: Result<(WorkerMessage.Parsed, Int)?, WorkerMessage.DecodeError> = .success(nil)
        bytes.withUnsafeBytes { raw in
            do throws(WorkerMessage.DecodeError) {
                result = .success(try WorkerMessage.decode(raw, limit: limit).map { ($0.message, $0.consumed) })
            } catch {
                result = .failure(error)
            }
        }
        return try result.get()
    }

    static let sid = [UInt8](0..<16)

    @Test(arguments: [
        (WorkerMessage.Kind.joined, Array("app#1".utf8), [UInt8](), [UInt8](), [UInt8]()),
        (.left, Array("app".utf8), [], [], []),
        (.send, Array("app".utf8), sid, Array("uwsgi".utf8), Array(repeating: 7, count: 70_000)),
        (.sendUncreditedRequest, Array("app".utf8), sid, Array("uwsgi".utf8), Array(repeating: 9, count: 300)),
        (.received, Array("app".utf8), [], Array("pong".utf8), []),
        (.done, [], [], [], []),
        (.handover, Array("app#1".utf8), [], [], BackendHandoverTests.curve.encoded()),
    ])
    func roundTrip(_ row: (WorkerMessage.Kind, [UInt8], [UInt8], [UInt8], [UInt8])) throws {
        let (kind, identity, sid, type, body) = row
        let bytes = Self.encode(kind, identity: identity, sid: sid, type: type, body: body)
        let (parsed, consumed) = try #require(try Self.decode(bytes))
        #expect(consumed == bytes.count && parsed.kind == kind)
        #expect(Array(bytes[parsed.identity]) == identity && Array(bytes[parsed.sid]) == sid)
        #expect(Array(bytes[parsed.type]) == type && Array(bytes[parsed.body]) == body)
        // Every prefix is incomplete, never an error.
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 300)) {
            #expect(try Self.decode(Array(bytes[0..<cut])) == nil)
        }
    }

    @Test func severalMessagesInOneBuffer() throws {
        let first = Self.encode(.joined, identity: Array("a".utf8), sid: [], type: [], body: [])
        let second = Self.encode(.send, identity: Array("a".utf8), sid: Self.sid, type: Array("end".utf8), body: [])
        let (one, used) = try #require(try Self.decode(first + second))
        #expect(one.kind == .joined && used == first.count)
        let (two, rest) = try #require(try Self.decode(Array((first + second)[used...])))
        #expect(two.kind == .send && rest == second.count)
    }

    @Test(arguments: [
        // length 9 > limit 8
        ([9, 0, 0, 0, 74, 1, 65, 0, 0, 0, 0, 0, 0], WorkerMessage.DecodeError.tooLarge(length: 9, limit: 8)),
        ([4, 0, 0, 0, 88, 1, 65, 0], .unknownKind(88)),
        ([0, 0, 0, 0], .truncated),
        ([3, 0, 0, 0, 74, 5, 65], .truncated),  // identity of 5 in a message of 3
        ([4, 0, 0, 0, 74, 1, 65, 0], .truncated),  // no type length
        ([4, 0, 0, 0, 74, 0, 0, 0], .emptyIdentity),
        ([4, 0, 0, 0, 72, 0, 0, 0], .emptyIdentity),  // a handover names the identity claimed
    ])
    func rejects(_ row: ([UInt8], WorkerMessage.DecodeError)) {
        let error = #expect(throws: WorkerMessage.DecodeError.self) { try Self.decode(row.0, limit: 8) }
        #expect(error == row.1)
    }
}
