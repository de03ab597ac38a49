package import BlastBeatCore
package import BlastBeatSystem
import Glibc

/// Errors that stop the gateway from starting, each naming what to fix.
package struct StartupError: Error, CustomStringConvertible {
    package var description: String
}

/// The whole gateway on one event loop: listeners, client connections, the ROUTER socket and
/// the backend nodes. Reached from watcher callbacks through their delegates; no globals.
package final class Gateway: PrepareWatcherDelegate, SignalWatcherDelegate, TimerWatcherDelegate, BackendRouterDelegate {
    let config: Configuration
    let loop: EventLoop
    let logger: Logger
    var counters = Counters()
    var accessLog: LogSink?
    var accessLogDate: (second: Int, text: [UInt8]) = (-1, [])

    /// Shared read buffer: a connection's bytes land here first and are copied out only when a
    /// partial request remains, so idle connections own no buffer.
    let readBuffer: UnsafeMutableRawBufferPointer
    /// Where uwsgi packets are encoded (`UwsgiEncoder.sizeBound` bytes); see `uwsgiScratch(atLeast:)`.
    private var uwsgiScratchBuffer: UnsafeMutableRawBufferPointer
    /// Most unconsumed input a connection may hold (a head plus pipelined requests).
    let maxPendingInput: Int
    let responseChunkLimits: HTTPLimits
    /// What the request head parser admits before the Host is known: `[blastbeat]`'s limits, with the largest
    /// `max-body-size` of any vhost (each vhost's own is checked once the request is routed).
    let requestLimits: HTTPLimits
    /// Each vhost's per-request limits, by vhost index (plain values: read on every request).
    let vhostLimits: [VhostLimits]
    /// Requests and WebSockets each vhost's nodes hold now (`max-in-flight`), kept by GatewaySession.settleSlot.
    var vhostInFlight: [Int]

    var listeners: [Listener] = []
    /// Where backends connect, spoken natively (`zmq-engine = native`, the default) or through libzmq.
    private(set) var router: BackendRouter! = nil
    var nodes = NodeTable()
    /// Node indices per vhost, in configuration order.
    var vhostNodes: [[Int]] = []
    private(set) var vhostServerNames: [[UInt8]] = []
    var sessions: [SessionID: Connection] = [:]
    /// HTTP/2 streams by their sessions' sids (their connections are in `sessions` under their own).
    var http2Streams: [SessionID: HTTP2Stream] = [:]
    var http2StreamsOnReplacedConnections: [HTTP2Stream] = []
    var connectionsToFlush: [Connection] = []
    private var flushBatch: [Connection] = []
    var pendingNodeFailures: [Int] = []
    /// Sessions whose node's connection was replaced by a newer one (their requests went to the old one).
    var sessionsOnReplacedConnections: [Connection] = []
    /// CURVE keys: the gateway's pair and the keys allowed per node (empty without `curve-key`).
    let backendKeys: BackendKeys
    var warnings = WarningLimiter()
    /// Per node (same index as `nodes`): request body bytes handed to ZeroMQ and not yet sent.
    var nodeQueueMeters: [NodeQueueMeter] = []
    /// Connections that stopped reading their request body because their node's queue is full.
    var waitingForNodeQueue: [Connection] = []
    var nodeQueueTimer: TimerWatcher! = nil
    var random = SecureRandom()

    private var prepareWatcher: PrepareWatcher! = nil
    private var pingTimer: TimerWatcher! = nil
    private var housekeepingTimer: TimerWatcher! = nil
    var shutdownTimer: TimerWatcher! = nil
    var acceptPauseTimer: TimerWatcher! = nil
    private var signalWatchers: [SignalWatcher] = []
    /// systemd's notification socket (`NOTIFY_SOCKET`), connected before the privilege drop; nil without one.
    var notifier: ServiceNotifier? = nil
    /// For each listener, the index of its `bind`/`bind-ssl` line in the configuration.
    var listenerConfigIndex: [Int] = []
    var isShuttingDown = false
    var acceptingPaused = false
    /// The ping timer visits the nodes in this many slices per `ping-freq` (see pingNodes).
    static let pingSlices = 10
    /// The node the ping timer visited last.
    var pingCursor = -1
    /// Open connections per client address (its text form), for `max-client-connections`.
    var connectionsByClient: [[UInt8]: Int] = [:]

    package init(config: Configuration) throws(StartupError) {
        self.config = config
        self.loop = EventLoop()
        do { self.logger = try Logger(level: config.logLevel, path: config.errorLog) } catch {
            throw StartupError(description: "\(config.file): error-log: \(error)")
        }
        self.readBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
        self.uwsgiScratchBuffer = .allocate(byteCount: 16 * 1024, alignment: 16)
        self.maxPendingInput = max(config.limits.maxHeadBytes * 2, 128 * 1024)
        var chunkLimits = config.limits
        chunkLimits.maxBodySize = Int.max
        self.responseChunkLimits = chunkLimits
        var requestLimits = config.limits
        requestLimits.maxBodySize = config.largestBodySize
        self.requestLimits = requestLimits
        self.vhostLimits = config.vhosts.map(\.limits)
        self.vhostInFlight = [Int](repeating: 0, count: config.vhosts.count)
        do { backendKeys = try BackendKeys.load(config) } catch {
            throw StartupError(description: "\(error)")
        }

        for vhost in config.vhosts {
            vhostNodes.append(vhost.nodes.map { nodes.add($0) })
            vhostServerNames.append(vhost.hostName)
        }
        if let path = config.accessLog {
            do { accessLog = try LogSink(path: path) } catch {
                throw StartupError(description: "\(config.file): access-log: \(error)")
            }
        }
        try openListeners()
        try openRouter()
        prepareWatcher = PrepareWatcher(loop: loop, delegate: self)
        pingTimer = TimerWatcher(loop: loop, delegate: self)
        housekeepingTimer = TimerWatcher(loop: loop, delegate: self)
        shutdownTimer = TimerWatcher(loop: loop, delegate: self)
        acceptPauseTimer = TimerWatcher(loop: loop, delegate: self)
        nodeQueueTimer = TimerWatcher(loop: loop, delegate: self)
        // The README's signal table; SIGPIPE and SIGUSR2 are ignored (main.swift).
        for signal in [SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1] {
            signalWatchers.append(SignalWatcher(loop: loop, signal: signal, delegate: self))
        }
        do { notifier = try ServiceNotifier.fromEnvironment() } catch {
            logger.error("\(error): the service manager will not be told that the gateway is ready")
        }
    }

    private func openRouter() throws(StartupError) {
        do {
            router = try BackendRouter(
                loop: loop, endpoint: config.zmqEndpoint, engine: config.zmqEngine,
                // A bigger message could never be queued for a client anyway.
                maxMessageSize: config.largestBackendMessage + 64 * 1024,
                maxQueuedBytes: config.maxNodeQueue * 2, curveKeys: backendKeys.server, delegate: self)
            // libzmq under CURVE: a node is used only once a message has proved its key (see Gateway+Admission).
            nodes.unknownNodesAreUsable = !router.claimsAreProvedByMessages
        } catch {
            closeListeners()
            throw StartupError(description: "\(config.file): zmq: \(error)")
        }
    }

    /// Drops root privileges (after binding), then serves until shut down.
    package func run() throws(StartupError) {
        let user = config.uid ?? "nobody"
        let group = config.gid ?? "nogroup"
        do {
            if let target = try Privileges.target(user: user, group: group) {
                handOverLogFiles(to: target.uid)
                try Privileges.drop(to: target)
                logger.info("running as uid \(target.uid) gid \(target.gid)")
            }
        } catch {
            shutdownNow()
            throw StartupError(description: "\(config.file): uid/gid: \(error)")
        }
        for listener in listeners {
            listener.setAccepting(true)
            logger.info("listening on \(listener.tls == nil ? "http" : "https")://\(listener.address)")
        }
        logger.info(
            "ROUTER bound to \(config.zmqEndpoint) (\(config.zmqEngine) ZMTP); \(nodes.nodes.count) node(s) configured; backends \(backendKeys.server.map { "authenticated with CURVE, gateway key \($0.publicKey.z85)" } ?? "not authenticated (NULL)")")
        warnIfTenantsAreUnauthenticated()
        notify("READY=1\nMAINPID=\(getpid())")
        pingTimer.start(after: config.pingFrequency / Double(Self.pingSlices), repeat: config.pingFrequency / Double(Self.pingSlices))
        housekeepingTimer.start(after: 1, repeat: 1)
        loop.run()
        shutdownNow()
        logger.info(
            "stopped: \(counters.requests) requests, \(counters.malformedBackendMessages + counters.unknownSessionMessages + counters.forgedIdentityMessages + counters.outOfOrderBackendMessages) backend messages dropped, \(counters.backendProtocolErrors) backend connections broke ZMTP, \(counters.refusedBackendClaims) backend connections refused, \(counters.vhostBusyRefusals) requests over max-in-flight, \(counters.clientConnectionRefusals) connections over max-client-connections, \(counters.connectionsClosedForRoom) closed to make room"
        )
    }

    private func shutdownNow() {
        for connection in Array(sessions.values) { connection.close() }
        closeListeners()
        accessLog?.flush()
        if let error = router?.close() {
            logger.warning("the ROUTER's socket file stays (the next start replaces it): \(error)")
        }
    }

    // MARK: uwsgi

    /// Shared scratch memory of at least `count` bytes for encoding one packet. It grows to the
    /// largest bound seen (bounded by the head size limits) and is reused by every request.
    func uwsgiScratch(atLeast count: Int) -> UnsafeMutableRawBufferPointer {
        if uwsgiScratchBuffer.count < count {
            uwsgiScratchBuffer.deallocate()
            uwsgiScratchBuffer = .allocate(byteCount: count, alignment: 16)
        }
        return uwsgiScratchBuffer
    }

    func uwsgiContext(for connection: Connection, vhost: Int) -> UwsgiRequestContext {
        UwsgiRequestContext(
            serverName: vhostServerNames[vhost], serverPort: connection.listener.portBytes,
            remoteAddress: connection.remoteAddress, remotePort: connection.remotePort, isTLS: connection.tls != nil,
            tlsServerName: connection.tlsServerName, tlsVersion: connection.tlsVersion)
    }

    var retryAfterSeconds: Int { max(1, Int(config.pingFrequency.rounded(.up))) }

    // MARK: access log

    func writeAccessLog(_ connection: Connection) {
        guard let accessLog else { return }
        let now = WallClock.now()
        let second = Int(now)
        if second != accessLogDate.second {
            accessLogDate = (second, WallClock.format(second, "%d/%b/%Y:%H:%M:%S %z"))
        }
        let node = connection.node.map { nodes.nodes[$0].identity }
        let elapsed = loop.now - connection.requestStart
        accessLog.withBuffer { out in
            connection.log.write(
                into: &out, remote: connection.remoteAddress, date: accessLogDate.text, node: node, seconds: elapsed)
        }
    }

    // MARK: loop hooks

    package func loopWillBlock() {
        // Sends made during this iteration may have consumed the edge of the ZeroMQ descriptor,
        // so its queue is re-checked here, and all output of the iteration leaves in one write each.
        for _ in 0..<8 {
            router.receivePending()
            failNodesIfNeeded()
            if connectionsToFlush.isEmpty && !router.hasPendingWork { break }
            // Swap in the spare array instead of copying: a copy of a shared array buffer would
            // allocate on every iteration (one allocation per request in the allocation test).
            swap(&connectionsToFlush, &flushBatch)
            for connection in flushBatch { connection.flush() }
            flushBatch.removeAll(keepingCapacity: true)
            if !router.hasPendingWork { break }
        }
        // Backend output last: flushing clients may have started pipelined requests.
        router.flush()
        if router.hasPendingWork || !connectionsToFlush.isEmpty { prepareWatcher.skipNextBlock() }
        if isShuttingDown && sessions.isEmpty { loop.stop() }
    }

    package func timerFired(_ timer: TimerWatcher) {
        if timer === pingTimer {
            pingNodes()
        } else if timer === housekeepingTimer {
            accessLog?.flush()
        } else if timer === nodeQueueTimer {
            resumeBodiesForDrainedNodes()
        } else if timer === acceptPauseTimer {
            acceptingPaused = false
            if !isShuttingDown {
                for listener in listeners { listener.setAccepting(true) }
            }
        } else if timer === shutdownTimer {
            logger.warning("shutdown-timeout reached with \(sessions.count) connection(s) open; closing them")
            for connection in Array(sessions.values) { connection.close() }
            loop.stop()
        }
    }
}
