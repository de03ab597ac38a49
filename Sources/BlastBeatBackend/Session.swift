internal import BlastBeatCore

/// One client connection as the node sees it (a gateway sid), and the way to answer on it.
///
/// Handed to every `BackendHandler` callback. Keep it to answer later (a long poll, a WebSocket push), but use
/// it only on the thread that runs `BackendNode.run` and only while `run` runs: it is not `Sendable`, and
/// nothing here is locked. Sessions are `Hashable`, so a handler can key its per-session state by them.
///
/// Response calls, in order: `respond` (head and whole body at once), or `sendHeaders` then `write`* then
/// `finish`. Framing follows the head, as the gateway will read it:
/// * `Content-Length` in the headers: `write` sends `body` messages; bytes past the length are dropped, and a
///   `finish` with bytes missing ends the session (the only honest signal to the client).
/// * `Transfer-Encoding: chunked`: each `write` is a `chunk` message (the gateway writes the chunk framing);
///   `finish` sends the empty `chunk` that ends the response.
/// * neither: for an HTTP/1.1 client `sendHeaders` adds `Transfer-Encoding: chunked` and writes are `chunk`
///   messages (so an `end` or a failure mid-body leaves the client a visibly cut-off body); for HTTP/1.0
///   `write` sends `body` messages and the gateway closes the connection after the body. `finish` sends the
///   empty `chunk`.
/// * a HEAD request, 204 or 304: the head only; writes are dropped.
///
/// Long bodies are split into messages of at most 1 MiB. Every call throws `BackendError`: out of order
/// (`.responseNotStarted`, `.responseAlreadyStarted`), on a session that is over (`.sessionEnded`), or when
/// the gateway does not take a message within the send timeout (`.sendTimedOut`).
public struct Session: Hashable {
    let core: NodeCore
    let key: SessionKey

    init(core: NodeCore, key: SessionKey) {
        self.core = core
        self.key = key
    }

