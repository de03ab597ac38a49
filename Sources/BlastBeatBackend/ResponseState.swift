internal import BlastBeatCore

/// Where one session's current response stands, and so which message each response call sends.
///
/// The gateway tracks the same framing on its side (Connection+Response.swift); this machine mirrors it so
/// that `write` and `finish` send what ends the response correctly and never a byte the gateway would
/// drop or misread. No I/O: the session sends what the returned actions say.
///
/// | state | meaning | left by |
/// |---|---|---|
/// | `idle` | no request on the session yet | `requestStarted` |
/// | `awaitingHead` | a request arrived, no final head sent (a 1xx head stays here) | `headSent`, `retry`, `end` |
/// | `body(framing)` | head sent, body in progress | `write` reaching Content-Length, `finish`, `end` |
/// | `complete` | response done; a keep-alive session waits for its next request | `requestStarted`, `end` |
/// | `webSocket` | the session is a WebSocket (gateway handshake, or the node sent 101) | `end` |
/// | `ended` | `end` was sent or received; nothing more may be sent | — |
///
/// A WebSocket request starts in `awaitingHead(isWebSocket: true)`: with the gateway doing the handshake
/// (the default) messages may be sent at once; with `websocket-handshake = backend` the node first sends
/// a 101 (or a refusal) head.
struct ResponseState: Sendable, Equatable {
    enum Framing: Sendable, Equatable {
        /// `Content-Length`: this many bytes remain.
        case length(remaining: Int)
        /// `Transfer-Encoding: chunked` in the head: every write is a `chunk` message, framed by the gateway.
        case chunkMessages
        /// No framing header (the gateway chunks for HTTP/1.1 clients, closes for HTTP/1.0), or a transfer
        /// coding other than chunked: writes are `body` messages, an empty `chunk` ends the response.
        case unframed
    }

    enum State: Sendable, Equatable {
        case idle
        case awaitingHead(isHEAD: Bool, isWebSocket: Bool)
        case body(Framing)
        case complete
        case webSocket
        case ended
    }

    /// What a write turns into.
    enum WriteAction: Sendable, Equatable {
        /// Send the first `count` bytes of the write as this type (the rest, past Content-Length, is dropped).
        case send(BackendMessageType, count: Int)
        /// Nothing to send: the response has no body (HEAD, 204, 304) or is already complete.
        case drop
    }

    /// What `finish` turns into.
    enum FinishAction: Sendable, Equatable {
        case nothing
        /// The empty `chunk` that ends a chunked or unframed response.
        case emptyChunk
        /// The body is shorter than its Content-Length: only ending the session tells the client.
        case end
    }

    private(set) var state: State = .idle

    /// A new request (`uwsgi`) arrived on the session; a keep-alive session starts over.
    mutating func requestStarted(isHEAD: Bool, isWebSocket: Bool) {
        state = .awaitingHead(isHEAD: isHEAD, isWebSocket: isWebSocket)
    }

    /// Checks that a head may be sent now; returns whether the request is HEAD.
    func canSendHead(status: Int) throws(BackendError) -> Bool {
        switch state {
        case .awaitingHead(let isHEAD, let isWebSocket):
            if status == 101 && !isWebSocket {
                throw BackendError.invalidStatus.with("101 Switching Protocols answers only a WebSocket upgrade")
            }
            return isHEAD
        case .idle:
            throw BackendError.responseNotStarted.with("no request is pending on this session")
        case .body, .complete, .webSocket:
            throw BackendError.responseAlreadyStarted
        case .ended:
            throw BackendError.sessionEnded
        }
    }

    /// A head went out (after `canSendHead`).
    mutating func headSent(status: Int, framing: HTTPResponseBodyFraming) {
        if status == 101 {
            state = .webSocket
            return
        }
        if status < 200 { return }  // interim: the final head is still to come
        switch framing {
        case .none, .contentLength(0):
            state = .complete
        case .contentLength(let length):
            state = .body(.length(remaining: length))
        case .chunked:
            state = .body(.chunkMessages)
        case .untilClose:
            state = .body(.unframed)
        }
    }

    /// Body bytes; `asChunk` asks for a `chunk` message where the framing allows a choice.
    mutating func write(count: Int, asChunk: Bool = false) throws(BackendError) -> WriteAction {
        switch state {
        case .body(.length(let remaining)):
            let n = min(count, remaining)
            state = remaining - n == 0 ? .complete : .body(.length(remaining: remaining - n))
            return n == 0 ? .drop : .send(.body, count: n)
        case .body(.chunkMessages):
            return count == 0 ? .drop : .send(.chunk, count: count)
        case .body(.unframed):
            return count == 0 ? .drop : .send(asChunk ? .chunk : .body, count: count)
        case .complete:
            return .drop
        case .idle, .awaitingHead:
            throw BackendError.responseNotStarted
        case .webSocket:
            throw BackendError.responseAlreadyStarted.with("the session is a WebSocket; send messages instead")
        case .ended:
            throw BackendError.sessionEnded
        }
    }

    /// Completes the response.
    mutating func finish() throws(BackendError) -> FinishAction {
        switch state {
        case .body(.length):
            state = .ended
            return .end
        case .body(.chunkMessages), .body(.unframed):
            state = .complete
            return .emptyChunk
        case .complete, .webSocket:
            return .nothing
        case .idle, .awaitingHead:
            throw BackendError.responseNotStarted
        case .ended:
            throw BackendError.sessionEnded
        }
    }

    /// Whether WebSocket messages may be sent now.
    func canSendWebSocket() throws(BackendError) {
        switch state {
        case .webSocket, .awaitingHead(_, isWebSocket: true):
            return
        case .ended:
            throw BackendError.sessionEnded
        case .idle, .awaitingHead, .body, .complete:
            throw BackendError.notWebSocket
        }
    }

    /// `retry`: only before any head went out; the session then belongs to another node.
    mutating func retry() throws(BackendError) {
        switch state {
        case .awaitingHead:
            state = .idle
        case .idle:
            throw BackendError.responseNotStarted.with("no request is pending on this session")
        case .body, .complete, .webSocket:
            throw BackendError.responseAlreadyStarted
        case .ended:
            throw BackendError.sessionEnded
        }
    }

    /// `end` was sent or received. Returns false when it had already happened.
    mutating func ended() -> Bool {
        if state == .ended { return false }
        state = .ended
        return true
    }

    /// Whether the response head is still to be sent (so a failing handler can still answer 500).
    var isAwaitingHead: Bool {
        if case .awaitingHead = state { return true }
        return false
    }

    /// A WebSocket session, or a WebSocket upgrade request not refused yet.
    var isWebSocket: Bool {
        switch state {
        case .webSocket, .awaitingHead(_, isWebSocket: true): return true
        case .idle, .awaitingHead, .body, .complete, .ended: return false
        }
    }
}
