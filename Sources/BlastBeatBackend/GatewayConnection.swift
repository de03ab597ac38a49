internal import BlastBeatCore
internal import BlastBeatSystem

/// Where one connection to a gateway worker stands, so that each change is logged once (a failing handshake
/// is retried every few seconds, forever) and the worker count is read when it may have changed.
enum GatewayLink: Equatable {
    case connecting
    /// The handshake completed; the next message received on the connection tells the gateway's worker
    /// count (`X-BlastBeat-Workers`), which a restarted gateway may have changed.
    case awaitingWorkerCount
    /// The count was read since the last handshake; session messages are not looked at for it any more
    /// (pings still are).
    case connected
    /// The last handshake failed (and no other has succeeded since). After a failure that `endsConnecting`,
    /// the node connects anew at `retryAt`, waiting twice as long each time up to `maxRetryDelay`: a refused
    /// key may be allowed later, and a gateway may be restarted with CURVE on, but libzmq itself would never
    /// try again. `retryAt` is nil while libzmq retries by itself or an attempt is under way.
    case failing(ZMQDealer.HandshakeFailure, retryAt: ContinuousClock.Instant?, delay: Duration)

    /// Whether the handshake has completed and the connection has not been lost since.
    var isUp: Bool {
        switch self {
        case .awaitingWorkerCount, .connected: true
        case .connecting, .failing: false
        }
    }
}

/// One DEALER connection to a gateway, labelled with the worker it is meant for, and what the node keeps
/// for it: every reply goes back on the connection its request or ping came in on.
struct GatewayConnection {
    /// The `X-BlastBeat-Worker` label: the gateway hands the connection to this worker.
    let worker: Int
    let dealer: ZMQDealer
    var link = GatewayLink.connecting
    /// The credit this connection's gateway worker granted, and the messages waiting for more.
    var gate = CreditGate()
}

/// One gateway endpoint: its connections, indexed by worker label (connection 0 always exists).
struct GatewayConnections {
    let endpoint: String
    var connections: [GatewayConnection]
    /// The last malformed `X-BlastBeat-Workers` value logged, so that a gateway sending one with every ping
    /// is logged once per value.
    var malformedCountLogged: [UInt8]?
    /// Set when extra connections were closed while connection 0 had not yet heard from the gateway, until
    /// it has (`NodeCore.reclaimIdentity`).
    var reclaim: IdentityReclaim?
}

/// Connection 0 waiting to hear from the gateway after extra connections closed: it is connected anew if
/// nothing reaches it within `wait` of its handshake, and the wait doubles each time.
struct IdentityReclaim {
    static let firstWait = Duration.seconds(1)
    static let maxWait = Duration.seconds(8)

    /// When to look: `wait` after connection 0's last handshake; nil while it is not up.
    var checkAt: ContinuousClock.Instant?
    var wait = Self.firstWait
}
