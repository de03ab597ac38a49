import BlastBeatCore
import BlastBeatSystem

/// The WebSocket half of a connection after its upgrade: frame reassembly, compression state and
/// the close handshake. One per upgraded connection (a class so the connection holds one pointer
/// while it speaks HTTP).
final class WebSocketSession {
    var assembler: WebSocketMessageAssembler
    let compression: PerMessageDeflateParameters?
    /// Created on first use: a zlib stream pair costs ~300 KiB, and many sockets never send a compressed message.
    private var deflateStream: DeflateStream?
    private var inflateStream: InflateStream?
    /// Scratch buffers reused for every message.
    var inflated: [UInt8] = []
    var frame: [UInt8] = []
    /// Idle pings and the close handshake (WebSocketLiveness.swift).
    var liveness = WebSocketLiveness.open

    init(maxMessageSize: Int, compression: PerMessageDeflateParameters?) {
        self.assembler = WebSocketMessageAssembler(
            maxFrameSize: maxMessageSize, maxMessageSize: maxMessageSize, requireMask: true,
            allowCompression: compression != nil)
        self.compression = compression
    }

    func inflater() throws(ZlibError) -> InflateStream {
        if let inflateStream { return inflateStream }
        let stream = try InflateStream(parameters: compression!)
        inflateStream = stream
        return stream
    }

    func deflater() throws(ZlibError) -> DeflateStream {
        if let deflateStream { return deflateStream }
        let stream = try DeflateStream(parameters: compression!)
        deflateStream = stream
        return stream
    }

    // MARK: messages, whatever carries the frames (an HTTP/1.1 connection or an HTTP/2 stream)

    /// What became of client bytes (`receiveClientBytes`).
    enum ClientBytesOutcome {
        /// All used: messages delivered, pings answered.
        case consumed
        /// The client closed; the close was echoed through `reply` (RFC 6455 §5.5.1): the transport ends.
        case closedByClient
        /// The client broke the protocol, or a message could not be delivered: close with this code.
        case failed(WebSocketCloseCode, String)
    }

    /// Consumes client bytes as frames: complete messages go to `deliver` (text or binary, decompressed up to
    /// `limit`), pongs and the close echo to `reply`. Both transports' frame handling.
    func receiveClientBytes(
        _ bytes: RawSpan, limit: Int, deliver: (_ isText: Bool, RawSpan) -> Void,
        reply: (RawSpan) -> Void
    ) -> ClientBytesOutcome {
        liveness.clientSpoke()
        var offset = 0
        while offset < bytes.byteCount && !liveness.isClosing {
            let event: WebSocketMessageEvent?
            do throws(WebSocketError) {
                let consumed: Int
                (consumed, event) = try assembler.feed(bytes.extracting(droppingFirst: offset))
                offset += consumed
            } catch {
                return .failed(error.closeCode, "\(error)")
            }
            guard let event else { break }
            switch event {
            case .text(let compressed), .binary(let compressed):
                let isText: Bool
                if case .text = event { isText = true } else { isText = false }
                if let code = deliverMessage(isText: isText, compressed: compressed, limit: limit, { deliver(isText, $0) }) {
                    return .failed(code, "a message that cannot be delivered (\(code.rawValue))")
                }
            case .ping:
                frame.removeAll(keepingCapacity: true)
                // A local reference: a span of the class's stored array would last one access only.
                let ping = assembler.controlPayload
                WebSocketFrameEncoder.writePong(into: &frame, payload: ping.span.bytes)
                passFrame(to: reply)
            case .pong:
                break
            case .close(let code):
                closeFrame(code: code ?? nil)
                passFrame(to: reply)
                return .closedByClient
            }
        }
        return .consumed
    }

    /// `frame` through `reply` (a local reference: a span of the class's stored array would last one access only).
    func passFrame(to reply: (RawSpan) -> Void) {
        let frame = self.frame
        reply(frame.span.bytes)
    }

    /// The client's complete message (`assembler.messagePayload`), decompressed when it was, handed to
    /// `deliver` as the node gets it. Returns the close code instead when it cannot be: inflate failed or went
    /// past `limit` (1009), or a text message is not UTF-8 (1007).
    func deliverMessage(
        isText: Bool, compressed: Bool, limit: Int, _ deliver: (RawSpan) -> Void
    ) -> WebSocketCloseCode? {
        if !compressed {
            let message = assembler.messagePayload  // a local reference, as for the ping above
            deliver(message.span.bytes)
            return nil
        }
        inflated.removeAll(keepingCapacity: true)
        do throws(ZlibError) {
            let payload = assembler.messagePayload  // a local reference, as for the ping above
            try inflater().decompressMessage(payload.span.bytes, into: &inflated, limit: limit)
        } catch {
            return error.closeCode
        }
        let message = inflated  // a local reference, as for the ping above
        if isText && !UTF8Validator.isValid(message.span.bytes) { return .invalidFramePayloadData }
        deliver(message.span.bytes)
        if inflated.capacity > 1 << 20 { inflated = [] }
        return nil
    }

