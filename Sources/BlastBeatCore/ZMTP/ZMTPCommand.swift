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
        /// The worker process the connection asks for (`X-BlastBeat-Worker`, WorkerLabel.swift).
        package var workerLabel: WorkerLabel

        package init(socketType: [UInt8], identity: [UInt8], workerLabel: WorkerLabel = .absent) {
            self.socketType = socketType
            self.identity = identity
            self.workerLabel = workerLabel
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
            let value = UnsafeRawBufferPointer(rebasing: data[i..<i + valueSize])
            i += valueSize
            if HTTPSyntax.equalsIgnoringCase(name, "socket-type") {
                ready.socketType = Array(value)
                sawSocketType = true
            } else if HTTPSyntax.equalsIgnoringCase(name, "identity") {
                ready.identity = Array(value)
            } else if HTTPSyntax.equalsIgnoringCase(name, "x-blastbeat-worker") {  // WorkerLabel.propertyName
                ready.workerLabel = WorkerLabel.parse(value)
            }
        }
        return sawSocketType ? ready : nil
    }

    /// Socket types a ROUTER may talk to (RFC 28: DEALER, REQ and ROUTER).
    package static func isRouterCompatible(_ socketType: [UInt8]) -> Bool {
        socketType.elementsEqual("DEALER".utf8) || socketType.elementsEqual("REQ".utf8)
            || socketType.elementsEqual("ROUTER".utf8)
    }

    /// The gateway's metadata (in READY, or in CURVE's READY box): Socket-Type ROUTER, no identity, and how many
    /// worker processes serve (`X-BlastBeat-Workers`, decimal: a backend opens a connection to each, WorkerLabel.swift).
    package static func routerMetadata(workers: Int) -> [UInt8] {
        let count = Array(String(workers).utf8)
        return property("Socket-Type", Array("ROUTER".utf8)) + property(WorkerLabel.countPropertyName, count)
    }

    /// The gateway's NULL READY as a whole command frame (short form: the metadata is far below 255 bytes).
    package static func routerReadyFrame(workers: Int) -> [UInt8] {
        let body: [UInt8] = [5] + Array("READY".utf8) + routerMetadata(workers: workers)
        return [ZMTPFrame.command, UInt8(body.count)] + body
    }

    /// One metadata property: `name-size (1) · name · value-size (4, network order) · value`.
    private static func property(_ name: String, _ value: [UInt8]) -> [UInt8] {
        [UInt8(name.utf8.count)] + Array(name.utf8) + withUnsafeBytes(of: UInt32(value.count).bigEndian, Array.init) + value
    }

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
