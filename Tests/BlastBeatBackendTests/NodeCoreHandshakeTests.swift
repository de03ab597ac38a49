import Glibc
import Testing

@testable import BlastBeatBackend

/// Handshakes that a peer ends on purpose, against a hand-written ZMTP 3 peer (libzmq never sends what these
/// tests need).
@Suite struct NodeCoreHandshakeTests {
    /// A ZMTP ERROR whose reason is not a ZAP status code (what BlastBeat's gateway sends when it refuses a
    /// node key) gets no failure event from libzmq, and libzmq never reconnects after it. The node must
    /// notice from the bare disconnection, say so, and connect anew itself.
    @Test func errorWithACustomReasonIsReportedAndRetried() throws {
        let peer = RawZMTPPeer()
        defer { peer.close() }
        let core = try NodeCore(identity: "node", endpoints: ["tcp://127.0.0.1:\(peer.port)"])
        defer { core.close() }

        // Each accepted connection gets the NULL greeting, then ERROR "not today" instead of READY.
        var refused = 0
        let deadline = ContinuousClock.now + .seconds(5)
        while refused < 2 && ContinuousClock.now < deadline {
            try core.pump(handler: Recorder(), timeoutMilliseconds: 10)
            if peer.refuseOneConnection() { refused += 1 }
        }
        #expect(refused == 2)  // the second one is the node's own reconnection (libzmq would not come back)
        #expect(core.reconnects >= 1)
        #expect(core.handshakeFailures >= 1)
        #expect("\(core.links[0])".contains("failing(the gateway ended the handshake"))
        #expect(core.announcements == 0)
    }
}

/// A TCP listener on 127.0.0.1 that speaks just enough ZMTP 3.0 (RFC 23) to end handshakes with ERROR.
final class RawZMTPPeer {
    private let listener: Int32
    let port: UInt16

    init() {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(listener >= 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(bound == 0 && listen(listener, 4) == 0, "bind/listen: errno \(errno)")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
    }

    /// Accepts a connection if one is waiting (10 ms at most), exchanges greetings, reads the node's READY,
    /// answers ERROR and closes. Returns whether a connection was refused.
    func refuseOneConnection() -> Bool {
        var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 10) == 1 else { return false }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return false }
        defer { Glibc.close(connection) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        // Greeting: signature, version 3.0, mechanism NULL, as-server 0, filler.
        var greeting: [UInt8] = [0xFF] + [UInt8](repeating: 0, count: 8) + [0x7F, 3, 0]
        greeting += Array("NULL".utf8) + [UInt8](repeating: 0, count: 16)
        greeting += [UInt8](repeating: 0, count: 32)
        precondition(greeting.count == 64)
        guard send(connection, greeting), receive(connection, count: 64)?.prefix(1) == [0xFF] else { return false }
        // The node's READY: a short command frame (flags 0x04, size, body).
        guard let header = receive(connection, count: 2), header[0] == 0x04,
            receive(connection, count: Int(header[1])) != nil
        else { return false }
        let reason = Array("not today".utf8)
        let body = [5] + Array("ERROR".utf8) + [UInt8(reason.count)] + reason
        return send(connection, [0x04, UInt8(body.count)] + body)
    }

    private func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    private func receive(_ fd: Int32, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + filled, count - filled, 0) }
            if n <= 0 { return nil }
            filled += n
        }
        return bytes
    }

    func close() {
        Glibc.close(listener)
    }
}
