import BlastBeatCore

/// How a test frame writes its payload length.
enum FrameLengthEncoding: Sendable {
    /// 7, 16 or 64 bits, whichever is shortest (what RFC 6455 asks of senders).
    case minimal
    /// Always code 126 + 16 bits.
    case sixteenBit
    /// Always code 127 + 64 bits.
    case sixtyFourBit
}

/// Builds the raw bytes of a frame as a client would send it (masked unless `maskKey` is nil).
func clientFrame(
    _ opcode: UInt8,
    fin: Bool = true,
    rsv: UInt8 = 0,
    payload: [UInt8] = [],
    maskKey: [UInt8]? = [0x37, 0xFA, 0x21, 0x3D],
    length: FrameLengthEncoding = .minimal
) -> [UInt8] {
    var bytes: [UInt8] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
    let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
    let count = payload.count
    switch length {
    case .minimal where count < 126:
        bytes.append(maskBit | UInt8(count))
    case .minimal where count < 65536, .sixteenBit:
        bytes += [maskBit | 126, UInt8(count >> 8), UInt8(count & 0xFF)]
    case .minimal, .sixtyFourBit:
        bytes.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: UInt64(count) >> UInt64(shift)))
        }
    }
    if let maskKey {
        bytes += maskKey
        for (index, byte) in payload.enumerated() {
            bytes.append(byte ^ maskKey[index % 4])
        }
    } else {
        bytes += payload
    }
    return bytes
}

/// A client frame by opcode.
func clientFrame(
    _ opcode: WebSocketOpcode,
    fin: Bool = true,
    rsv: UInt8 = 0,
    payload: [UInt8] = [],
    length: FrameLengthEncoding = .minimal
) -> [UInt8] {
    clientFrame(opcode.rawValue, fin: fin, rsv: rsv, payload: payload, length: length)
}

func clientFrame(_ opcode: WebSocketOpcode, fin: Bool = true, rsv: UInt8 = 0, _ text: String) -> [UInt8] {
    clientFrame(opcode.rawValue, fin: fin, rsv: rsv, payload: Array(text.utf8))
}

/// A decoded frame as tests compare it.
struct DecodedFrame: Equatable, CustomStringConvertible {
    var header: WebSocketFrameHeader
    var payload: [UInt8]
    var description: String { "\(self.header) \(self.payload.count) bytes" }
}

/// Runs `bytes` through a frame decoder in reads of `chunkSize` bytes (0: all at once), following the decoder's
/// contract (loop until the event is nil), and checks that every `.header` is followed by its `.frame`.
func decodeFrames(
    _ bytes: [UInt8],
    chunkSize: Int,
    maxFrameSize: Int = 1 << 20,
    requireMask: Bool = true,
    allowRSV1: Bool = false
) throws(WebSocketError) -> [DecodedFrame] {
    var decoder = WebSocketFrameDecoder(maxFrameSize: maxFrameSize, requireMask: requireMask, allowRSV1: allowRSV1)
    var frames: [DecodedFrame] = []
    var payload: [UInt8] = []
    var pendingHeader: WebSocketFrameHeader?
    for read in WebSocketTestSupport.chunks(bytes, size: chunkSize) {
        var offset = 0
        while true {
            let result = read.withUnsafeBytes { buffer in
                Result { () throws(WebSocketError) in
                    try decoder.decode(UnsafeRawBufferPointer(rebasing: buffer[offset...]), unmaskInto: &payload)
                }
            }
            let (consumed, event) = try result.get()
            offset += consumed
            guard let event else {
                precondition(offset == read.count, "nil event before all input was consumed")
                break
            }
            switch event {
            case .header(let header):
                precondition(pendingHeader == nil, "two headers without a frame")
                pendingHeader = header
                payload.removeAll()
            case .frame(let header):
                precondition(pendingHeader == header, "frame does not match its header")
                pendingHeader = nil
                frames.append(DecodedFrame(header: header, payload: payload))
            }
        }
    }
    return frames
}

/// One assembled event and the payload that came with it.
struct AssembledEvent: Equatable, CustomStringConvertible {
    var event: WebSocketMessageEvent
    var payload: [UInt8]
    var description: String { "\(self.event) \(String(decoding: self.payload, as: UTF8.self).debugDescription)" }

