/// Where a WebSocket stands between the client's frames, the idle check and the close handshake, for both
/// transports (an upgraded HTTP/1.1 connection, an HTTP/2 stream; README.md, "WebSocket").
///
/// The idle check runs each time half of `websocket-idle-timeout` passes without a frame from the client: the
/// first such check pings, a second one with the ping unanswered closes with 1001, and a check while our close
/// frame waits for the client's echo gives the connection up. Any client bytes answer the ping.
package enum WebSocketLiveness: Equatable, Sendable {
    /// The client has sent something since the last idle check (or no check has run yet).
    case open
    /// The idle check sent a ping and the client has sent nothing since.
    case pinged
    /// Our close frame is out (or the client ended its side): nothing more is sent to the client; its close
    /// frame, or the transport's end, is awaited.
    case closing

    /// What a quiet half-period asks of the transport.
    package enum IdleAction: Equatable, Sendable {
        /// Send a ping (the machine is `.pinged` now).
        case ping
        /// The ping went unanswered: send a close frame with 1001 (going away) and end.
        case closeGoingAway
        /// The close handshake did not finish in time: end without waiting any longer.
        case abandon
    }

    /// Client bytes arrived: a ping is answered by them.
    package mutating func clientSpoke() {
        if self == .pinged { self = .open }
    }

    /// Our close frame was queued, or the client ended its side: the handshake is under way.
    package mutating func closeStarted() {
        self = .closing
    }

    /// Half the idle timeout passed without client bytes (since they came, or since the previous check).
    package mutating func quietHalfPeriod() -> IdleAction {
        switch self {
        case .open:
            self = .pinged
            return .ping
        case .pinged:
            return .closeGoingAway
        case .closing:
            return .abandon
        }
    }

    /// Whether the close handshake is under way (no message or ping goes to the client any more).
    package var isClosing: Bool { self == .closing }
}
