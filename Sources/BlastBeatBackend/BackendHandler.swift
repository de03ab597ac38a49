/// The application side of a backend node: callbacks for what the gateway sends, one session at a time.
///
/// `BackendNode.run` calls these on its own thread, one after another, in the order the messages arrive
/// (there is no concurrency: a slow callback delays every other session of the node; run several processes
/// of the node, each with its own instance identity, to use more cores). Reply through the `Session` while in
/// a callback, or later from the same thread.
///
/// For each sid the calls follow the wire protocol:
/// `requestStarted` → (`requestBody`* → `requestBodyEnded` when `request.hasBody`) → … the next
/// `requestStarted` on a keep-alive connection …, or `webSocketMessage`* on an upgraded one, and finally
/// `sessionEnded` once. Every callback but `requestStarted` has an empty default.
///
/// A callback that throws is reported on standard error and its session is answered with
/// `500 Internal Server Error` if no head was sent yet, or ended otherwise.
public protocol BackendHandler {
    /// A request arrived (its `uwsgi` message). Answer here, or wait for the body.
    func requestStarted(_ request: Request, session: Session) throws
    /// Request body bytes, de-chunked, in order. Message boundaries mean nothing.
    func requestBody(_ bytes: [UInt8], session: Session) throws
    /// The empty end-of-body marker: the whole body has arrived. Only for requests with `hasBody`.
    func requestBodyEnded(session: Session) throws
    /// One complete message from a WebSocket client (fragments joined, decompressed, text UTF-8 checked).
    func webSocketMessage(_ message: WebSocketMessage, session: Session) throws
    /// The session is over (the client left, the gateway closed it, the gateway connection was lost, or the
    /// node is stopping). Drop any state kept for it; nothing can be sent on it any more.
    func sessionEnded(session: Session)
    /// The gateway granted the session more credit (docs/PROTOCOL.md, "Credit") and what waited for it went
    /// out. A handler streaming a large response writes its next part here rather than all at once: a write
    /// never blocks, and what the gateway's credit does not cover waits in the node
    /// (`Session.bytesWaitingForCredit`).
    func creditGranted(session: Session) throws
}

extension BackendHandler {
    public func requestBody(_ bytes: [UInt8], session: Session) throws {}
    public func requestBodyEnded(session: Session) throws {}
    public func webSocketMessage(_ message: WebSocketMessage, session: Session) throws {}
    public func sessionEnded(session: Session) {}
    public func creditGranted(session: Session) throws {}
}

/// One WebSocket message, either way.
public enum WebSocketMessage: Sendable, Equatable {
    /// A text message (`websocket` on the wire).
    case text(String)
    /// A binary message (`websocket-binary` on the wire).
    case binary([UInt8])
}