    /// One data frame for the client, compressed when the extension was agreed and the payload is worth it
    /// (RFC 7692 lets each message choose), written through `write` (header, then payload).
    func writeFrame(_ opcode: WebSocketOpcode, _ payload: RawSpan, _ write: (RawSpan) -> Void) throws(ZlibError) {
        frame.removeAll(keepingCapacity: true)
        if compression != nil && payload.byteCount >= 32 {
            inflated.removeAll(keepingCapacity: true)
            try deflater().compressMessage(payload, into: &inflated)
            WebSocketFrameEncoder.writeHeader(into: &frame, opcode: opcode, rsv1: true, payloadLength: inflated.count)
            passFrame(to: write)
            let compressed = inflated  // a local reference, as for the frame
            write(compressed.span.bytes)
            if inflated.capacity > 1 << 20 { inflated = [] }
            return
        }
        WebSocketFrameEncoder.writeHeader(into: &frame, opcode: opcode, payloadLength: payload.byteCount)
        passFrame(to: write)
        write(payload)
    }

    /// The close frame (in `frame`) for a node's `end`: its body's code and UTF-8 reason when valid, else 1000.
    func closeFrame(forEnd body: RawSpan) {
        if body.byteCount >= 2 {
            let requested = WebSocketCloseCode(UInt16(bigEndian: body.unsafeLoadUnaligned(as: UInt16.self)))
            let text = body.extracting(droppingFirst: 2)
            if requested.isValidInCloseFrame && UTF8Validator.isValid(text) {
                return closeFrame(code: requested, reason: text)
            }
        }
        closeFrame(code: .normalClosure)
    }

    /// A close frame with `code` (nil: no status) in `frame`; the close handshake has started.
    func closeFrame(code: WebSocketCloseCode?, reason: RawSpan = RawSpan()) {
        liveness.closeStarted()
        frame.removeAll(keepingCapacity: true)
        WebSocketFrameEncoder.writeClose(into: &frame, code: code, reason: reason)
    }

    /// A ping without payload in `frame` (the idle check's `.ping`).
    func pingFrame() {
        frame.removeAll(keepingCapacity: true)
        WebSocketFrameEncoder.writePing(into: &frame, payload: RawSpan())
    }

    /// A node's `websocket` / `websocket-binary` message as a frame through `write`; false when the node's text
    /// is not UTF-8 (a client must fail the connection on invalid text, so it is not sent at all).
    func writeBackendMessage(isText: Bool, _ body: RawSpan, _ write: (RawSpan) -> Void) throws(ZlibError) -> Bool {
        if isText && !UTF8Validator.isValid(body) { return false }
        try writeFrame(isText ? .text : .binary, body, write)
        return true
    }
}

/// What an accepted upgrade needs until the 101 goes out (at once, or when the backend agrees).
struct PendingUpgrade {
    var accept: [UInt8]
    var compression: PerMessageDeflateParameters?
    /// Subprotocols the client offered, in its order.
    var offeredProtocols: [[UInt8]]
    /// Chosen by the gateway (gateway mode) or by the backend's 101 (backend mode).
    var selectedProtocol: [UInt8]?
}

/// Why an upgrade request is refused, and how.
struct UpgradeRefusal: Error {
    var status: Int
    var message: String
    var extraHeaders = ""
}

extension PendingUpgrade {
    /// Checks the WebSocket fields of an upgrade request (HTTP/1.1, or an HTTP/2 extended CONNECT written out
    /// as one) and negotiates compression: version 13, one valid key, the offered subprotocols.
    static func prepare(
        head: HTTPRequestHead, headBytes: RawSpan, compression enabled: Bool
    ) -> Result<PendingUpgrade, UpgradeRefusal> {
        var keyRange: Range<Int>? = nil
        var versionOK = false
        var extensions: [UInt8] = []
        var offered: [[UInt8]] = []
        for field in head.headers {
            let value = headBytes.extracting(field.value)
            switch field.known {
            case .secWebSocketKey:
                if keyRange != nil { return .failure(UpgradeRefusal(status: 400, message: "more than one Sec-WebSocket-Key")) }
                keyRange = field.value
            case .secWebSocketVersion:
                versionOK = WebSocketHandshake.isSupportedVersion(value)
            case .secWebSocketExtensions:
                if !extensions.isEmpty { extensions.appendBytes(", ") }
                extensions.appendBytes(value)
            case .secWebSocketProtocol:
                offered += HTTPSyntax.listElements(value)
            default:
                break
            }
        }
        guard versionOK else {
            return .failure(
                UpgradeRefusal(
                    status: 426, message: "only WebSocket version 13 is supported",
                    extraHeaders: "Sec-WebSocket-Version: 13\r\n"))
        }
        guard let keyRange, WebSocketHandshake.isValidKey(headBytes.extracting(keyRange)) else {
            return .failure(UpgradeRefusal(status: 400, message: "missing or invalid Sec-WebSocket-Key"))
        }
        let compression = PerMessageDeflateOffer.negotiate(
            headerValue: extensions.span.bytes, configuration: PerMessageDeflateConfiguration(isEnabled: enabled))
        return .success(
            PendingUpgrade(
                accept: WebSocketHandshake.acceptValue(key: headBytes.extracting(keyRange)), compression: compression, offeredProtocols: offered,
                selectedProtocol: nil))
    }
}
