import Glibc
import Synchronization

/// A BlastBeat backend node: ZeroMQ DEALER sockets connected to one or several gateways, and a loop that
/// hands what they send to a `BackendHandler`.
///
/// ```swift
/// struct Hello: BackendHandler {
///     func requestStarted(_ request: Request, session: Session) throws {
///         try session.respond(headers: [("Content-Type", "text/plain")], body: "Hello, World!")
///     }
/// }
/// let node = try BackendNode(identity: "hello", endpoints: ["tcp://127.0.0.1:5000"])
/// node.stopOnSignals()
/// try node.run(handler: Hello())
/// ```
///
/// **Threading: one thread, synchronous.** `run` blocks the calling thread and makes every callback on it,
/// one message at a time; replies go out from inside the callbacks (a send blocks only while the gateway's
/// queue is full, at most the send timeout). There is no thread pool: a slow callback delays every session
/// of the node. To use several cores, start several processes with instance identities `NAME#1`, `NAME#2`...
/// (see `init(node:instance:endpoints:)`); the gateway balances between them. `stop()` is the only method
/// that may be called from another thread (or a callback); the loop looks at it at least every 100 ms.
///
/// **Security:** with `curve` (see `CurveCredentials`) every connection is a CURVE client: encrypted, and
/// accepted only by the gateway that holds the server key's secret half, which in turn accepts the node
/// only if its public key is configured for the node name. A handshake that fails is logged (once per
/// kind of failure, not at every retry) and retried: by libzmq, or by the node where libzmq gives up (a
/// refused key, a security mechanism mismatch), backing off from 1 s to 30 s.
///
/// **Protocol handled here:** `ping` is answered with `pong`; after every (re)connection the node announces
/// itself with an unsolicited `pong` (so a gateway learns an instance identity at once); `uwsgi` is decoded
/// into a `Request`; `body` messages up to the empty end-of-body marker, `websocket`/`websocket-binary`
/// messages and `end` become callbacks. Each gateway gets its own DEALER, so replies go back to the gateway
/// the session came from. When a gateway connection is lost, its sessions are reported ended (the gateway
/// has already answered their clients).
///
/// **Stopping:** when `run` returns, requests still waiting for an answer are handed to another node
/// (`retry`), responses and WebSockets in progress are ended, every session is reported ended, and the
/// sockets are closed (unsent messages get up to a second). `run` may be called again afterwards.
public final class BackendNode: @unchecked Sendable {
    // @unchecked: the only mutable state is the two atomics; everything else lives in the `NodeCore` that
    // `run` creates on its own thread and never shares.

    /// The ZeroMQ identity: the node name, or `NAME#instance`.
    public let identity: String
    /// The gateways' `zmq` endpoints (`tcp://127.0.0.1:5000`, `ipc:///run/blastbeat.sock`). A `Session`'s
    /// `gateway` is an index into this list.
    public let endpoints: [String]
    /// The CURVE keys every connection uses; nil for unencrypted, unauthenticated connections.
    public let curve: CurveCredentials?

    private let stopRequested = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)

    /// Checks the arguments; nothing connects before `run`.
    ///
    /// - Throws: `.invalidIdentity` for an empty identity, one longer than 255 bytes or starting with a 0 byte
    ///   (reserved by ZeroMQ); `.invalidEndpoint` for an empty list.
    public init(identity: String, endpoints: [String], curve: CurveCredentials? = nil) throws(BackendError) {
        let bytes = Array(identity.utf8)
        guard !bytes.isEmpty, bytes.count <= 255, bytes[0] != 0 else {
            throw BackendError.invalidIdentity.with(
                "invalid node identity \(String(reflecting: identity)): 1 to 255 bytes, not starting with a NUL")
        }
        guard !endpoints.isEmpty else {
            throw BackendError.invalidEndpoint.with("no gateway endpoint given")
        }
        self.identity = identity
        self.endpoints = endpoints
        self.curve = curve
    }

    /// A node for `node`, as process `instance` of it when given: the identity `node#instance`.
    ///
    /// Several processes may serve one node name this way (each with a different instance); the gateway
    /// balances between them and health-checks each one (README, "Several processes per node").
    public convenience init(
        node: String, instance: String?, endpoints: [String], curve: CurveCredentials? = nil
    ) throws(BackendError) {
        if node.isEmpty || node.utf8.contains(UInt8(ascii: "#")) {
            throw BackendError.invalidIdentity.with("invalid node name \(String(reflecting: node))")
        }
        try self.init(identity: instance.map { "\(node)#\($0)" } ?? node, endpoints: endpoints, curve: curve)
    }

    /// Connects and serves until `stop()` (or, after `stopOnSignals()`, SIGINT or SIGTERM).
    ///
    /// - Throws: `.alreadyRunning` if `run` is running already; `.invalidEndpoint` when ZeroMQ refuses an
    ///   endpoint; `.socket` when polling fails.
    public func run(handler: some BackendHandler) throws(BackendError) {
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { throw BackendError.alreadyRunning }
        defer {
            stopRequested.store(false, ordering: .releasing)
            running.store(false, ordering: .releasing)
        }
        let core = try NodeCore(identity: identity, endpoints: endpoints, curve: curve)
        defer { core.close() }
        let security = curve.map { "with CURVE, node key \($0.publicKey)" } ?? "without CURVE"
        core.log("identity \(identity), \(security), gateways \(endpoints.joined(separator: ", "))")
        while !stopRequested.load(ordering: .acquiring) && !signalStopRequested.load(ordering: .relaxed) {
            do {
                try core.pump(handler: handler, timeoutMilliseconds: 100)
            } catch {
                core.shutdown(handler: handler)
                throw error
            }
        }
        core.shutdown(handler: handler)
    }

    /// Makes `run` return within 100 ms (or the current callback's time); from any thread. A stop requested
    /// while `run` is not running makes the next `run` return at once.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
    }

    /// Makes SIGINT and SIGTERM stop `run` (of every node in the process) in an orderly way instead of
    /// killing the process. Installs process-wide handlers; call it once, before `run`.
    public func stopOnSignals() {
        for signalNumber in [SIGINT, SIGTERM] {
            // Only an atomic store: async-signal-safe. zmq_poll returns EINTR, so the loop sees it at once.
            signal(signalNumber) { _ in signalStopRequested.store(true, ordering: .relaxed) }
        }
    }
}

/// Set by the SIGINT/SIGTERM handlers of `stopOnSignals`; process-wide, never reset (the process is exiting).
private let signalStopRequested = Atomic<Bool>(false)
