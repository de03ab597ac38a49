import BlastBeatCore

/// What carries a session's requests and responses to its client: an HTTP/1.1 connection (one session
/// for the connection's life), or one stream of an HTTP/2 connection (a session per stream).
///
/// An enum rather than a protocol: every call is a switch over two cases the compiler sees, inlined into
/// GatewaySession, so the HTTP/1.1 keep-alive path pays no witness-table call or existential box
/// (bench/run.py keepalive, before and after, is in the commit that added this seam). The references are
/// unretained: each transport owns its session and outlives it.
enum SessionTransport {
    case http1(Unmanaged<Connection>)
    case http2(Unmanaged<HTTP2Stream>)

    /// The client's TCP connection (an HTTP/2 stream's is its connection's), for what is counted per connection.
    var clientConnection: Connection {
        switch self {
        case .http1(let c): c.takeUnretainedValue()
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.connection.connection }
        }
    }

    /// The vhost slot the current request counts in (Gateway+Metrics.swift).
    var meterSlot: Int {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.meterSlot }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.meterSlot }
        }
    }

    /// The limits of the current request's vhost.
    var limits: VhostLimits {
        @inline(__always) get {
            switch self {
            case .http1(let c): c._withUnsafeGuaranteedRef { $0.limits }
            case .http2(let s): s._withUnsafeGuaranteedRef { $0.limits }
            }
        }
    }

    var closed: Bool {
        @inline(__always) get {
            switch self {
            case .http1(let c): c._withUnsafeGuaranteedRef { $0.closed }
            case .http2(let s): s._withUnsafeGuaranteedRef { $0.closed }
            }
        }
    }

    /// Response bytes queued for the client and not yet written (an HTTP/2 stream's own, waiting for its window).
    var queuedResponseBytes: Int {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.queuedOutputBytes }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.queuedBodyBytes }
        }
    }

    /// Most response bytes the client's queue may hold (a session's share is never larger).
    var outputLimit: Int {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.outputLimit }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.limits.maxOutputBuffer }
        }
    }

    /// The request body is still arriving from the client.
    var isReadingRequestBody: Bool {
        @inline(__always) get {
            switch self {
            case .http1(let c): c._withUnsafeGuaranteedRef { $0.isReadingRequestBody }
            case .http2(let s): s._withUnsafeGuaranteedRef { $0.isReadingRequestBody }
            }
        }
    }

    /// A message from the session's node.
    @inline(__always)
    func backendMessage(_ type: BackendMessageType, _ body: RawSpan) {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.backendMessage(type, body) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.backendMessage(type, body) }
        }
    }

    @inline(__always)
    func acceptsSubprotocol(of head: RawSpan) -> Bool {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.acceptsSubprotocol(of: head) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.acceptsSubprotocol(of: head) }
        }
    }

    /// The final response head with the lines the gateway adds; `complete`: the response has no body. (HTTP/2
    /// frames every body itself and has no Connection header: only whether the gateway frames it matters.)
    @inline(__always)
    func writeResponseHead(_ head: RawSpan, status: Int, adding: AddedHeaders?, complete: Bool) {
        switch self {
        case .http1(let c):
            c._withUnsafeGuaranteedRef { $0.writeResponseHead(head, status: status, adding: adding) }
        case .http2(let s):
            s._withUnsafeGuaranteedRef {
                $0.writeResponseHead(head, status: status, gatewayFramesBody: adding?.chunked == true, complete: complete)
            }
        }
    }

    /// A request that waited for a node went out: its connection's deadline is the backend's now. (An HTTP/2
    /// stream's timer checks its backend time by itself: HTTP2Connection+Timers.swift.)
    func requestDispatchedAfterWaiting() {
        if case .http1(let c) = self { c._withUnsafeGuaranteedRef { $0.refreshDeadlineForState() } }
    }

    /// Response bytes as the backend framed them (HTTP/2 removes a backend's chunked framing).
    @inline(__always)
    func writeResponse(_ bytes: RawSpan) {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.writeResponse(bytes) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.writeResponse(bytes) }
        }
    }

    /// Body bytes the gateway frames; empty ends the body.
    @inline(__always)
    func writeChunk(_ payload: RawSpan) {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.writeChunk(payload) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.writeChunk(payload) }
        }
    }

    @inline(__always)
    func responseFinished() {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.responseFinished() }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.responseFinished() }
        }
    }

    @inline(__always)
    func closeAfterFlush() {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.closeAfterFlush() }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.closeAfterFlush() }
        }
    }

    func sendErrorAndClose(status: Int, message: String, retryAfter: Bool) {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.sendErrorAndClose(status: status, message: message, retryAfter: retryAfter) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.sendError(status: status, message: message, retryAfter: retryAfter) }
        }
    }

    func abort(_ reason: String) {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.abort(reason) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.abort(reason) }
        }
    }

    func backendAcceptedUpgrade(head: RawSpan) {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.backendAcceptedUpgrade(head: head) }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.backendAcceptedUpgrade(head: head) }
        }
    }

    func webSocketNodeGone() {
        switch self {
        case .http1(let c): c._withUnsafeGuaranteedRef { $0.webSocketNodeGone() }
        case .http2(let s): s._withUnsafeGuaranteedRef { $0.webSocketNodeGone() }
        }
    }
}
