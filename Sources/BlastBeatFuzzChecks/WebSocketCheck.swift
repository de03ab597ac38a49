import BlastBeatCore

extension FuzzChecks {
    /// `WebSocketFrameDecoder`. Input: a flags byte (bit 0: require the mask, bit 1: allow RSV1), a byte
    /// that sets max-frame-size (125 + 8 × it), then the client's byte stream.
    /// - decoded whole and in pieces (one byte at a time for short inputs), it gives the same frames and
    ///   the same error;
    /// - every frame keeps the rules: length ≤ max-frame-size, control frames final and ≤ 125 bytes, RSV1
    ///   only where allowed, `.frame` after its `.header` with exactly the declared payload;
    /// - the frames re-encoded by `WebSocketFrameEncoder` (unmasked) decode to the same frames.
    @Sendable public static func webSocketFrames(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let flags = reader.byte()
        let requireMask = flags & 1 == 1
        let allowRSV1 = flags & 2 == 2
        let maxFrameSize = 125 + 8 * Int(reader.byte())
        let stream = reader.rest()
        func decoder() -> WebSocketFrameDecoder {
            WebSocketFrameDecoder(maxFrameSize: maxFrameSize, requireMask: requireMask, allowRSV1: allowRSV1)
        }
        let whole = stream.withUnsafeBytes { decodeFrames(decoder(), $0, pieces: [$0.count]) }
        let pieces = stream.withUnsafeBytes { decodeFrames(decoder(), $0, pieces: splitPoints(count: $0.count, seed: fnv1a($0))) }
        invariant(whole.frames == pieces.frames, "frames differ when fed in pieces")
        invariant(whole.error == pieces.error, "whole: \(String(describing: whole.error)), pieces: \(String(describing: pieces.error))")

        for frame in whole.frames {
            let header = frame.header
            invariant(header.payloadLength <= maxFrameSize, "frame of \(header.payloadLength) > max-frame-size")
            invariant(frame.payload.count == header.payloadLength, "payload is not the declared length")
            if header.opcode.isControl {
                invariant(header.fin && header.payloadLength <= 125, "bad control frame \(header)")
            }
            if header.rsv1 {
                invariant(allowRSV1 && (header.opcode == .text || header.opcode == .binary), "RSV1 on \(header)")
            }
        }

        var encoded: [UInt8] = []
        for frame in whole.frames {
            frame.payload.withUnsafeBytes {
                WebSocketFrameEncoder.writeFrame(
                    into: &encoded, opcode: frame.header.opcode, fin: frame.header.fin, rsv1: frame.header.rsv1, payload: $0)
            }
        }
        let again = encoded.withUnsafeBytes {
            decodeFrames(
                WebSocketFrameDecoder(maxFrameSize: maxFrameSize, requireMask: false, allowRSV1: true), $0, pieces: [$0.count])
        }
        invariant(again.error == nil && again.frames == whole.frames, "re-encoded frames decoded differently")
    }

    struct DecodedFrame: Equatable {
        var header: WebSocketFrameHeader
        var payload: [UInt8]
    }

    static func decodeFrames(
        _ start: WebSocketFrameDecoder, _ stream: UnsafeRawBufferPointer, pieces: [Int]
    ) -> (frames: [DecodedFrame], error: WebSocketError?) {
        var decoder = start
        var frames: [DecodedFrame] = []
        var payload: [UInt8] = []
        var pending: WebSocketFrameHeader? = nil
        var offset = 0
        for end in pieces + [stream.count] where end >= offset {
            while true {
                let result: (consumed: Int, event: WebSocketFrameDecoder.Event?)
                do throws(WebSocketError) {
                    result = try decoder.decode(UnsafeRawBufferPointer(rebasing: stream[offset..<end]), unmaskInto: &payload)
                } catch {
                    return (frames, error)
                }
                invariant(result.consumed <= end - offset, "consumed more than given")
                offset += result.consumed
                guard let event = result.event else {
                    invariant(offset == end, "no event but input left")
                    break
                }
                switch event {
                case .header(let header):
                    invariant(pending == nil, "two headers without a frame")
                    pending = header
                    payload = []
                case .frame(let header):
                    invariant(pending == header, ".frame \(header) after .header \(String(describing: pending))")
                    pending = nil
                    frames.append(DecodedFrame(header: header, payload: payload))
                }
            }
        }
        return (frames, nil)
    }

