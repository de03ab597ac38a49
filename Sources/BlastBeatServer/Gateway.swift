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
    /// Replaced by a reload (Gateway+Reload.swift); its vhost indices never move (ConfigReload.swift).
    var config: Configuration
    let loop: EventLoop
    let logger: Logger
    var counters = Counters()
    /// Counts for `GET /metrics` on the admin listener (see Metrics); kept whether or not one is configured.
    let metrics: Metrics
    /// The admin listener (`admin`), nil unless configured.
    var admin: AdminServer?
    var accessLog: LogSink?
    /// Each vhost's access log (see Gateway+AccessLogs), the files only vhosts use, and whether any request
    /// is logged at all (the request line is captured only then).
    var vhostAccessLogs: [LogSink?] = []
    var vhostOwnAccessLogs: [LogSink] = []
    var logsRequests = false
    var accessLogDate: (second: Int, text: [UInt8]) = (-1, [])

    /// Shared read buffer: a connection's bytes land here first (`readInput`) and are copied out only when
    /// a partial request remains, so idle connections own no buffer. Its storage is reserved once.
    var input = ReadBuffer(capacity: Gateway.inputCapacity)
    /// Most unconsumed input a connection may hold (a head plus pipelined requests).
    private(set) var maxPendingInput = 0
    private(set) var responseChunkLimits = HTTPLimits()
    /// What the request head parser admits before the Host is known: `[blastbeat]`'s limits, with the largest
    /// `max-body-size` of any vhost (each vhost's own is checked once the request is routed).
    private(set) var requestLimits = HTTPLimits()
    /// Each vhost's per-request limits, by vhost index (plain values: read on every request).
    private(set) var vhostLimits: [VhostLimits] = []
    /// Requests and WebSockets each vhost's nodes hold now (`max-in-flight`, kept by GatewaySession.settleSlot)
    /// and client connections per vhost (their current or last request's, for `max-connections`), in the
    /// column of this worker (`countColumn`) of counts every worker reads (Gateway+VhostCounts.swift).
    let vhostCounts: SharedVhostCounts
    /// This process's column in `vhostCounts`: its worker index, 0 alone.
    let countColumn: Int
    /// `client-rate` buckets per (vhost, client prefix); see Connection+TenantAdmission.
    var clientRates = ClientRateTable()
    /// When a vhost's `max-in-flight` and `max-connections` refusals were last logged (see Connection+TenantAdmission).
    var vhostRefusalLogged: [(inFlight: Double, connections: Double)] = []

    var listeners: [Listener] = []
    /// Where backends connect, spoken natively (`zmq-engine = native`, the default) or through libzmq.
    private(set) var router: BackendRouter! = nil
    let nodes = NodeTable()
    /// Node indices per vhost, in configuration order.
    var vhostNodes: [[Int]] = []
    private(set) var vhostServerNames: [[UInt8]] = []
    /// Per node: whether a vhost lists it (a reload may remove a node; its reconnections are then refused).
    private(set) var nodeIsListed: [Bool] = []
    var sessions: [SessionID: Connection] = [:]
    /// HTTP/2 streams by their sessions' sids (their connections are in `sessions` under their own).
    var http2Streams: [SessionID: HTTP2Stream] = [:]
    var connectionsToFlush: [Connection] = []
    private var flushBatch: [Connection] = []
    var pendingNodeFailures: [Int] = []
    /// Sessions whose node's connection was replaced by a newer one (their requests went to the old one).
    var sessionsOnReplacedConnections: [HeldSession] = []
    /// CURVE keys: the gateway's pair and the keys allowed per node (empty without `curve-key`).
    var backendKeys: BackendKeys
    var warnings = WarningLimiter()
    /// Per node (same index as `nodes`): request body bytes handed to ZeroMQ and not yet sent.
    var nodeQueueMeters: [NodeQueueMeter] = []
    /// Every node's meter counts in this one too: the memory budget's node bytes.
    let allNodeBytes = NodeQueueMeter()
    /// The memory budget (`max-buffered`, Gateway+Budget.swift).
    var budget = BufferBudget(limit: 256 << 20)  // set from the configuration by installSettings
    /// Per node: how its bytes are held to the budget (credit, once it announced it; else pausing).
    var nodeFlowControl: [NodeFlowControl] = []
    /// Backend connections not read because they sent uncredited bytes at the budget, by identity.
    var pausedBackends: [(identity: [UInt8], node: Int)] = []
    /// What the pauses stopped: one connection each, or (libzmq) every backend.
    var backendPause = BackendRouter.Pause.none
    /// Credited sessions that need credit while the budget has no room: granted once it has.
    var creditWaiters: [GatewaySession] = []
    /// Connections that stopped reading their request body because their node's queue is full.
    var waitingForNodeQueue: [Connection] = []
    var nodeQueueTimer: TimerWatcher! = nil
    var random = SecureRandom()

    private var prepareWatcher: PrepareWatcher! = nil
    var pingTimer: TimerWatcher! = nil
    var housekeepingTimer: TimerWatcher! = nil
    var shutdownTimer: TimerWatcher! = nil
    var acceptPauseTimer: TimerWatcher! = nil
    /// Connections over their address's share at `max-connections`, held before their reset (Gateway+Clients.swift).
    var tarpit = Tarpit(capacity: 0)
    var tarpitTimer: TimerWatcher! = nil
    /// Requests waiting for a node of their vhost to connect, and until when they may (Gateway+NodeWait.swift).
    var sessionsWaitingForNode: [GatewaySession] = []
    var nodeWaitEnds = 0.0
    var nodeWaitTimer: TimerWatcher! = nil
    private var signalWatchers: [SignalWatcher] = []
    /// The privileged parent, which reads the files and binds the listeners of a reload as root; nil when the
    /// gateway was not started as root (or it died).
    var parent: PrivilegedLink? = nil
    /// This process's place among several worker processes (`workers`, Gateway+Workers.swift); nil alone.
    let worker: WorkerPlace?
    /// Scrapes waiting for the other workers' `/metrics` texts (Gateway+WorkerMetrics.swift).
    var metricsQueries: [MetricsQuery] = []
    var nextMetricsQuery: UInt64 = 0
    /// Set after a reload while backend connections it refuses still have requests in flight: the time after
    /// which they are closed anyway (Gateway+Reload.swift).
    var recheckUntil: Double? = nil
    /// An upgrade this process started itself (no privileged parent), until the new process serves.
    var upgradeInProgress: UpgradeWatch? = nil
    /// Set when this start is an upgrade: the old process's ready pipe.
    var readyPipe: Int32?
    /// systemd's notification socket (`NOTIFY_SOCKET`), connected before the privilege drop; nil without one.
    var notifier: ServiceNotifier? = nil
    /// For each listener, the index of its `bind`/`bind-ssl` line in the configuration.
    var listenerConfigIndex: [Int] = []
    /// Where this serving process is in its life (README.md, "Signals").
    enum Phase {
        case serving
        /// After SIGTERM, SIGINT or SIGQUIT (or a replacement by an upgrade): no new connections; requests in
        /// flight finish within `shutdown-timeout`, and a second stop signal closes everything at once.
        case stopping
    }
    private(set) var phase = Phase.serving
    var isShuttingDown: Bool { phase == .stopping }
    func beginStopping() { phase = .stopping }
    /// Accepting waits (too many open files, or `max-connections`): `acceptPauseTimer` resumes it.
    var acceptingPaused = false
    /// Where the sequence of pauses after refusals is (Gateway.nextRefusalPause), in [0, 1).
    var refusalPhase = 0.0
    /// The ping timer visits the nodes in this many slices per `ping-freq` (see pingNodes).
    static let pingSlices = 10
    /// The node the ping timer visited last.
    var pingCursor = -1
    /// Open connections per client address (its text form), for `max-client-connections`.
    var connectionsByClient: [[UInt8]: Int] = [:]

    /// `parentChannel`: the privileged parent's channel when there is one (PrivilegedParent.swift);
    /// `inherited`: listening sockets bound by the parent or by the process this one replaces (SIGUSR2), used
    /// instead of binding; `readyPipe`: written once serving, when this start is an upgrade.
    package init(
        config: Configuration, parentChannel: Int32? = nil, inherited: InheritedSockets = InheritedSockets(),
        readyPipe: Int32? = nil, worker: WorkerPlace? = nil
    ) throws(StartupError) {
        self.readyPipe = readyPipe
        self.worker = worker
        self.config = config
        if let worker {
            self.vhostCounts = worker.counts
        } else {
            let layout = VhostCountLayout(vhostCapacity: VhostCountLayout.capacity(forVhosts: config.vhosts.count), workers: 1)
            do { self.vhostCounts = try SharedVhostCounts(layout) } catch {
                throw StartupError(description: "per-vhost counts: \(error)")
            }
        }
        self.countColumn = worker?.index ?? 0
        self.loop = EventLoop()
        do { self.logger = try Logger(level: config.logLevel, path: config.errorLog) } catch {
            throw StartupError(description: "\(config.file): error-log: \(error)")
        }
        do { backendKeys = try BackendKeys.load(config) } catch {
            throw StartupError(description: "\(error)")
        }
        metrics = Metrics(startTime: WallClock.now())
        ProcessMemory.returnLargeBuffersWhenFreed()
        installSettings()
        if let path = config.accessLog {
            do { accessLog = try LogSink(path: path) } catch {
                throw StartupError(description: "\(config.file): access-log: \(error)")
            }
        }
        installAccessLogs(try vhostAccessLogs(for: config, global: accessLog))
        defer { inherited.closeRest() }
        try openListeners(inherited: inherited)
        try openAdmin(inherited: inherited)
        try openRouter(inheritedSockets: inherited.take(InheritedSockets.routerKey(config.zmqEndpoint)))
        if let worker { router.joinWorkers(index: worker.index, count: worker.count, links: worker.links, delegate: self) }
        prepareWatcher = PrepareWatcher(loop: loop, delegate: self)
        pingTimer = TimerWatcher(loop: loop, delegate: self)
        housekeepingTimer = TimerWatcher(loop: loop, delegate: self)
        shutdownTimer = TimerWatcher(loop: loop, delegate: self)
        acceptPauseTimer = TimerWatcher(loop: loop, delegate: self)
        tarpitTimer = TimerWatcher(loop: loop, delegate: self)
        tarpit = Tarpit(capacity: config.maxConnections / 2)
        nodeQueueTimer = TimerWatcher(loop: loop, delegate: self)
        nodeWaitTimer = TimerWatcher(loop: loop, delegate: self)
        // The README's signal table; SIGPIPE is ignored (main.swift).
        for signal in [SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2] {
            signalWatchers.append(SignalWatcher(loop: loop, signal: signal, delegate: self))
        }
        // A forked worker starts with them blocked (PrivilegedParent.fork): what came meanwhile is delivered now.
        ParentSignals.unblockAll()
        if let parentChannel { parent = PrivilegedLink(gateway: self, channel: parentChannel) }
        // Several workers: the parent speaks to the service manager for all (it is the main process, and
        // knows when every worker serves).
        if worker != nil {
            unsetenv("NOTIFY_SOCKET")
        } else {
            do { notifier = try ServiceNotifier.fromEnvironment() } catch {
                logger.error("\(error): the service manager will not be told that the gateway is ready")
            }
        }
    }

    /// Derives the tables the hot path reads from `config`: at start, and after a reload (which keeps every
    /// vhost's index and each vhost's count of requests in flight).
    func installSettings() {
        maxPendingInput = max(config.limits.maxHeadBytes * 2, 128 * 1024)
        responseChunkLimits = config.limits
        responseChunkLimits.maxBodySize = Int.max
        requestLimits = config.limits
        requestLimits.maxBodySize = config.largestBodySize
        vhostLimits = config.vhosts.map(\.limits)
        // Each worker has its own memory: the budget is split evenly, so that together they hold `max-buffered`
        // (README.md, "Worker processes": a worker cannot lend another its room, the split is static).
        budget.setLimit(config.maxBuffered / (worker?.count ?? 1))
        vhostRefusalLogged += Array(repeating: (-.infinity, -.infinity), count: config.vhosts.count - vhostRefusalLogged.count)
        vhostServerNames = config.vhosts.map(\.hostName)
        vhostNodes = config.vhosts.map { vhost in vhost.isRetired ? [] : vhost.nodes.map { nodes.add($0) } }
        nodeIsListed = [Bool](repeating: false, count: nodes.nodes.count)
        for listed in vhostNodes { for node in listed { nodeIsListed[node] = true } }
        // Instances (NAME#SUFFIX) count under their node: no label of their own.
        metrics.install(
            vhostNames: config.vhosts.map(\.name),
            nodeNames: nodes.nodes.enumerated().map { $0.element.base == $0.offset ? $0.element.identity : [] })
        // Instances (NAME#SUFFIX) serve wherever their node does.
        for (index, node) in nodes.nodes.enumerated() where node.base != index && nodeIsListed[node.base] {
            nodeIsListed[index] = true
            addInstanceToVhosts(index, base: node.base)
        }
    }

    private func openRouter(inheritedSockets: [Int32]?) throws(StartupError) {
        do {
            router = try BackendRouter(
                loop: loop, endpoint: config.zmqEndpoint, engine: config.zmqEngine,
                // A bigger message could never be queued for a client anyway.
                maxMessageSize: config.largestBackendMessage + 64 * 1024,
                maxQueuedBytes: config.maxNodeQueue * 2, curveKeys: backendKeys.server, inheritedSockets: inheritedSockets,
                delegate: self)
            // libzmq under CURVE: a node is used only once a message has proved its key (see Gateway+Admission).
            nodes.unknownNodesAreUsable = !router.claimsAreProvedByMessages
        } catch {
            closeListeners()
            throw StartupError(description: "\(config.file): zmq: \(error)")
        }
    }

    var retryAfterSeconds: Int { max(1, Int(config.pingFrequency.rounded(.up))) }

    // MARK: loop hooks

    package func loopWillBlock() {
        // Sends made during this iteration may have consumed the edge of the ZeroMQ descriptor,
        // so its queue is re-checked here, and all output of the iteration leaves in one write each.
        let router = self.router!  // one reference for the whole pass, not a retain per use
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
        if budget.state != .open || !creditWaiters.isEmpty { budgetCheck() }
        // Backend output last: flushing clients may have started pipelined requests.
        router.flush()
        if router.hasPendingWork || !connectionsToFlush.isEmpty { prepareWatcher.skipNextBlock() }
        if isShuttingDown && sessions.isEmpty && router.finishedStopping() { loop.stop() }
    }

    package func timerFired(_ timer: TimerWatcher) {
        if timer === pingTimer {
            pingNodes()
        } else if timer === housekeepingTimer {
            accessLog?.flush()
            for sink in vhostOwnAccessLogs { sink.flush() }
            recheckBackendConnections()
            expireMetricsQueries()
        } else if timer === nodeWaitTimer {
            nodeWaitEnded()
        } else if timer === nodeQueueTimer {
            resumeBodiesForDrainedNodes()
        } else if timer === tarpitTimer {
            releaseTarpit(all: false)
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
