/// What the transport must do after an `HTTPSession` event. The session has already moved to its next
/// state; byte buffers point into the message the event was given (valid until it returns to the loop).
/// Bytes to write are ranges of the backend message the event was given (`receivedHead`, `receivedBody`): the
/// machine holds no memory of the transport's, and its actions are plain values.
package enum HTTPSessionAction: Equatable {
    /// Nothing to do.
    case none
    /// Send bytes to the client as they are: an interim (1xx) head, or response body bytes. `complete`:
    /// the response ended with them.
    case write(Range<Int>, complete: Bool)
    /// The last body bytes of a `Content-Length` response; `excess` bytes the backend sent past it were
    /// dropped (counted and logged).
    case writeDroppingExcess(Range<Int>, excess: Int)
    /// Body bytes framed as one chunk by the gateway; empty is the last chunk (and `complete`).
    case writeChunk(Range<Int>, complete: Bool)
    /// The final response head, with the header lines the gateway adds (`adding`) before its blank line.
    /// `complete`: the response has no body.
    case startResponse(head: Range<Int>, status: Int, adding: AddedHeaders?, complete: Bool)
    /// The backend accepted a WebSocket upgrade with this 101 head; the connection switches protocols.
    case acceptUpgrade(head: Range<Int>)
    /// The backend sent `end` mid-response: complete it (with the last chunk the gateway owes when it
    /// frames the body; `truncated`: fewer bytes than Content-Length, counted) and close.
    case finishAndClose(lastChunk: Bool, truncated: Bool)
    /// Close once what is queued for the client is written.
    case close
    /// Send the current request again to a node of the vhost not tried yet, `preferring` this one (a
    /// node whose connection was replaced: its new connection may take it).
    case resend(preferring: Int?)
    /// Answer the request with the failure's status and close.
    case answerError(SessionFailure)
    /// Cut the connection (the response is under way, or the session is a WebSocket).
    case abort(SessionFailure)
    /// A backend message had no use in this state: dropped and counted.
    case drop(SessionDrop)
}

/// Why a session ended early. `status` is what the client is told when a status can still be sent.
package enum SessionFailure: Equatable, Sendable, CustomStringConvertible {
    /// The gateway refuses the request itself (no site, CONNECT, a malformed upgrade, ...).
    case refused(status: Int, message: String)
    /// The request is malformed (head or body); found by the request parser.
    case badRequest(HTTPParseError)
    /// No node of the vhost can take the request.
    case noNode
    /// The vhost's nodes hold `max-in-flight` requests already.
    case vhostBusy
    case invalidHead(BackendHeadError)
    case switchedProtocols
    case subprotocolNotOffered
    case bodyBeforeHeaders
    case endedWithoutResponse
    case retriedTooOften(Int)
    case bodyTooLargeToRetry
    case noOtherNode
    case nodeGone
    case backendTimeout
    case invalidChunkedBody(HTTPParseError)
    case stalledMidResponse
    case nodeGoneMidResponse
    case webSocketNodeGone

    package var status: Int {
        switch self {
        case .refused(let status, _): status
        case .badRequest(let error): error.status
        case .noNode, .vhostBusy: 503
        case .backendTimeout: 504
        case .invalidHead, .switchedProtocols, .subprotocolNotOffered, .bodyBeforeHeaders, .endedWithoutResponse,
            .retriedTooOften, .bodyTooLargeToRetry, .noOtherNode, .nodeGone, .invalidChunkedBody, .stalledMidResponse,
            .nodeGoneMidResponse, .webSocketNodeGone:
            502
        }
    }

    /// The backend broke the protocol (counted as a backend error).
    package var isBackendError: Bool {
        switch self {
        case .invalidHead, .switchedProtocols, .subprotocolNotOffered, .bodyBeforeHeaders, .invalidChunkedBody: true
        default: false
        }
    }

    /// The client may try again later (a 503 carries Retry-After).
    package var retryAfter: Bool { self == .noNode || self == .vhostBusy }

    package var description: String {
        switch self {
        case .refused(_, let message): message
        case .badRequest(let error): error.description
        case .noNode: "no backend node is available"
        case .vhostBusy: "this site's backends are busy; try again shortly"
        case .invalidHead: "the backend sent an invalid response"
        case .switchedProtocols: "the backend tried to switch protocols"
        case .subprotocolNotOffered: "the backend chose a subprotocol the client did not offer"
        case .bodyBeforeHeaders: "the backend sent a body before its headers"
        case .endedWithoutResponse: "the backend ended the session without a response"
        case .retriedTooOften: "no backend could handle the request"
        case .bodyTooLargeToRetry: "request body too large to retry"
        case .noOtherNode: "no other backend node to retry on"
        case .nodeGone: "the backend node went away"
        case .backendTimeout: "the backend did not answer in time"
        case .invalidChunkedBody: "invalid chunked response"
        case .stalledMidResponse: "backend stalled mid-response"
        case .nodeGoneMidResponse: "backend node went away mid-response"
        case .webSocketNodeGone: "backend node went away"
        }
    }
}

/// A backend message the session had no use for.
package enum SessionDrop: Equatable, Sendable {
    case headersWithoutRequest
    case bodyWithoutResponse
    case bodyAfterBodylessResponse
    case retryWithoutRequest
}

/// Header lines the gateway adds to a backend's final response head, inserted before its blank line.
package struct AddedHeaders: Equatable, Sendable {
    /// Where the head's blank line starts.
    package var blankLine: Int
    /// `Transfer-Encoding: chunked`: the backend sent no framing and the gateway chunks the body.
    package var chunked: Bool
    /// `Connection: close`: the gateway closes after this response though the client may expect to keep the
    /// connection (stopping, an upgrade, an unframed body), so the client does not send another request on it.
    package var close: Bool
}
