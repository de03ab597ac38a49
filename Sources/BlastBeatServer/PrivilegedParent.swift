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
package struct PrivilegedParent {
    private let path: String
    private let arguments: [String]
    /// Whether the ROUTER's socket can be handed to a new binary (the native engine's; not libzmq's).
    private let canUpgrade: Bool
    private var child: Int32
    private let channel: Int32
    private let signals: ParentSignals
    private let logger = Logger(level: .info)
    /// Every listening socket the serving process has from the parent, by key (client listeners by
    /// `FileBundle.listenerKey`, the ROUTER's by `InheritedSockets.routerKey`): sent again with each reload
    /// (the serving process closes those it has) and handed to a new binary on upgrade.
    private var bound: [String: [Int32]]
    /// An upgrade under way: the new process, its ready pipe, and when to give up on it.
    private var upgrade: (pid: Int32, ready: Int32, deadline: Double)? = nil
    /// New processes of abandoned upgrades, reaped when they exit.
    private var abandoned: [Int32] = []
    /// How long a new binary may take to start serving before the upgrade is abandoned.
    static let upgradeTimeout = 60.0

    /// When started as root with a `uid` other than root: binds, forks. In the serving process it returns the
    /// channel to the parent and the sockets it inherited; in the parent it never returns. Without root (or
    /// with `uid = root`) nil. `inherited`: sockets from a process this one replaces, used before binding anew.
    package static func startIfPrivileged(
        _ config: Configuration, path: String, arguments: [String], inherited: InheritedSockets, readyPipe: Int32?
    ) throws(StartupError) -> (channel: Int32, sockets: InheritedSockets)? {
        let target: (uid: UInt32, gid: UInt32)?
        do { target = try Privileges.target(user: config.uid ?? "nobody", group: config.gid ?? "nogroup") } catch {
            throw StartupError(description: "\(config.file): uid/gid: \(error)")
        }
        guard let target, target.uid != 0 else { return nil }
        let bound = try bindAll(config, inherited: inherited)
        do {
            let signals = try ParentSignals([SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD])
            let (parentEnd, servingEnd) = try PrivilegedChannel.pair()
            let pid = try ParentProcess.fork()
            if pid == 0 {
                Glibc.close(parentEnd)
                signals.close()
                ParentSignals.unblockAll()
                return (servingEnd, InheritedSockets(bound))
            }
            Glibc.close(servingEnd)
            if let readyPipe { Glibc.close(readyPipe) }  // the serving process says when it is ready
            var parent = PrivilegedParent(
                path: path, arguments: arguments, canUpgrade: config.zmqEngine == .native, child: pid,
                channel: parentEnd, signals: signals, bound: bound)
            exit(parent.run())
        } catch {
            bound.values.joined().forEach(Posix.close)
            throw StartupError(description: "privileged parent: \(error)")
        }
    }

    /// The listeners and (native engine) the ROUTER endpoint, taken from `inherited` where it has them.
    private static func bindAll(_ config: Configuration, inherited: InheritedSockets) throws(StartupError) -> [String: [Int32]] {
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
        inherited.closeRest()
        return bound
    }

    private init(
        path: String, arguments: [String], canUpgrade: Bool, child: Int32, channel: Int32, signals: ParentSignals,
        bound: [String: [Int32]]
    ) {
        self.path = path
        self.arguments = arguments
        self.canUpgrade = canUpgrade
        self.child = child
        self.channel = channel
        self.signals = signals
        self.bound = bound
    }

    /// Until the serving process exits; returns its exit status.
    private mutating func run() -> Int32 {
        var channelOpen = true
        while true {
            var watching = channelOpen ? [channel] : []
            if let upgrade { watching.append(upgrade.ready) }
            let timeout = upgrade.map { $0.deadline - MonotonicClock.now() }
            switch signals.wait(watching: watching, timeout: timeout) {
            case .signal(SIGCHLD):
                if let upgrade, let status = ParentProcess.reap(upgrade.pid) {
                    abandonUpgrade("the new process exited with status \(status) before serving")
                }
                abandoned.removeAll { ParentProcess.reap($0) != nil }
                if let status = ParentProcess.reap(child) {
                    if status > 128 { logger.error("the serving process was killed by signal \(status - 128)") }
                    return status
                }
            case .signal(SIGHUP):
                sendReload()
            case .signal(SIGUSR2):
                startUpgrade()
            case .signal(let signal):
                ParentProcess.send(signal, to: child)
            case .readable(let fd) where fd == channel:
                guard let requests = PrivilegedChannel.readRequests(on: channel) else {
                    channelOpen = false  // the serving process is exiting; SIGCHLD follows
                    continue
                }
                if requests.contains(.reload) { sendReload() }
                if requests.contains(.upgrade) { startUpgrade() }
            case .readable:
                finishUpgrade()
            case .timedOut:
                if let upgrade, MonotonicClock.now() >= upgrade.deadline {
                    ParentProcess.send(SIGTERM, to: upgrade.pid)
                    abandoned.append(upgrade.pid)
                    abandonUpgrade("the new process did not serve within \(Int(Self.upgradeTimeout)) s; stopped it")
                }
            }
        }
    }

    // MARK: reload

    /// Reads what the configuration names, as root, and sends it with the listeners' sockets. A file that
    /// cannot be read or parsed is sent as it is: the serving process reports the error at its line.
    private mutating func sendReload() {
        let files = FileSource(.recording)
        var sockets: [Int32] = []
        if let next = try? CommandLineTasks.loadConfiguration(path, files: files) {
            // Reads the key and certificate files into the bundle (errors are the serving process's to report).
            _ = try? CommandLineTasks.check(next, files: files)
            var kept: [String: [Int32]] = [:]
            for listener in next.listeners {
                let key = FileBundle.listenerKey(listener)
                switch bound[key].map({ Result<[Int32], SystemError>.success($0) }) ?? Self.bind(listener) {
                case .success(let fds):
                    kept[key] = fds
                    sockets += fds
                    files.recordListener(key: key, sockets: .value(fds.count))
                case .failure(let error):
                    files.recordListener(key: key, sockets: .failed(errno: error.errno))
                }
            }
            // The ROUTER's sockets stay (a reload cannot change `zmq`); listeners no longer configured close.
            for (key, fds) in bound where kept[key] == nil && !key.hasPrefix("zmq ") { fds.forEach(Posix.close) }
            for (key, fds) in bound where key.hasPrefix("zmq ") { kept[key] = fds }
            bound = kept
        }
        do { try PrivilegedChannel.send(bundle: files.bundle.encoded(), sockets: sockets, on: channel) } catch {
            logger.error("privileged parent: cannot send the reload to the serving process: \(error)")
        }
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
        do { try PrivilegedChannel.sendReplaced(on: channel) } catch {
            ParentProcess.send(SIGQUIT, to: child)
        }
    }

    private mutating func abandonUpgrade(_ why: String) {
        guard let (_, ready, _) = upgrade else { return }
        Glibc.close(ready)
        upgrade = nil
        logger.error("SIGUSR2: upgrade abandoned: \(why); still serving")
    }
}
