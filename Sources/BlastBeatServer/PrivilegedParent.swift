package import BlastBeatCore
package import BlastBeatSystem
import Glibc

/// The privileged parent (README.md, "Reload" and "Upgrade"). Started as root with a `uid` to switch to, the
/// gateway binds its listeners (and the native engine's ROUTER endpoint) and forks: the child is the gateway
/// as before (it reads its files, drops to `uid` and serves, on the sockets it inherited); the parent keeps
/// root and its copies of the sockets, and does only what needs them or root:
///
/// - reload (SIGHUP, its own or a request byte from the serving process): it reads the configuration, its
///   included files and every key and certificate file it names, binds the listeners that are new, and sends
///   it all in one bundle (FileBundle.swift, PrivilegedChannel.swift); the serving process reloads from that
///   bundle exactly as it would from the files (Gateway+Reload.swift);
/// - upgrade (SIGUSR2, or a request byte): it starts the binary again with the same arguments, handing it
///   the sockets (Upgrade.swift); once the new gateway serves, the old serving process is told to stop
///   gracefully, and this parent exits with it.
///
/// Why that is safe: the parent reads from the serving process nothing but those request bytes, and both
/// requests do only what the root-owned configuration and binary say. A compromised serving process can make
/// the parent read the configuration or start the installed binary again, nothing more; it never gets root
/// back, and receives only what a reload gives it anyway.
///
/// The other signals go to the serving process; when it exits the parent exits with its status, and when the
/// parent dies the serving process sees its channel close and stops gracefully (PrivilegedLink).
///
/// With `workers` > 1 (README.md, "Worker processes") the parent exists even without root, and serves through
/// that many worker processes, each the gateway above with its own channel: reloads and upgrades go to all of
/// them, stop signals too, and a worker that dies after serving is started again (`WorkerLifecycle`: at once,
/// or later and later when it keeps dying at start). A worker that dies before serving on the gateway's first
/// start stops the gateway: the parent prints its error once (each worker sends it over its channel instead of
/// printing it) and exits with its status. With several workers the parent is the main process for the
/// service manager (`GatewayPhase`): `READY=1` once every worker serves, `RELOADING=1` and `READY=1` around a
/// reload every worker applied, `STOPPING=1`; and it removes an `ipc://` socket file it bound at its exit.
/// Every pair of workers gets a socket pair (WorkerMesh.swift), and a restarted worker new ones, whose other
/// ends go to the running workers over their channels.
package struct PrivilegedParent {
    /// What the process that serves (a worker) gets from `startIfPrivileged`.
    package struct Serving {
        /// The configuration to serve: the one read at start, or for a restarted worker the last one a reload
        /// applied.
        package var config: Configuration
        package var channel: Int32
        package var sockets: InheritedSockets
        /// Its place among several workers; nil with `workers = 1`.
        package var worker: WorkerPlace?
        /// The ready pipe of an upgrade, with one worker (with several the parent reports, once all serve).
        package var readyPipe: Int32?
    }

    /// What `run` ends with: the parent's exit status, or, in a worker forked to replace a dead one, that
    /// worker's start.
    private enum Outcome {
        case exit(Int32)
        case serve(Serving)
    }

    private struct Worker {
        var lifecycle: WorkerLifecycle
        /// The parent's end of the worker's channel; -1 once it closed.
        var channel: Int32
        /// What the worker sent on its channel, decoded.
        var reports = WorkerReports()
        /// Why the worker could not start, as it reported before exiting (taken only while it is starting).
        var startFailure: [UInt8]? = nil
    }

    private let path: String
    private let arguments: [String]
    /// Whether the ROUTER's socket can be handed to a new binary (the native engine's; not libzmq's).
    private let canUpgrade: Bool
    private var workers: [Worker] = []
    /// How many workers serve (`workers`, resolved).
    private let count: Int
    /// What a restarted worker serves: the configuration read at start, or the last one a reload applied.
    private var config: Configuration
    /// TLS session ticket keys shared by the workers (empty with one).
    private let ticketKeys: [UInt8]
    /// The per-vhost counts the workers share (nil with one): mapped here before the first fork, so every
    /// worker, a restarted one too, inherits the same region; the parent zeroes a dead worker's column.
    private let counts: SharedVhostCounts?
    private let signals: ParentSignals
    private let logger = Logger(level: .info)
    /// The gateway as a whole: readiness for the service manager, a failed start.
    private var phase: GatewayPhase
    /// systemd's notification socket, with several workers (the parent is then the main process); with one
    /// the serving process notifies, naming itself MAINPID, as it always did.
    private let notifier: ServiceNotifier?
    /// Every listening socket the serving process has from the parent, by key (client listeners by
    /// `FileBundle.listenerKey`, the ROUTER's by `InheritedSockets.routerKey`): sent again with each reload
    /// (the serving process closes those it has) and handed to a new binary on upgrade.
    private var bound: [String: [Int32]]
    /// An upgrade under way: the new process, its ready pipe, and when to give up on it.
    private var upgrade: (pid: Int32, ready: Int32, deadline: Double)? = nil
    /// With several workers, when this start is an upgrade: the old gateway's ready pipe, written once every
    /// worker serves (closed unwritten when the start fails: the old gateway serves on).
    private var readyPipe: Int32? = nil
    /// New processes of abandoned upgrades, reaped when they exit.
    private var abandoned: [Int32] = []
    /// The highest exit status of the workers that stopped for good.
    private var exitStatus: Int32 = 0
    /// How long a new binary may take to start serving before the upgrade is abandoned.
    static let upgradeTimeout = 60.0

    /// `workers`, resolved: `auto` is the CPUs this process may run on (1 with libzmq, whose socket cannot be
    /// shared).
    package static func workerCount(_ config: Configuration) -> Int {
        switch config.workers {
        case .count(let count): return count
        case .auto: return config.zmqEngine == .libzmq ? 1 : min(ParentProcess.availableCPUs(), Configuration.Workers.maximum)
        }
    }

    /// When started as root with a `uid` other than root, or with several workers: binds, forks the workers. In
    /// a worker it returns what it serves with; in the parent it never returns. Otherwise nil. `inherited`:
    /// sockets from a process this one replaces, used before binding anew.
    package static func startIfPrivileged(
        _ config: Configuration, path: String, arguments: [String], inherited: InheritedSockets, readyPipe: Int32?
    ) throws(StartupError) -> Serving? {
        let target: (uid: UInt32, gid: UInt32)?
        do { target = try Privileges.target(user: config.uid ?? "nobody", group: config.gid ?? "nogroup") } catch {
            throw StartupError(description: "\(config.file): uid/gid: \(error)")
        }
        let count = workerCount(config)
        guard (target.map { $0.uid != 0 } ?? false) || count > 1 else { return nil }
        let bound = try bindAll(config, inherited: inherited, admin: count > 1)
        var links: [[Int: Int32]] = []
        do {
            let signals = try ParentSignals([SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD])
            var ticketKeys: [UInt8] = []
            var counts: SharedVhostCounts? = nil
            if count > 1 {
                counts = try SharedVhostCounts(
                    VhostCountLayout(vhostCapacity: VhostCountLayout.capacity(forVhosts: config.vhosts.count), workers: count))
                var random = SecureRandom()
                ticketKeys = random.bytes(TLSServerContext.ticketKeysSize)
                // The mesh: a socket pair per pair of workers; links[i][j] is worker i's end of its link to j.
                links = [[Int: Int32]](repeating: [:], count: count)
                for i in 0..<count {
                    for j in i + 1..<count {
                        let (a, b) = try ParentProcess.socketPair()
                        links[i][j] = a
                        links[j][i] = b
                    }
                }
            }
            var notifier: ServiceNotifier? = nil
            if count > 1 {
                do { notifier = try ServiceNotifier.fromEnvironment() } catch {
                    Logger(level: .info).error("\(error): the service manager will not be told that the gateway is ready")
                }
            }
            var parent = PrivilegedParent(
                path: path, arguments: arguments, canUpgrade: config.zmqEngine == .native, count: count, config: config,
                ticketKeys: ticketKeys, counts: counts, signals: signals, notifier: notifier, bound: bound)
            // An upgrade's new process is ready when all of it serves: with several workers the parent writes the
            // ready pipe once every worker reported serving (the old gateway must not stop while a worker of the
            // new one may still fail its start); with one the serving process writes it, as it always did.
            let workerReadyPipe = count == 1 ? readyPipe : nil
            parent.readyPipe = count == 1 ? nil : readyPipe
            for index in 0..<count {
                let others = links.enumerated().filter { $0.offset != index }.flatMap { $0.element.values }
                let serving = try parent.fork(
                    index, links: index < links.count ? links[index] : [:],
                    closeInChild: others + (count == 1 ? [] : readyPipe.map { [$0] } ?? []), readyPipe: workerReadyPipe)
                if let serving { return serving }
            }
            for ends in links { ends.values.forEach(Posix.close) }
            if let workerReadyPipe { Glibc.close(workerReadyPipe) }
            switch parent.run() {
            case .exit(let status): exit(status)
            case .serve(let serving): return serving
            }
        } catch {
            bound.values.joined().forEach(Posix.close)
            for ends in links { ends.values.forEach(Posix.close) }
            throw StartupError(description: "privileged parent: \(error)")
        }
    }

    /// The listeners and (native engine) the ROUTER endpoint, taken from `inherited` where it has them.
    /// With `admin` (several workers, which share it) the admin listener too.
    private static func bindAll(
        _ config: Configuration, inherited: InheritedSockets, admin: Bool
    ) throws(StartupError) -> [String: [Int32]] {
        var bound: [String: [Int32]] = [:]
        func fail(_ message: String) -> StartupError {
            bound.values.joined().forEach(Posix.close)
            inherited.closeRest()
            return StartupError(description: message)
        }
        for listener in config.listeners {
            let key = FileBundle.listenerKey(listener)
            if let fds = inherited.take(key) {
                bound[key] = fds
                continue
            }
            switch bind(listener) {
            case .success(let fds): bound[key] = fds
            case .failure(let error):
                throw fail(config.error(at: listener.line, key: listener.tls ? "bind-ssl" : "bind", "\(error)").description)
            }
        }
        if config.zmqEngine == .native {
            let key = InheritedSockets.routerKey(config.zmqEndpoint)
            if let fds = inherited.take(key) {
                bound[key] = fds
            } else {
                do { bound[key] = try BackendRouter.listen(endpoint: config.zmqEndpoint) } catch {
                    throw fail("\(config.file): zmq: \(error)")
                }
            }
        }
        if admin, let address = config.admin {
            let key = InheritedSockets.adminKey("\(address)")
            if let fds = inherited.take(key) {
                bound[key] = fds
            } else {
                let listener = ListenerConfig(address: address, tls: false, line: config.adminLine)
                switch bind(listener) {
                case .success(let fds): bound[key] = fds
                case .failure(let error): throw fail(config.error(at: config.adminLine, key: "admin", "\(error)").description)
                }
            }
        }
        inherited.closeRest()
        return bound
    }

    private init(
        path: String, arguments: [String], canUpgrade: Bool, count: Int, config: Configuration, ticketKeys: [UInt8],
        counts: SharedVhostCounts?, signals: ParentSignals, notifier: ServiceNotifier?, bound: [String: [Int32]]
    ) {
        self.phase = GatewayPhase(workers: count)
        self.notifier = notifier
        self.counts = counts
        self.path = path
        self.arguments = arguments
        self.canUpgrade = canUpgrade
        self.count = count
        self.config = config
        self.ticketKeys = ticketKeys
        self.signals = signals
        self.bound = bound
    }

    /// Forks worker `index` with its `links` to the other workers. Returns what it serves with in the worker,
    /// nil in the parent. The worker closes what belongs to the parent and the other workers (`closeInChild`,
    /// the channels): a link must close when the worker at its other end dies.
    private mutating func fork(
        _ index: Int, links: [Int: Int32], closeInChild: [Int32], readyPipe: Int32? = nil
    ) throws(SystemError) -> Serving? {
        let (parentEnd, servingEnd) = try PrivilegedChannel.pair()
        let pid: Int32
        do { pid = try ParentProcess.fork() } catch {
            Glibc.close(parentEnd)
            Glibc.close(servingEnd)
            throw error
        }
        if pid == 0 {
            Glibc.close(parentEnd)
            // The signals stay blocked until the worker's event loop watches them (Gateway.init): a SIGTERM
            // sent while it starts then stops it as it stops a serving worker, instead of killing it.
            signals.close()
            for worker in workers where worker.channel >= 0 { Glibc.close(worker.channel) }
            closeInChild.forEach { Glibc.close($0) }
            if let upgrade { Glibc.close(upgrade.ready) }
            if let readyPipe = self.readyPipe { Glibc.close(readyPipe) }
            let place = counts.map { WorkerPlace(index: index, count: count, links: links, ticketKeys: ticketKeys, counts: $0) }
            return Serving(config: config, channel: servingEnd, sockets: InheritedSockets(bound), worker: place, readyPipe: readyPipe)
        }
        Glibc.close(servingEnd)
        let now = MonotonicClock.now()
        if index < workers.count {
            workers[index].lifecycle.restarted(pid: pid, now: now)
            workers[index].channel = parentEnd
        } else {
            workers.append(Worker(lifecycle: WorkerLifecycle(pid: pid, now: now), channel: parentEnd))
        }
        return nil
    }

    /// Starts worker `index` again: new links to every running worker (their ends sent to them), then the fork.
    private mutating func restart(_ index: Int) -> Serving? {
        var links: [Int: Int32] = [:]
        var theirs: [(worker: Int, fd: Int32)] = []
        defer {
            links.values.forEach(Posix.close)
            theirs.forEach { Posix.close($0.fd) }
        }
        do {
            for other in workers.indices where other != index && workers[other].channel >= 0 {
                switch workers[other].lifecycle.state {
                case .starting, .serving: break
                case .waiting, .stopping, .stopped: continue
                }
                let (mine, their) = try ParentProcess.socketPair()
                links[other] = mine
                theirs.append((other, their))
            }
            if let serving = try fork(index, links: links, closeInChild: theirs.map(\.fd)) {
                links = [:]  // the worker's now
                theirs.removeAll()  // closed by fork in the worker
                return serving
            }
        } catch {
            logger.error("worker \(index): cannot start it again: \(error); trying again in 1 s")
            workers[index].lifecycle.postpone(until: MonotonicClock.now() + 1)
            return nil
        }
        for (other, fd) in theirs {
            do { try PrivilegedChannel.send(linkTo: index, socket: fd, on: workers[other].channel) } catch {
                replaceStuckWorker(other, "cannot send it the link to worker \(index): \(error)")
            }
        }
        logger.info("worker \(index) started again as pid \(workers[index].lifecycle.pid ?? 0)")
        return nil
    }

    /// Until every worker has exited for good (or, in a worker forked to replace one, its start).
    private mutating func run() -> Outcome {
        while true {
            if workers.allSatisfy(\.lifecycle.isStopped) { return .exit(finish()) }
            var watching = workers.map(\.channel).filter { $0 >= 0 }
            if let upgrade { watching.append(upgrade.ready) }
            let now = MonotonicClock.now()
            let deadlines = workers.compactMap(\.lifecycle.restartAt) + (upgrade.map { [$0.deadline] } ?? [])
            let timeout = deadlines.min().map { $0 - now }
            switch signals.wait(watching: watching, timeout: timeout) {
            case .signal(SIGCHLD):
                if let upgrade, let status = ParentProcess.reap(upgrade.pid) {
                    abandonUpgrade("the new process exited with status \(status) before serving")
                }
                abandoned.removeAll { ParentProcess.reap($0) != nil }
                for index in workers.indices {
                    guard let pid = workers[index].lifecycle.pid, let status = ParentProcess.reap(pid) else { continue }
                    if let outcome = workerExited(index, pid: pid, status: status) { return outcome }
                }
            case .signal(SIGHUP):
                sendReload()
            case .signal(SIGUSR2):
                startUpgrade()
            case .signal(let signal) where signal == SIGTERM || signal == SIGINT || signal == SIGQUIT:
                // Stopping: nothing is restarted any more; a second signal reaches the workers too (they stop at once).
                perform(phase.stop())
                for index in workers.indices {
                    _ = workers[index].lifecycle.stop()
                    if let pid = workers[index].lifecycle.pid { ParentProcess.send(signal, to: pid) }
                }
            case .signal(let signal):
                for worker in workers { if let pid = worker.lifecycle.pid { ParentProcess.send(signal, to: pid) } }
            case .readable(let fd) where fd != upgrade?.ready:
                guard let index = workers.firstIndex(where: { $0.channel == fd }) else { continue }
                let reports = readReports(index)
                // Each at most once per read, as a burst of signals to a worker asks once.
                if reports.contains(.reload) { sendReload() }
                if reports.contains(.upgrade) { startUpgrade() }
            case .readable:
                finishUpgrade()
            case .timedOut:
                let now = MonotonicClock.now()
                if let upgrade, now >= upgrade.deadline {
                    ParentProcess.send(SIGTERM, to: upgrade.pid)
                    abandoned.append(upgrade.pid)
                    abandonUpgrade("the new process did not serve within \(Int(Self.upgradeTimeout)) s; stopped it")
                }
                for index in workers.indices {
                    guard let at = workers[index].lifecycle.restartAt, now >= at else { continue }
                    if let serving = restart(index) { return .serve(serving) }
                }
            }
        }
    }

    /// Reads what worker `index` sent on its channel and acts on `serving` and a start failure; returns the
    /// reports (reload and upgrade requests are the caller's). At end of file the channel is closed.
    private mutating func readReports(_ index: Int) -> [WorkerReports.Report] {
        let fd = workers[index].channel
        guard fd >= 0 else { return [] }
        var reports: [WorkerReports.Report] = []
        // Bounded: a worker that keeps writing gets its turn again on the next wake-up.
        for _ in 0..<16 {
            guard let bytes = PrivilegedChannel.readReports(on: fd) else {
                // The worker is exiting; SIGCHLD follows (or is being handled).
                Glibc.close(fd)
                workers[index].channel = -1
                break
            }
            if bytes.isEmpty { break }
            reports += workers[index].reports.feed(bytes)
        }
        for report in reports {
            switch report {
            case .serving:
                _ = workers[index].lifecycle.served()
                perform(phase.served(index))
            case .startFailed(let text) where workers[index].lifecycle.isStarting:
                workers[index].startFailure = text
            case .startFailed, .reload, .upgrade:
                break
            }
        }
        return reports
    }

    /// Worker `index` (`pid`) exited with `status`: with one worker the parent exits with it, as it always
    /// did; with several, the worker is started again unless the gateway is stopping, or it never served on
    /// the first start (the gateway cannot start: it exits).
    private mutating func workerExited(_ index: Int, pid: Int32, status: Int32) -> Outcome? {
        // A start failure is written just before the exit: it is on the channel already.
        _ = readReports(index)
        if workers[index].channel >= 0 {
            Glibc.close(workers[index].channel)
            workers[index].channel = -1
        }
        let startFailure = workers[index].lifecycle.isStarting ? workers[index].startFailure : nil
        workers[index].startFailure = nil
        if count == 1 {
            if let startFailure { reportStartFailure(startFailure) }
            if status > 128 { logger.error("the serving process was killed by signal \(status - 128)") }
            return .exit(status)
        }
        var why = status > 128 ? "was killed by signal \(status - 128)" : "exited with status \(status)"
        if let startFailure { why += " before serving: \(LogText.escaped(startFailure, limit: WorkerReports.maxFailureBytes))" }
        perform(phase.workerDied(index))
        // What it held at the vhosts is no longer held: without this its requests and connections would count
        // against the limits for good.
        if let held = counts?.clear(worker: index), held.values.contains(where: { $0 != 0 }) {
            logger.info(
                "worker \(index) held \(held[.inFlight] ?? 0) requests in flight and \(held[.connections] ?? 0) connections at vhosts; released")
        }
        switch workers[index].lifecycle.exited(status: status, now: MonotonicClock.now()) {
        case .startNow:
            logger.error("worker \(index) (pid \(pid)) \(why); starting it again")
            if let serving = restart(index) { return .serve(serving) }
        case .startAt(let at):
            logger.error(
                "worker \(index) (pid \(pid)) \(why) again within \(Int(WorkerLifecycle.crashWindow)) s of its start; starting it again in \(Int((at - MonotonicClock.now()).rounded())) s")
        case .finished(let status):
            exitStatus = max(exitStatus, status)
        case .failedToStart(let status):
            if phase.startFailed(status: status) == .reportStartFailure {
                reportStartFailure(startFailure ?? Array("worker \(index) (pid \(pid)) \(why) before serving".utf8))
                for other in workers.indices {
                    if case .signal(let pid) = workers[other].lifecycle.stop() { ParentProcess.send(SIGTERM, to: pid) }
                }
            }
        case .nothing, .signal:
            break
        }
        return nil
    }

    /// A start failure, printed once as the single process prints it (main.swift), whichever worker had it.
    private func reportStartFailure(_ text: [UInt8]) {
        Posix.writeStandardError("blastbeat: \(LogText.escaped(text, limit: WorkerReports.maxFailureBytes))\n")
    }

    /// Every worker is gone: removes the `ipc://` socket file this parent bound (with several workers; one
    /// serving process removes its own, as it always did), unless a new binary took it over. The exit status.
    private mutating func finish() -> Int32 {
        if let readyPipe {
            // Never served: the old gateway of the upgrade sees the pipe close and serves on.
            Glibc.close(readyPipe)
            self.readyPipe = nil
        }
        if count > 1, phase.ownsSocketFiles, config.zmqEngine == .native,
            case .ipc(let path) = ZMTPEndpoint.parse(config.zmqEndpoint)
        {
            do { try Posix.removeFile(path) } catch {
                logger.warning("the ROUTER's socket file stays (the next start replaces it): \(error)")
            }
        }
        return phase.exitStatus(workers: exitStatus)
    }

    /// Tells the service manager what `GatewayPhase` decided (with several workers: the parent is its main
    /// process; with one the serving process tells it itself), and the old gateway of an upgrade that this one
    /// serves.
    private mutating func perform(_ action: GatewayPhase.Action) {
        if action == .notifyStarted, let readyPipe {
            Upgrade.reportReady(readyPipe)
            self.readyPipe = nil
        }
        guard let notifier else { return }
        let state: String
        switch action {
        case .notifyStarted: state = "READY=1\nMAINPID=\(getpid())"
        case .notifyReloaded: state = "READY=1"
        case .notifyReloading: state = "RELOADING=1\nMONOTONIC_USEC=\(ServiceNotifier.monotonicMicroseconds())"
        case .notifyStopping: state = "STOPPING=1"
        case .nothing, .reportStartFailure: return
        }
        do { try notifier.send(state) } catch {
            logger.warning("\(error) (sending \(state.split(separator: "\n").first ?? ""))")
        }
    }

    // MARK: reload

    /// Reads what the configuration names, as root, and sends it with the listeners' sockets. A file that
    /// cannot be read or parsed is sent as it is: the serving process reports the error at its line.
    private mutating func sendReload() {
        // RELOADING=1 as the reload begins; READY=1 once every worker this sends it to has applied it.
        perform(phase.reloading(Set(workers.indices.filter { workers[$0].channel >= 0 })))
        let files = FileSource(.recording)
        var sockets: [Int32] = []
        if let next = try? CommandLineTasks.loadConfiguration(path, files: files) {
            // Reads the key and certificate files into the bundle (errors are the serving process's to report).
            _ = try? CommandLineTasks.check(next, files: files)
            var kept: [String: [Int32]] = [:]
            var allBound = true
            for listener in next.listeners {
                let key = FileBundle.listenerKey(listener)
                switch bound[key].map({ Result<[Int32], SystemError>.success($0) }) ?? Self.bind(listener) {
                case .success(let fds):
                    kept[key] = fds
                    sockets += fds
                    files.recordListener(key: key, sockets: .value(fds.count))
                case .failure(let error):
                    allBound = false
                    files.recordListener(key: key, sockets: .failed(errno: error.errno))
                }
            }
            // The ROUTER's sockets stay (a reload cannot change `zmq`); listeners no longer configured close.
            // The admin listener stays too (a reload does not move it).
            let stays = { (key: String) in key.hasPrefix("zmq ") || key.hasPrefix("admin ") }
            for (key, fds) in bound where kept[key] == nil && !stays(key) { fds.forEach(Posix.close) }
            for (key, fds) in bound where stays(key) { kept[key] = fds }
            bound = kept
            // What a restarted worker will serve: the new configuration, if the workers can apply it (they
            // check the certificates themselves; a worker that refuses one keeps serving the older one).
            if allBound, (try? ConfigReload.plan(running: config, next: next, isIdle: { _ in true })) != nil {
                config = next
            }
        }
        let bundle = files.bundle.encoded()
        for (index, worker) in workers.enumerated() where worker.channel >= 0 {
            do { try PrivilegedChannel.send(bundle: bundle, sockets: sockets, on: worker.channel) } catch {
                replaceStuckWorker(index, "cannot send it the reload: \(error)")
            }
        }
    }

    /// A worker that would not take a message from the parent (its event loop is stuck, or the message was cut
    /// and its channel is out of step) is killed; SIGCHLD then starts it again like any worker that died.
    private func replaceStuckWorker(_ index: Int, _ why: String) {
        let name = workers.count == 1 ? "the serving process" : "worker \(index)"
        guard let pid = workers[index].lifecycle.pid else {
            return logger.error("privileged parent: \(name): \(why)")
        }
        logger.error("privileged parent: \(name) (pid \(pid)): \(why); killing it to start it again")
        ParentProcess.send(SIGKILL, to: pid)
    }

    private static func bind(_ listener: ListenerConfig) -> Result<[Int32], SystemError> {
        var fds: [Int32] = []
        do {
            for address in try SocketAddress.resolve(listener.address) {
                fds.append(try Posix.listen(address: address, backlog: Listener.backlog))
            }
            return .success(fds)
        } catch {
            fds.forEach(Posix.close)
            return .failure(error)
        }
    }

    // MARK: upgrade

    private mutating func startUpgrade() {
        if upgrade != nil { return logger.info("SIGUSR2: an upgrade is already under way") }
        guard canUpgrade else {
            return logger.error(Gateway.libzmqCannotUpgrade)
        }
        do {
            let (pid, ready) = try Upgrade.spawn(arguments: arguments, sockets: bound)
            upgrade = (pid, ready, MonotonicClock.now() + Self.upgradeTimeout)
            logger.info("SIGUSR2: started \(arguments[0]) as pid \(pid); this one stops once it serves")
        } catch {
            logger.error("SIGUSR2: cannot start \(arguments[0]): \(error); still serving")
        }
    }

    /// The new process wrote its byte (or closed the pipe by exiting).
    private mutating func finishUpgrade() {
        guard let (pid, ready, _) = upgrade else { return }
        guard Upgrade.readReady(ready) else {
            // Its pipe closed: it is exiting, and may not be reapable yet (then SIGCHLD reaps it).
            let status = ParentProcess.reap(pid)
            if status == nil { abandoned.append(pid) }
            return abandonUpgrade("the new process exited\(status.map { " with status \($0)" } ?? "") before serving")
        }
        Glibc.close(ready)
        upgrade = nil
        logger.info("SIGUSR2: pid \(pid) serves; this gateway stops (requests in flight finish)")
        phase.replaced()
        for index in workers.indices {
            // Replaced: stopping, never restarted; the parent exits once every worker has.
            _ = workers[index].lifecycle.stop()
            guard let pid = workers[index].lifecycle.pid else { continue }
            do { try PrivilegedChannel.sendReplaced(on: workers[index].channel) } catch {
                ParentProcess.send(SIGQUIT, to: pid)
            }
        }
    }

    private mutating func abandonUpgrade(_ why: String) {
        guard let (_, ready, _) = upgrade else { return }
        Glibc.close(ready)
        upgrade = nil
        logger.error("SIGUSR2: upgrade abandoned: \(why); still serving")
    }
}