    init(_ event: WebSocketMessageEvent, _ payload: [UInt8]) {
        self.event = event
        self.payload = payload
    }

    init(_ event: WebSocketMessageEvent, _ text: String) {
        self.init(event, Array(text.utf8))
    }
}

/// Runs `bytes` through an assembler in reads of `chunkSize` (0: all at once) and collects its events. The payload
/// recorded for `.close` is the reason.
func assembleMessages(
    _ bytes: [UInt8],
    chunkSize: Int,
    maxFrameSize: Int = 1 << 20,
    maxMessageSize: Int = 1 << 20,
    allowCompression: Bool = false
) throws(WebSocketError) -> [AssembledEvent] {
    var assembler = WebSocketMessageAssembler(
        maxFrameSize: maxFrameSize,
        maxMessageSize: maxMessageSize,
        allowCompression: allowCompression
    )
    var events: [AssembledEvent] = []
    for read in WebSocketTestSupport.chunks(bytes, size: chunkSize) {
        var offset = 0
        while true {
            let result = read.withUnsafeBytes { buffer in
                Result { () throws(WebSocketError) in
                    try assembler.feed(UnsafeRawBufferPointer(rebasing: buffer[offset...]).bytes)
                }
            }
            let (consumed, event) = try result.get()
            offset += consumed
            guard let event else {
                precondition(offset == read.count, "nil event before all input was consumed")
                break
            }
            switch event {
            case .text, .binary: events.append(AssembledEvent(event, assembler.messagePayload))
            case .ping, .pong: events.append(AssembledEvent(event, assembler.controlPayload))
            case .close: events.append(AssembledEvent(event, Array(assembler.closeReason)))
            }
        }
    }
    return events
}

/// Runs `body` and returns the WebSocketError it throws, or nil (any other error fails the test).
func webSocketError<T>(_ body: () throws -> T) -> WebSocketError? {
    do {
        _ = try body()
        return nil
    } catch let error as WebSocketError {
        return error
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
}

/// One `decode` call on `bytes`.
func decodeFrameOnce(
    _ decoder: inout WebSocketFrameDecoder,
    _ bytes: [UInt8],
    into payload: inout [UInt8]
) throws(WebSocketError) -> (consumed: Int, event: WebSocketFrameDecoder.Event?) {
    let result = bytes.withUnsafeBytes { buffer in
        Result { () throws(WebSocketError) in try decoder.decode(buffer, unmaskInto: &payload) }
    }
    return try result.get()
}

/// One `feed` call on `bytes`.
func feedAssemblerOnce(
    _ assembler: inout WebSocketMessageAssembler,
    _ bytes: [UInt8]
) throws(WebSocketError) -> (consumed: Int, event: WebSocketMessageEvent?) {
    let result = bytes.withUnsafeBytes { buffer in
        Result { () throws(WebSocketError) in try assembler.feed(buffer.bytes) }
    }
    return try result.get()
}

/// Byte utilities for the WebSocket tests, namespaced so their plain names cannot clash with other suites' helpers.
enum WebSocketTestSupport {
    /// Deterministic pseudo-random bytes (SplitMix64), so failures reproduce.
    static func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            for shift in stride(from: 0, to: 64, by: 8) where bytes.count < count {
                bytes.append(UInt8(truncatingIfNeeded: z >> UInt64(shift)))
            }
        }
        return bytes
    }

    /// Splits `bytes` into reads of `chunkSize` bytes (0: one read with everything).
    static func chunks(_ bytes: [UInt8], size chunkSize: Int) -> [[UInt8]] {
        guard chunkSize > 0 else { return [bytes] }
        return stride(from: 0, to: bytes.count, by: chunkSize).map {
            Array(bytes[$0..<min($0 + chunkSize, bytes.count)])
        }
    }

    /// Hex dump for test descriptions.
    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: " ")
    }

    /// Bytes from a hex string like "f2 48 cd".
    static func bytes(hex: String) -> [UInt8] {
        hex.split(separator: " ").map { UInt8($0, radix: 16)! }
    }
}
