internal import BlastBeatSystem
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
/// let node = try BackendNode(node: "hello", endpoints: ["tcp://127.0.0.1:5000"])
/// node.stopOnSignals()
/// try node.run(handler: Hello())
/// ```
///
/// **Identity: one owner each.** The gateway routes by ZeroMQ identity, and a newer connection with an
/// identity takes it over from the older one. So by default a node gets an identity of its own,
/// `NAME#<pid>-<8 random hex digits>` (an *instance* of node `NAME`, which the gateway serves wherever
/// `NAME` is configured): starting the same command twice adds a second process instead of two processes
/// taking `NAME` from each other at every reconnection. `Instance.named` and `Instance.plain` choose the
/// identity explicitly (see `init(node:instance:endpoints:curve:)`); `identity` says which one was chosen,
/// and `run` logs it when it starts.
///
/// **Threading: one thread, synchronous.** `run` blocks the calling thread and makes every callback on it,
/// one message at a time; replies go out from inside the callbacks (a send blocks only while the gateway's
/// queue is full, at most the send timeout). There is no thread pool: a slow callback delays every session
/// of the node. To use several cores, start several processes of the node (each gets its own instance
/// identity); the gateway balances between them. `stop()` is the only method that may be called from another
/// thread (or a callback); the loop looks at it at least every 100 ms.
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
/// messages and `end` become callbacks. Each gateway gets its own DEALERs: one per gateway worker, opened as
/// the gateway advertises its worker count (README.md, "Backend libraries"), and replies go back on the connection the
/// session came in on. When a gateway connection is lost, its sessions are reported ended (the gateway has
/// already answered their clients).
///
/// **Stopping:** when `run` returns, requests still waiting for an answer are handed to another node
/// (`retry`), responses and WebSockets in progress are ended, every session is reported ended, and the
/// sockets are closed (unsent messages get up to a second). `run` may be called again afterwards.
public final class BackendNode: @unchecked Sendable {
    // @unchecked: the only mutable state is the two atomics; everything else lives in the `NodeCore` that
    // `run` creates on its own thread and never shares.

    /// Which process of a node this is: what follows `#` in the identity.
    ///
    /// The gateway treats `NAME#anything` as one more process of node `NAME`: allowed wherever `NAME` is,
    /// balanced and health-checked on its own (README, "Several processes per node").
    public enum Instance: Hashable, Sendable {
        /// `NAME#<pid>-<8 random hex digits>`, drawn when the node is created (the default). Unique to this
        /// process and this `BackendNode`, so any number of copies of one program can run side by side, and
        /// a restarted process never fights its predecessor's lingering connection for the identity.
        case unique
        /// `NAME#name`: a fixed instance, e.g. one per supervisor slot (`app#1`, `app#2`), for logs that
        /// stay the same across restarts. Two processes with the same name take it from each other.
        case named(String)
        /// Exactly `NAME`, as nodes written before instances had it: only one process at a time may hold it
        /// (a second one takes it over, and the first gets it back at its next reconnection).
        case plain
    }

    /// The ZeroMQ identity: `NAME#instance`, or the node name itself for `Instance.plain`.
    public let identity: String
    /// The gateways' `zmq` endpoints (`tcp://127.0.0.1:5000`, `ipc:///run/blastbeat.sock`). A `Session`'s
    /// `gateway` is an index into this list.
    public let endpoints: [String]
    /// The CURVE keys every connection uses; nil for unencrypted, unauthenticated connections.
    public let curve: CurveCredentials?
    /// Whether the node announces credit to its gateways (docs/PROTOCOL.md, "Credit"): a session whose client
    /// reads slowly then holds back only its own responses, not the node's other sessions.
    public let credit: Bool

    private let stopRequested = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)

    /// A node with exactly this ZeroMQ identity (`NAME` or `NAME#instance`); checks the arguments, nothing
    /// connects before `run`. Prefer `init(node:instance:endpoints:curve:)`, which gives each process an
    /// identity of its own.
    ///
    /// - Throws: `.invalidIdentity` for an empty identity, one longer than 255 bytes or starting with a 0 byte
    ///   (reserved by ZeroMQ); `.invalidEndpoint` for an empty list.
    public init(
        identity: String, endpoints: [String], curve: CurveCredentials? = nil, credit: Bool = true
    ) throws(BackendError) {
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
        self.credit = credit
    }

    /// A node serving node name `node`, as the process `instance` of it (by default one with an identity of
    /// its own: see `Instance`); checks the arguments, nothing connects before `run`.
    ///
    /// - Throws: `.invalidIdentity` for a node name that is empty, contains `#` or starts with a 0 byte, an
    ///   empty `named` instance, or an identity longer than 255 bytes (with `.unique`, a node name longer
    ///   than 238 bytes, since the suffix may take 17); `.invalidEndpoint` for an empty list.
    public convenience init(
        node: String, instance: Instance = .unique, endpoints: [String], curve: CurveCredentials? = nil,
        credit: Bool = true
    ) throws(BackendError) {
        try self.init(
            identity: Self.identity(node: node, instance: instance), endpoints: endpoints, curve: curve, credit: credit)
    }

    /// The identity for `node` and `instance`; a `.unique` suffix is drawn anew at each call.
    static func identity(node: String, instance: Instance) throws(BackendError) -> String {
        if node.isEmpty || node.utf8.contains(UInt8(ascii: "#")) || node.utf8.first == 0 {
            throw BackendError.invalidIdentity.with(
                "invalid node name \(String(reflecting: node)): not empty, no \"#\", not starting with a NUL")
        }
        let identity: String
        switch instance {
        case .plain:
            identity = node
        case .named(let name):
            guard !name.isEmpty else {
                throw BackendError.invalidIdentity.with("empty instance name for node \(String(reflecting: node))")
            }
            identity = "\(node)#\(name)"
        case .unique:
            // Checked against the longest suffix, not this one, so that a name is accepted or refused
            // whatever the pid.
            guard node.utf8.count <= maxUniqueNodeNameBytes else {
                throw BackendError.invalidIdentity.with(
                    "node name of \(node.utf8.count) bytes leaves no room for a unique instance suffix "
                        + "(at most \(maxUniqueNodeNameBytes) bytes, identities being at most 255); use a shorter "
                        + "name, or a named or plain instance")
            }
            identity = "\(node)#\(uniqueInstanceSuffix())"
        }
        return identity
    }

    /// The longest node name that takes a unique suffix: 255 minus `#`, 7 pid digits (Linux's largest pid,
    /// 4194304, has 7), `-` and 8 hex digits.
    static let maxUniqueNodeNameBytes = 255 - 17

    /// `<pid>-<8 hex digits>`: the pid tells an operator which process it is, and the 32 random bits keep two
    /// processes apart even when pids are equal (containers, each with its pid 1) or reused after a restart.
    static func uniqueInstanceSuffix() -> String {
        var random = SecureRandom()
        let bits = UInt32(truncatingIfNeeded: random.next128().0)
        let hex = String(bits, radix: 16)
        return "\(getpid())-\(String(repeating: "0", count: 8 - hex.utf8.count))\(hex)"
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
        let core = try NodeCore(identity: identity, endpoints: endpoints, curve: curve, announcesCredit: credit)
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
