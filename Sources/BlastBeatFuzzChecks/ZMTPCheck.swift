import BlastBeatCore

extension FuzzChecks {
    /// The ZMTP codec. Input: a selector byte, then the bytes for one of:
    /// 0. greeting check (64 bytes, padded with zeros) for NULL and CURVE: accepted only with a valid
    ///    signature, version ≥ 3 and that mechanism; the signature prefix check agrees with the full check;
    /// 1. frame header decode: a decoded header re-encodes (`encodeHeader`) to one that decodes to the same
    ///    size, MORE and COMMAND; reserved flags and COMMAND+MORE are refused; the size is the header's bytes;
    /// 2. command parse, READY metadata and PING: a parsed command's name and data tile the body; READY
    ///    metadata re-encoded from what was read parses to the same properties; a PONG answer is a
    ///    well-formed command frame echoing the PING's context.
    @Sendable public static func zmtp(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let selector = reader.byte() % 3
        let bytes = reader.rest()
        switch selector {
        case 0: checkGreeting(bytes)
        case 1: bytes.withUnsafeBytes(checkFrameHeader)
        default: bytes.withUnsafeBytes(checkCommand)
        }
    }

    private static func checkGreeting(_ bytes: [UInt8]) {
        let greeting = Array((bytes + [UInt8](repeating: 0, count: ZMTPGreeting.size)).prefix(ZMTPGreeting.size))
        greeting.withUnsafeBytes { greeting in
            for mechanism in [ZMTPGreeting.Mechanism.null, .curve] {
                let refusal = ZMTPGreeting.check(greeting.bytes, expecting: mechanism)
                let signatureOK = greeting[0] == 0xFF && greeting[9] & 1 == 1
                invariant(
                    ZMTPGreeting.signatureLooksValid(UnsafeRawBufferPointer(rebasing: greeting[0..<10]).bytes) == signatureOK,
                    "signature check disagrees")
                for length in 0...10 {
                    // A prefix of a valid signature always looks valid.
                    if signatureOK {
                        invariant(
                            ZMTPGreeting.signatureLooksValid(UnsafeRawBufferPointer(rebasing: greeting[0..<length]).bytes),
                            "a prefix of a valid signature refused")
                    }
                }
                if refusal == nil {
                    invariant(signatureOK && greeting[10] >= 3, "accepted a greeting with a bad signature or version")
                    let name = mechanism == .null ? "NULL" : "CURVE"
                    invariant(Array(greeting[12..<(12 + name.utf8.count)]) == Array(name.utf8), "accepted another mechanism")
                    invariant(12 + name.utf8.count == 32 || greeting[12 + name.utf8.count] == 0, "accepted a longer mechanism name")
                }
            }
            let ours = ZMTPGreeting.bytes(.curve)
            invariant(ZMTPGreeting.check(ours.span.bytes, expecting: .curve) == nil, "our CURVE greeting refused")
        }
    }

    private static func checkFrameHeader(_ bytes: UnsafeRawBufferPointer) {
        switch ZMTPFrame.decodeHeader(bytes.bytes) {
        case .needMore:
            invariant(bytes.isEmpty || bytes.count < (bytes[0] & ZMTPFrame.long != 0 ? 9 : 2), "needMore with a whole header")
        case .invalid:
            invariant(bytes[0] & 0xF8 != 0 || bytes[0] & 0x05 == 0x05, "refused a valid flags byte")
        case .header(let header):
            invariant(header.flags & 0xF8 == 0 && header.flags & 0x05 != 0x05, "accepted reserved flags")
            invariant(header.headerSize == (header.flags & ZMTPFrame.long != 0 ? 9 : 2), "header size")
            invariant(header.headerSize <= bytes.count, "header longer than the input")
            guard header.bodySize <= UInt64(Int.max) else { return }
            var encoded = [UInt8](repeating: 0, count: ZMTPFrame.maxHeaderSize)
            let size = Int(header.bodySize)
            let count = encoded.withUnsafeMutableBytes {
                ZMTPFrame.encodeHeader(size: size, more: header.hasMore, command: header.isCommand, into: $0.baseAddress!)
            }
            invariant(count == ZMTPFrame.headerSize(for: size), "encodeHeader size disagrees with headerSize")
            let again = ZMTPFrame.decodeHeader(encoded.span.bytes.extracting(..<count))
            guard case .header(let reencoded) = again else { fatalError("fuzz invariant: re-encoded header gave \(again)") }
            invariant(
                reencoded.bodySize == header.bodySize && reencoded.hasMore == header.hasMore
                    && reencoded.isCommand == header.isCommand,
                "re-encoded header differs")
        }
    }

    private static func checkCommand(_ body: UnsafeRawBufferPointer) {
        guard let command = ZMTPCommand.parse(body) else {
            invariant(body.isEmpty || Int(body[0]) + 1 > body.count, "refused a well-formed command")
            return
        }
        invariant(1 + command.name.count + command.data.count == body.count, "name and data do not tile the body")
        if let ready = ZMTPCommand.parseReady(command.data.bytes) {
            var metadata: [UInt8] = []
            for (name, value) in [("Socket-Type", ready.socketType), ("Identity", ready.identity)] {
                metadata.append(UInt8(name.utf8.count))
                metadata += Array(name.utf8)
                metadata += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value.count >> $0) }
                metadata += value
            }
            let again = ZMTPCommand.parseReady(metadata.span.bytes)
            invariant(again == ready, "READY metadata re-encoded parses differently")
        }
        if let pong = ZMTPCommand.pongFrame(answering: command.data.bytes) {
            guard case .header(let header) = ZMTPFrame.decodeHeader(pong.span.bytes),
                header.isCommand, !header.hasMore, Int(header.bodySize) == pong.count - header.headerSize
            else { fatalError("fuzz invariant: PONG frame has a bad header") }
            let parsed = pong.withUnsafeBytes { frame in
                ZMTPCommand.parse(UnsafeRawBufferPointer(rebasing: frame[header.headerSize...])).map {
                    (name: Array($0.name), data: Array($0.data))
                }
            }
            guard let parsed else { fatalError("fuzz invariant: PONG body does not parse") }
            invariant(parsed.name == Array("PONG".utf8), "PONG named otherwise")
            invariant(parsed.data == Array(command.data.dropFirst(2)), "PONG does not echo the context")
        }
    }
}