    /// `WebSocketMessageAssembler`. Input: a flags byte (bit 0: require the mask, bit 1: allow
    /// compression), a byte for max-frame-size (125 + 4 × it), one for max-message-size (8 × it), then
    /// the client's byte stream.
    /// - fed whole and in pieces, it gives the same events with the same payloads and the same error;
    /// - a message never exceeds max-message-size, uncompressed text is valid UTF-8, control payloads
    ///   are ≤ 125 bytes, a close reason is valid UTF-8, nothing is delivered after a close;
    /// - the events re-encoded as unfragmented frames assemble to the same events.
    @Sendable public static func webSocketMessages(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let flags = reader.byte()
        let requireMask = flags & 1 == 1
        let allowCompression = flags & 2 == 2
        let maxFrameSize = 125 + 4 * Int(reader.byte())
        let maxMessageSize = 8 * Int(reader.byte())
        let stream = reader.rest()
        func assembler(requireMask: Bool) -> WebSocketMessageAssembler {
            WebSocketMessageAssembler(
                maxFrameSize: maxFrameSize, maxMessageSize: maxMessageSize, requireMask: requireMask,
                allowCompression: allowCompression)
        }
        let whole = stream.withUnsafeBytes { assemble(assembler(requireMask: requireMask), $0, pieces: [$0.count]) }
        let pieces = stream.withUnsafeBytes {
            assemble(assembler(requireMask: requireMask), $0, pieces: splitPoints(count: $0.count, seed: fnv1a($0)))
        }
        invariant(whole.events == pieces.events, "events differ when fed in pieces")
        invariant(whole.error == pieces.error, "whole: \(String(describing: whole.error)), pieces: \(String(describing: pieces.error))")

        var encoded: [UInt8] = []
        for (index, message) in whole.events.enumerated() {
            switch message.event {
            case .text(let compressed), .binary(let compressed):
                invariant(message.payload.count <= maxMessageSize, "message of \(message.payload.count) > max-message-size")
                invariant(!compressed || allowCompression, "compressed message without compression")
                if case .text(false) = message.event {
                    invariant(UTF8Validator.isValid(message.payload.span.bytes), "text message is not UTF-8")
                }
            case .ping, .pong:
                invariant(message.payload.count <= 125, "control payload > 125")
            case .close(let code):
                invariant(message.payload.count <= 125, "close payload > 125")
                invariant((code == nil) == message.payload.isEmpty, "close code without payload or payload without code")
                if message.payload.count >= 2 {
                    invariant(UTF8Validator.isValid(message.payload.span.bytes.extracting(2...)), "close reason is not UTF-8")
                }
                invariant(index == whole.events.count - 1, "an event after close")
            }
            // Unfragmented frames of the same messages; large messages split in two to reach continuation.
            let (opcode, rsv1): (WebSocketOpcode, Bool) =
                switch message.event {
                case .text(let compressed): (.text, compressed)
                case .binary(let compressed): (.binary, compressed)
                case .ping: (.ping, false)
                case .pong: (.pong, false)
                case .close: (.close, false)
                }
            message.payload.withUnsafeBytes { payload in
                if opcode.isControl || payload.count <= maxFrameSize {
                    WebSocketFrameEncoder.writeFrame(into: &encoded, opcode: opcode, rsv1: rsv1, payload: payload)
                } else {
                    var sent = 0
                    while sent < payload.count {
                        let end = min(payload.count, sent + maxFrameSize)
                        WebSocketFrameEncoder.writeFrame(
                            into: &encoded, opcode: sent == 0 ? opcode : .continuation, fin: end == payload.count,
                            rsv1: sent == 0 && rsv1, payload: UnsafeRawBufferPointer(rebasing: payload[sent..<end]))
                        sent = end
                    }
                }
            }
        }
        let again = encoded.withUnsafeBytes { assemble(assembler(requireMask: false), $0, pieces: [$0.count]) }
        invariant(again.error == nil && again.events == whole.events, "re-encoded messages assembled differently")
    }

    struct AssembledEvent: Equatable {
        var event: WebSocketMessageEvent
        var payload: [UInt8]
    }

    static func assemble(
        _ start: WebSocketMessageAssembler, _ stream: UnsafeRawBufferPointer, pieces: [Int]
    ) -> (events: [AssembledEvent], error: WebSocketError?) {
        var assembler = start
        var events: [AssembledEvent] = []
        var offset = 0
        var closed = false
        for end in pieces + [stream.count] where end >= offset {
            while true {
                let result: (consumed: Int, event: WebSocketMessageEvent?)
                do throws(WebSocketError) {
                    result = try assembler.feed(UnsafeRawBufferPointer(rebasing: stream[offset..<end]).bytes)
                } catch {
                    invariant(!closed, "an error after close")
                    return (events, error)
                }
                invariant(result.consumed <= end - offset, "consumed more than given")
                offset += result.consumed
                guard let event = result.event else {
                    invariant(offset == end, "no event but input left")
                    break
                }
                invariant(!closed, "an event after close")
                switch event {
                case .text, .binary:
                    events.append(AssembledEvent(event: event, payload: assembler.messagePayload))
                case .ping, .pong:
                    events.append(AssembledEvent(event: event, payload: assembler.controlPayload))
                case .close:
                    closed = true
                    invariant(assembler.closeReason.elementsEqual(assembler.controlPayload.dropFirst(2)), "closeReason")
                    events.append(AssembledEvent(event: event, payload: assembler.controlPayload))
                }
            }
        }
        return (events, nil)
    }
}
