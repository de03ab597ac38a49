import BlastBeatCore
import Testing

@testable import BlastBeatBackend

/// Credit in the Swift SDK (docs/PROTOCOL.md, "Credit"): the gate on its own, then the node against a ROUTER.
@Suite struct CreditGateTests {
    let one = [UInt8](repeating: 1, count: 16).withUnsafeBytes { SessionID($0)! }
    let two = [UInt8](repeating: 2, count: 16).withUnsafeBytes { SessionID($0)! }

    @Test func sendsFreelyUntilTheGatewayAcknowledges() {
        var gate = CreditGate()
        #expect(gate.admit(one, .body, count: 1 << 20) == .send)
        gate.newRequest(one)
        gate.acknowledged()
        // A request from before the acknowledgement is answered without credit; the next one waits for it.
        #expect(gate.admit(one, .body, count: 1) == .send)
        gate.newRequest(one)
        #expect(gate.admit(one, .body, count: 1) == .hold)
        // `end` and `retry` need no credit.
        #expect(gate.admit(two, .end, count: 0) == .send)
    }

    /// A request the acknowledgement does not hold for (one that came through the gateway's worker mesh) is
    /// answered without credit; the next one on the sid that it does hold for waits again.
    @Test func requestOutsideTheAcknowledgementSendsFreely() {
        var gate = CreditGate()
        gate.acknowledged()
        gate.newRequest(one, creditApplies: false)
        #expect(gate.admit(one, .headers, count: 100) == .send)
        #expect(gate.admit(one, .body, count: 1 << 20) == .send)
        gate.newRequest(one)
        #expect(gate.admit(one, .body, count: 1) == .hold)
    }

    @Test func splitsBodiesAndLetsHeadsOverdraw() {
        var gate = CreditGate()
        gate.acknowledged()
        gate.newRequest(one)
        #expect(gate.grant(one, 100).isEmpty)
        #expect(gate.admit(one, .body, count: 250) == .sendFirst(100))
        gate.hold(one, .body, [UInt8](repeating: 7, count: 150))
        #expect(gate.waitingBytes(one) == 150)
        // Later messages of the sid wait behind it, whatever their type.
        #expect(gate.admit(one, .end, count: 0) == .hold)
        gate.hold(one, .end, [])
        let released = gate.grant(one, 100)
        #expect(released.map(\.body.count) == [100])
        #expect(gate.waitingBytes(one) == 50)
        let rest = gate.grant(one, 60)
        #expect(rest.map(\.type) == [.body, .end] && rest.map(\.body.count) == [50, 0])
        // A head goes whole on any credit left; the credit goes below zero.
        #expect(gate.admit(one, .headers, count: 500) == .send)
        #expect(gate.admit(one, .body, count: 1) == .hold)
    }

    @Test func oneSidWaitingHoldsBackNoOther() {
        var gate = CreditGate()
        gate.acknowledged()
        gate.newRequest(one)
        gate.newRequest(two)
        gate.hold(one, .body, [1, 2, 3])
        _ = gate.grant(two, 10)
        #expect(gate.admit(two, .body, count: 10) == .send)
        gate.ended(one)
        #expect(gate.waitingBytes(one) == 0)
        gate.reset()
        #expect(gate.mode == .sendingFreely && gate.waitingBytes(two) == 0)
    }
}

@Suite struct NodeCoreCreditTests {
    static let big = [UInt8](repeating: 0x42, count: 300_000)

    static func credit(_ n: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(n).bigEndian, Array.init) }

    static func node() throws -> Harness {
        let node = try Harness(credit: true)
        node.handler.onStart = { request, session in
            if request.path == "/big" {
                try session.sendHeaders(status: 200, headers: [("Content-Length", "\(big.count)")])
                try session.write(big)
            } else {
                try session.respond(body: "hi")
            }
        }
        return node
    }

    @Test func waitsForCreditPerSessionOnceAcknowledged() throws {
        let node = try Self.node()
        defer { node.close() }
        try node.deliverQuietly([[], bytes("credit"), []])
        try node.deliver(sid(1), "uwsgi", try Uwsgi.packet("GET /big HTTP/1.1", "Host: h"))
        try node.deliver(sid(2), "uwsgi", try Uwsgi.packet("GET /small HTTP/1.1", "Host: h"))
        #expect(try node.replies(quietMilliseconds: 50) == [])
        let big = node.handler.sessions[0]
        #expect(big.bytesWaitingForCredit > 300_000)
        // The small session is answered on its own credit while the big one has none.
        try node.deliver(sid(2), "credit", Self.credit(1000))
        #expect(try node.replies(quietMilliseconds: 50) == ["headers:HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"])
        // The big one gets its head and the body cut to the credit left.
        try node.deliver(sid(1), "credit", Self.credit(100_000))
        let first = try node.replies(quietMilliseconds: 50)
        #expect(first.count == 2 && first[0].hasPrefix("headers:HTTP/1.1 200 OK"))
        let headLength = first[0].utf8.count - "headers:".utf8.count
        #expect(first[1].utf8.count - "body:".utf8.count == 100_000 - headLength)
        #expect(big.bytesWaitingForCredit == 300_000 - (100_000 - headLength))
        try node.deliver(sid(1), "credit", Self.credit(1 << 20))
        let rest = try node.replies(quietMilliseconds: 50)
        #expect(rest.count == 1 && rest[0].utf8.count - "body:".utf8.count == 300_000 - (100_000 - headLength))
        #expect(big.bytesWaitingForCredit == 0)
        #expect(node.handler.events.filter { $0 == .creditGranted }.count == 3)
    }

    @Test func aGatewayThatDoesNotAcknowledgeGetsEverythingAtOnce() throws {
        let node = try Self.node()
        defer { node.close() }
        try node.deliver(sid(1), "uwsgi", try Uwsgi.packet("GET /big HTTP/1.1", "Host: h"))
        let replies = try node.replies(quietMilliseconds: 50)
        #expect(replies.count == 2 && replies[1].utf8.count - "body:".utf8.count == 300_000)
    }

    @Test func endDropsWhatWaited() throws {
        let node = try Self.node()
        defer { node.close() }
        try node.deliverQuietly([[], bytes("credit"), []])
        try node.deliver(sid(1), "uwsgi", try Uwsgi.packet("GET /big HTTP/1.1", "Host: h"))
        let big = node.handler.sessions[0]
        #expect(big.bytesWaitingForCredit > 0)
        try node.deliver(sid(1), "end")
        #expect(big.bytesWaitingForCredit == 0)
        #expect(try node.replies(quietMilliseconds: 50) == [])
    }
}