    public static func == (lhs: Session, rhs: Session) -> Bool { lhs.core === rhs.core && lhs.key == rhs.key }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(core))
        hasher.combine(key)
    }

    /// The 16 bytes naming the client connection on the wire.
    public var sid: [UInt8] { key.sid.withBytes { Array($0) } }
    /// The sid in lowercase hex, for logs.
    public var sidHex: String { key.sid.hex }
    /// Which gateway the session belongs to: an index into `BackendNode.endpoints`.
    public var gateway: Int { key.gateway }
    /// The session's current request (the last one on a keep-alive connection); nil once the session is over.
    public var request: Request? { core.record(key)?.request }
    /// Whether the session is over: nothing can be sent on it any more.
    public var isEnded: Bool { core.record(key).map { $0.response.state == .ended } ?? true }
    /// Whether the response head has gone out (the status can no longer change).
    public var responseStarted: Bool {
        guard let state = core.record(key)?.response.state else { return true }
        switch state {
        case .idle, .awaitingHead: return false
        case .body, .complete, .webSocket, .ended: return true
        }
    }

    // MARK: - HTTP responses

    /// Sends a whole response: the head with `Content-Length: body.count` (replacing any `Content-Length` or
    /// `Transfer-Encoding` in `headers`), and the body in the same message when it fits.
    ///
    /// For HEAD requests only the head goes out (with the length the body would have); 204 and 304 get no
    /// `Content-Length` and no body. For interim (1xx) heads use `sendHeaders`.
    public func respond(status: Int = 200, headers: [(String, String)] = [], body: [UInt8] = []) throws(BackendError) {
        guard status >= 200 else {
            throw BackendError.invalidStatus.with("respond needs a final status (200...999); use sendHeaders for 1xx")
        }
        try core.withRecord(key) { record throws(BackendError) in
            let isHEAD = try record.response.canSendHead(status: status)
            let bodyless = status == 204 || status == 304
            var head = try ResponseHead.encode(
                status: status, headers: headers, contentLength: bodyless ? nil : body.count,
                stripFraming: true)
            let framing = head.parsed.bodyFraming(requestIsHEAD: isHEAD)
            record.response.headSent(status: status, framing: framing)
            guard case .contentLength = framing, !body.isEmpty else {
                return try core.send(key, .headers, head.bytes[...])
            }
            _ = try record.response.write(count: body.count)
            // The head and the first part of the body in one message, the rest in `body` messages.
            let first = min(body.count, max(0, NodeCore.maxMessageBytes - head.bytes.count))
            head.bytes.append(contentsOf: body[0..<first])
            try core.send(key, .headers, head.bytes[...])
            if first < body.count { try core.send(key, .body, body[first...]) }
        }
    }

    /// `respond` with a UTF-8 text body.
    public func respond(status: Int = 200, headers: [(String, String)] = [], body: String) throws(BackendError) {
        try respond(status: status, headers: headers, body: Array(body.utf8))
    }

    /// Sends the response head as given; the body follows with `write` and ends with `finish`.
    ///
    /// A 1xx status is an interim head (`103 Early Hints`...); the final head comes later. `101` accepts a
    /// WebSocket upgrade when the vhost has `websocket-handshake = backend` (add `Sec-WebSocket-Protocol` to
    /// pick a subprotocol the client offered); with the default gateway handshake the gateway has already
    /// accepted, and a 101 from the node is a 502.
    public func sendHeaders(status: Int = 200, headers: [(String, String)] = []) throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            let isHEAD = try record.response.canSendHead(status: status)
            // A final head without framing, for an HTTP/1.1 client: frame it here (`chunk` messages). On `end`
            // the gateway completes a body it chunks itself, so a response that fails half-way would reach
            // the client looking whole; with our own chunking it stays visibly cut off. HTTP/1.0 clients get
            // a body delimited by the close (RFC 9112 §6.1). The Python SDK does the same.
            var headers = headers
            let framed = headers.contains { ResponseHead.isFraming($0.0) }
            if !framed && status >= 200 && status != 204 && status != 304 && !isHEAD
                && record.request.httpVersion == "HTTP/1.1"
            {
                headers.append(("Transfer-Encoding", "chunked"))
            }
            let head = try ResponseHead.encode(
                status: status, headers: headers, contentLength: nil, stripFraming: false)
            try core.send(key, .headers, head.bytes[...])
            record.response.headSent(status: status, framing: head.parsed.bodyFraming(requestIsHEAD: isHEAD))
        }
    }

    /// Response bytes written but waiting for the gateway's credit (docs/PROTOCOL.md, "Credit"); 0 with a
    /// gateway that does not grant credit. A streaming handler writes more when this is small, and again in
    /// `BackendHandler.creditGranted`.
    public var bytesWaitingForCredit: Int { core.bytesWaitingForCredit(key) }

    /// Sends response body bytes, framed as the head said (see the type's documentation).
    public func write(_ bytes: [UInt8]) throws(BackendError) {
        try write(bytes, asChunk: false)
    }

    /// `write` with UTF-8 text.
    public func write(_ text: String) throws(BackendError) {
        try write(Array(text.utf8), asChunk: false)
    }

    /// Sends one `chunk` message: a piece of a streamed response that the gateway frames as one HTTP chunk
    /// (with a `Content-Length` head it is plain body bytes). An empty chunk ends the response, like `finish`.
    public func chunk(_ bytes: [UInt8]) throws(BackendError) {
        if bytes.isEmpty { return try finish() }
        try write(bytes, asChunk: true)
    }

    private func write(_ bytes: [UInt8], asChunk: Bool) throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            switch try record.response.write(count: bytes.count, asChunk: asChunk) {
            case .send(let type, let count):
                try core.send(key, type, bytes[0..<count])
            case .drop:
                break
            }
        }
    }

    /// Completes the response: the empty `chunk` for a chunked or unframed body, nothing for a complete
    /// `Content-Length` body, `end` for an incomplete one. Calling it again is harmless.
    public func finish() throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            switch try record.response.finish() {
            case .nothing:
                break
            case .emptyChunk:
                try core.send(key, .chunk, ArraySlice())
            case .end:
                try core.send(key, .end, ArraySlice())
            }
        }
    }

    /// Ends the session (`end`): the gateway completes the response framing where it frames the body itself,
    /// closes the client connection (a WebSocket with 1000) and sends `end` back, which becomes
    /// `sessionEnded`. Only `end` is sent: an empty `chunk` first would complete the response and let the
    /// gateway start the connection's next request, which the `end` would then cut off (docs/PROTOCOL.md,
    /// "Backend → gateway messages"). Harmless when already ended.
    public func end() throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            if record.response.ended() { try core.send(key, .end, ArraySlice()) }
        }
    }

    /// Ends the session without completing the response: the client sees the body cut off and the connection
    /// closed, a WebSocket gets close code `webSocketCode`. What a handler that fails mid-response gets.
    func abort(webSocketCode: UInt16 = 1011) throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            let body: [UInt8] = record.response.isWebSocket ? [UInt8(webSocketCode >> 8), UInt8(webSocketCode & 0xFF)] : []
            if record.response.ended() { try core.send(key, .end, body[...]) }
        }
    }

    /// Closes a WebSocket with a close code and a UTF-8 reason (`end` whose body is the 2-byte big-endian code
    /// and the reason). The reason is cut to 123 bytes, the most a close frame can carry.
    public func close(code: UInt16 = 1000, reason: String = "") throws(BackendError) {
        var body: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        var reasonBytes = Array(reason.utf8.prefix(123))
        // Do not cut a UTF-8 sequence in half: drop continuation bytes and the lead byte they follow.
        if reason.utf8.count > 123 {
            while let last = reasonBytes.last, last & 0xC0 == 0x80 { reasonBytes.removeLast() }
            if let last = reasonBytes.last, last >= 0xC0 { reasonBytes.removeLast() }
        }
        body += reasonBytes
        try core.withRecord(key) { record throws(BackendError) in
            if record.response.ended() { try core.send(key, .end, body[...]) }
        }
    }

    /// Hands the request to another node of the vhost (`retry`): the gateway resends the request head and the
    /// body received so far. Only before any head was sent. The session is then forgotten here, without a
    /// `sessionEnded` call, and messages still in flight for it are dropped.
    public func retry() throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            try record.response.retry()
            try core.send(key, .retry, ArraySlice())
        }
        core.forget(key)
    }

    // MARK: - WebSocket

    /// Sends a text message (`websocket`) to the WebSocket client.
    public func sendWebSocket(text: String) throws(BackendError) {
        try sendWebSocket(.websocket, Array(text.utf8))
    }

    /// Sends a binary message (`websocket-binary`) to the WebSocket client.
    public func sendWebSocket(binary: [UInt8]) throws(BackendError) {
        try sendWebSocket(.websocketBinary, binary)
    }

    /// Sends `message` back as the same kind.
    public func sendWebSocket(_ message: WebSocketMessage) throws(BackendError) {
        switch message {
        case .text(let text): try sendWebSocket(text: text)
        case .binary(let bytes): try sendWebSocket(binary: bytes)
        }
    }

    private func sendWebSocket(_ type: BackendMessageType, _ payload: [UInt8]) throws(BackendError) {
        try core.withRecord(key) { record throws(BackendError) in
            try record.response.canSendWebSocket()
            // One message is one WebSocket message: never split.
            try core.send(key, type, bytesOf: payload[...])
        }
    }
}
