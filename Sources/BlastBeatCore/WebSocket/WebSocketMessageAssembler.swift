/// What the message assembler delivers: a whole data message or one control frame.
package enum WebSocketMessageEvent: Equatable, Sendable {
    /// A complete text message, in `messagePayload`. When `compressed` is false its UTF-8 has been checked. When
    /// true (RSV1, permessage-deflate) the payload is still deflated and nothing about it has been checked: inflate
    /// it, then check it with `UTF8Validator` and fail with 1007 if that fails.
    case text(compressed: Bool)
    /// A complete binary message, in `messagePayload` (deflated when `compressed`).
    case binary(compressed: Bool)
    /// A ping; its payload (at most 125 bytes) is in `controlPayload` and goes back in the pong.
    case ping
    /// A pong, payload in `controlPayload`. Unsolicited pongs are allowed (RFC 6455 §5.5.3).
    case pong
    /// A valid close frame: `code` is nil when the payload was empty; the reason (valid UTF-8, possibly empty) is
    /// `closeReason`. All later input is ignored.
    case close(code: WebSocketCloseCode?)
}

/// Turns a client's frames into messages (RFC 6455 §5.4): joins fragments, checks their order, sizes and UTF-8,
/// and hands out control frames as soon as they are complete, even between the fragments of a message.
///
/// It drives a `WebSocketFrameDecoder` and owns two buffers, so that a ping in the middle of a fragmented message
/// does not touch the message collected so far. The payloads stay readable until the next `feed` call; after that,
/// `messagePayload` is reused (capacity kept) when the next data message starts, and `controlPayload` when the next
/// control frame starts.
///
/// Rules checked here, beyond the frame rules of the decoder:
/// - continuation frame with no message started: `unexpectedContinuation` (1002)
/// - text or binary frame while a message is unfinished: `expectedContinuation` (1002)
/// - fragments adding up to more than `maxMessageSize`: `messageTooLarge` (1009), checked from each frame's declared
///   length before its payload is read. For a compressed message this bounds the compressed size; the inflater
///   bounds the decompressed size.
/// - uncompressed text that is not UTF-8: `invalidUTF8` (1007), raised at the first bad byte, even in the middle of
///   a frame, with the validator state carried from one fragment to the next
/// - close payload of 1 byte or with an invalid code: 1002; with a reason that is not UTF-8: 1007.
///
/// After an error every later call throws the same error again.
package struct WebSocketMessageAssembler {
    /// Where the message layer is. The frame-level resume point lives in the decoder.
    private enum State {
        /// No data message in progress.
        case idle
        /// A data message started and is waiting for payload or fragments. `validator` is present for uncompressed
        /// text and has seen every byte collected in `messagePayload` so far.
        case assembling(opcode: WebSocketOpcode, compressed: Bool, validator: UTF8Validator?)
        /// A close frame was delivered; further input is discarded.
        case closed
        /// The connection is being failed with this error.
        case failed(WebSocketError)
    }

    package let maxMessageSize: Int
    private var decoder: WebSocketFrameDecoder
    private var state: State = .idle
    /// True between a control frame's `.header` and `.frame`: its payload goes to `controlPayload`.
    private var readingControlFrame = false

    /// Payload of the last `.text` / `.binary` event (or the message being assembled).
    package private(set) var messagePayload: [UInt8] = []
    /// Payload of the last `.ping` / `.pong` / `.close` event.
    package private(set) var controlPayload: [UInt8] = []

    /// - Parameters:
    ///   - maxFrameSize: largest payload of one frame (`frameTooLarge`, 1009).
    ///   - maxMessageSize: largest total payload of one data message (`messageTooLarge`, 1009).
    ///   - requireMask: true on the server.
    ///   - allowCompression: true when permessage-deflate was negotiated (RSV1 allowed on the first data frame).
    package init(maxFrameSize: Int, maxMessageSize: Int, requireMask: Bool = true, allowCompression: Bool = false) {
        self.maxMessageSize = maxMessageSize
        self.decoder = WebSocketFrameDecoder(
            maxFrameSize: maxFrameSize,
            requireMask: requireMask,
            allowRSV1: allowCompression
        )
    }

    /// The reason text of the last `.close` event (bytes 2... of its payload).
    package var closeReason: ArraySlice<UInt8> {
        self.controlPayload.count >= 2 ? self.controlPayload[2...] : []
    }

    /// True when no frame or fragmented message is partly received (a clean place for the TCP stream to end).
    package var isAtMessageBoundary: Bool {
        guard self.decoder.isAtFrameBoundary else { return false }
        switch self.state {
        case .idle, .closed: return true
        case .assembling, .failed: return false
        }
    }

    /// Consumes bytes from the start of `input` up to the next complete message or control frame.
    ///
    /// - Returns: bytes consumed, and the event or nil once all of `input` has been consumed. Loop until nil, with
    ///   the unconsumed rest of the input, as for `WebSocketFrameDecoder.decode`. After `.close`, every call
    ///   consumes all its input and returns nil.
    package mutating func feed(_ input: RawSpan) throws(WebSocketError) -> (consumed: Int, event: WebSocketMessageEvent?) {
        try input.withUnsafeBytes { (raw) throws(WebSocketError) in try feed(buffer: raw) }
    }

    private mutating func feed(
        buffer input: UnsafeRawBufferPointer
    ) throws(WebSocketError) -> (consumed: Int, event: WebSocketMessageEvent?) {
        switch self.state {
        case .failed(let error): throw error
        case .closed: return (input.count, nil)
        case .idle, .assembling: break
        }
        var index = 0
        do throws(WebSocketError) {
            while true {
                let rest = UnsafeRawBufferPointer(rebasing: input[index...])
                let consumed: Int
                let event: WebSocketFrameDecoder.Event?
                if self.readingControlFrame {
                    (consumed, event) = try self.decoder.decode(rest, unmaskInto: &self.controlPayload)
                } else {
                    let before = self.messagePayload.count
                    (consumed, event) = try self.decoder.decode(rest, unmaskInto: &self.messagePayload)
                    if self.messagePayload.count > before {
                        try self.validateText(from: before)
                    }
                }
                index += consumed
                guard let event else { return (index, nil) }
                switch event {
                case .header(let header):
                    try self.frameStarted(header)
                case .frame(let header):
                    if let message = try self.frameFinished(header) {
                        return (index, message)
                    }
                }
            }
        } catch {
            self.state = .failed(error)
            throw error
        }
    }

    private mutating func frameStarted(_ header: WebSocketFrameHeader) throws(WebSocketError) {
        switch (header.opcode, self.state) {
        case (.close, _), (.ping, _), (.pong, _):
            self.readingControlFrame = true
            self.controlPayload.removeAll(keepingCapacity: true)

        case (.text, .idle), (.binary, .idle):
            guard header.payloadLength <= self.maxMessageSize else {
                throw .messageTooLarge(limit: self.maxMessageSize)
            }
            self.messagePayload.removeAll(keepingCapacity: true)
            let validator: UTF8Validator? = header.opcode == .text && !header.rsv1 ? UTF8Validator() : nil
            self.state = .assembling(opcode: header.opcode, compressed: header.rsv1, validator: validator)

        case (.text, .assembling), (.binary, .assembling):
            throw .expectedContinuation(header.opcode)

        case (.continuation, .assembling):
            guard header.payloadLength <= self.maxMessageSize - self.messagePayload.count else {
                throw .messageTooLarge(limit: self.maxMessageSize)
            }

        case (.continuation, .idle):
            throw .unexpectedContinuation

        case (_, .closed), (_, .failed):
            preconditionFailure("WebSocketMessageAssembler: frame \(header) after close or failure")
        }
    }

    /// Checks the bytes that the last decode call appended to `messagePayload` from `start` on.
    private mutating func validateText(from start: Int) throws(WebSocketError) {
        guard case .assembling(let opcode, let compressed, var validator?) = self.state else { return }
        let valid = self.messagePayload.withUnsafeBytes {
            validator.feed(unchecked: UnsafeRawBufferPointer(rebasing: $0[start...]))
        }
        guard valid else {
            throw .invalidUTF8(offset: validator.validatedCount)
        }
        self.state = .assembling(opcode: opcode, compressed: compressed, validator: validator)
    }

    private mutating func frameFinished(_ header: WebSocketFrameHeader) throws(WebSocketError) -> WebSocketMessageEvent?
    {
        switch header.opcode {
        case .ping:
            self.readingControlFrame = false
            return .ping
        case .pong:
            self.readingControlFrame = false
            return .pong
        case .close:
            self.readingControlFrame = false
            let parsed = self.controlPayload.withUnsafeBytes { bytes in
                Result { () throws(WebSocketError) in try WebSocketCloseCode(closePayload: bytes) }
            }
            let code = try parsed.get()
            self.state = .closed
            return .close(code: code)
        case .text, .binary, .continuation:
            guard header.fin else { return nil }
            guard case .assembling(let opcode, let compressed, let validator) = self.state else {
                preconditionFailure("WebSocketMessageAssembler: \(header) finished outside a message")
            }
            if let validator, !validator.isComplete {
                throw .invalidUTF8(offset: self.messagePayload.count)
            }
            self.state = .idle
            return opcode == .text ? .text(compressed: compressed) : .binary(compressed: compressed)
        }
    }
}
