/// ZMTP 3.x commands the gateway reads or writes: READY (the NULL handshake), PING and PONG
/// (3.1 heartbeats) and ERROR. A command body is `name-size (1) · name · data`.
package enum ZMTPCommand {
    /// A command's name and data, as views into its frame body.
    package struct Parsed {
        package var name: UnsafeRawBufferPointer
        package var data: UnsafeRawBufferPointer
    }

    package static func parse(_ body: UnsafeRawBufferPointer) -> Parsed? {
        guard let nameSize = body.first, body.count >= 1 + Int(nameSize) else { return nil }
        return Parsed(
            name: UnsafeRawBufferPointer(rebasing: body[1..<1 + Int(nameSize)]),
            data: UnsafeRawBufferPointer(rebasing: body[(1 + Int(nameSize))...]))
    }

    /// The properties of a peer's READY that matter to a ROUTER.
    package struct Ready: Equatable, Sendable {
        package var socketType: [UInt8]
        /// The peer's routing identity (`ZMQ_IDENTITY` / `ZMQ_ROUTING_ID`); empty when unset.
        package var identity: [UInt8]

        package init(socketType: [UInt8], identity: [UInt8]) {
            self.socketType = socketType
            self.identity = identity
        }
    }

    /// Reads READY's metadata: `name-size (1) · name · value-size (4, network order) · value`, repeated.
    /// Property names compare case-insensitively (RFC 37); unknown properties are ignored.
    package static func parseReady(_ data: RawSpan) -> Ready? {
        data.withUnsafeBytes { parseReady(unchecked: $0) }
    }

    private static func parseReady(unchecked data: UnsafeRawBufferPointer) -> Ready? {
        var ready = Ready(socketType: [], identity: [])
        var sawSocketType = false
        var i = 0
        while i < data.count {
            let nameSize = Int(data[i])
            i += 1
            guard nameSize > 0, data.count - i >= nameSize + 4 else { return nil }
            let name = UnsafeRawBufferPointer(rebasing: data[i..<i + nameSize])
            i += nameSize
            var valueSize = 0
            for _ in 0..<4 {
                valueSize = valueSize << 8 | Int(data[i])
                i += 1
            }
            guard data.count - i >= valueSize else { return nil }
            let value = Array(data[i..<i + valueSize])
            i += valueSize
            if HTTPSyntax.equalsIgnoringCase(name, "socket-type") {
                ready.socketType = value
                sawSocketType = true
            } else if HTTPSyntax.equalsIgnoringCase(name, "identity") {
                ready.identity = value
            }
        }
        return sawSocketType ? ready : nil
    }

    /// Socket types a ROUTER may talk to (RFC 28: DEALER, REQ and ROUTER).
    package static func isRouterCompatible(_ socketType: [UInt8]) -> Bool {
        socketType.elementsEqual("DEALER".utf8) || socketType.elementsEqual("REQ".utf8)
            || socketType.elementsEqual("ROUTER".utf8)
    }

    /// The gateway's metadata: Socket-Type ROUTER, no identity (in READY, or in CURVE's READY box).
    package static let routerMetadata: [UInt8] = [11] + Array("Socket-Type".utf8) + [0, 0, 0, 6] + Array("ROUTER".utf8)

    /// The gateway's NULL READY as a whole command frame.
    package static let routerReadyFrame: [UInt8] = {
        let body: [UInt8] = [5] + Array("READY".utf8) + routerMetadata
        return [ZMTPFrame.command, UInt8(body.count)] + body
    }()

    /// An ERROR command frame (sent before closing a connection during its handshake): `reason`,
    /// cut to 240 bytes so the frame keeps the short form, so a libzmq peer reports why it was refused.
    package static func errorFrame(_ reason: String) -> [UInt8] {
        let text = Array(reason.utf8.prefix(240))
        let body: [UInt8] = [5] + Array("ERROR".utf8) + [UInt8(text.count)] + text
        return [ZMTPFrame.command, UInt8(body.count)] + body
    }

    /// The PONG answering a PING whose data is `pingData` (`TTL (2) · context (0-16)`): it echoes
    /// the context. Nil when the PING is malformed.
    package static func pongFrame(answering pingData: RawSpan) -> [UInt8]? {
        guard pingData.byteCount >= 2, pingData.byteCount <= 2 + 16 else { return nil }
        let context = pingData.extracting(2...).withUnsafeBytes { Array($0) }
        let body: [UInt8] = [4] + Array("PONG".utf8) + context
        return [ZMTPFrame.command, UInt8(body.count)] + body
    }
}
