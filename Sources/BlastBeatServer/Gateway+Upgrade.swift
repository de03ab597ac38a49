package import BlastBeatCore
import BlastBeatSystem
import Glibc

/// SIGUSR2, zero-downtime upgrade (README.md, "Upgrade"): the binary is started again with the same
/// arguments and given the listening sockets (the clients' and the ROUTER's); once it serves, this process
/// stops accepting, finishes its requests within `shutdown-timeout`, closes its WebSockets with 1001 and
/// exits. Backends reconnect to the same endpoint, now the new process's; requests that reach the new process
/// before its backends wait for them (Gateway+NodeWait.swift).
///
/// With a privileged parent the parent starts the new binary (it holds the sockets and root); without one
/// this process does, through the same `Upgrade.spawn`.
extension Gateway {
    /// The gateway of this process: with the sockets of the process it replaces (started by SIGUSR2), and
    /// as root with a `uid` to switch to, in the child of a privileged parent (PrivilegedParent.swift; in the
    /// parent this never returns).
    package static func start(config: Configuration, path: String, arguments: [String]) throws(StartupError) -> Gateway {
        let inherited = InheritedSockets.fromEnvironment()
        let readyPipe = Upgrade.takeReadyPipe()
        guard
            let serving = try PrivilegedParent.startIfPrivileged(
                config, path: path, arguments: arguments, inherited: inherited, readyPipe: readyPipe)
        else { return try Gateway(config: config, inherited: inherited, readyPipe: readyPipe) }
        do {
            return try Gateway(
                config: serving.config, parentChannel: serving.channel, inherited: serving.sockets,
                readyPipe: serving.readyPipe, worker: serving.worker)
        } catch {
            throw error.reportedToParent(on: serving.channel)
        }
    }

    func upgradeRequested() {
        if isShuttingDown { return logger.info("SIGUSR2 during shutdown: not upgrading") }
        guard config.zmqEngine == .native else { return logger.error(Self.libzmqCannotUpgrade) }
        if let parent {
            if parent.request(.upgrade) { return }
            self.parent = nil
            logger.warning("the privileged parent is gone: upgrading from this process")
        }
        if upgradeInProgress != nil { return logger.info("SIGUSR2: an upgrade is already under way") }
        var sockets: [String: [Int32]] = [:]
        for (position, listener) in listeners.enumerated() where listener.isOpen {
            sockets[FileBundle.listenerKey(config.listeners[listenerConfigIndex[position]]), default: []].append(listener.fd)
        }
        sockets[InheritedSockets.routerKey(config.zmqEndpoint)] = router.listeningSockets ?? []
        let arguments = CommandLine.arguments
        do {
            let (pid, ready) = try Upgrade.spawn(arguments: arguments, sockets: sockets)
            upgradeInProgress = UpgradeWatch(gateway: self, pid: pid, ready: ready)
            logger.info("SIGUSR2: started \(arguments[0]) as pid \(pid); this one stops once it serves")
        } catch {
            logger.error("SIGUSR2: cannot start \(arguments[0]): \(error); still serving")
        }
    }

    static let libzmqCannotUpgrade =
        "SIGUSR2: an upgrade hands the ROUTER's socket to the new process, which only the native engine can (zmq-engine = libzmq: restart instead); still serving"

    /// A new process serves on this one's sockets: stop like SIGQUIT, but leave the ROUTER's sockets (and the
    /// `ipc://` file) to it and accept no backend connection any more.
    func stopAsReplaced() {
        upgradeInProgress = nil
        router.stopListening()
        logger.info("replaced by a new process: no longer accepting; finishing \(sessions.count) connection(s)")
        signalReceived(SIGQUIT)
    }
}

/// The new process of an upgrade this process started itself: its ready pipe, and how long it may take.
final class UpgradeWatch: IOWatcherDelegate, TimerWatcherDelegate {
    unowned(unsafe) let gateway: Gateway
    let pid: Int32
    let ready: Int32
    private var watcher: IOWatcher! = nil
    private var timer: TimerWatcher! = nil
    static let timeout = 60.0

    init(gateway: Gateway, pid: Int32, ready: Int32) {
        self.gateway = gateway
        self.pid = pid
        self.ready = ready
        watcher = IOWatcher(loop: gateway.loop, fd: ready, delegate: self)
        watcher.watch(read: true, write: false)
        timer = TimerWatcher(loop: gateway.loop, delegate: self)
        timer.start(after: Self.timeout)
    }

    func ioReady(readable: Bool, writable: Bool) {
        let served = Upgrade.readReady(ready)
        stop()
        if served {
            gateway.logger.info("SIGUSR2: pid \(pid) serves; this gateway stops (requests in flight finish)")
            gateway.stopAsReplaced()
        } else {
            gateway.upgradeInProgress = nil
            let status = ParentProcess.reap(pid).map { " with status \($0)" } ?? ""
            gateway.logger.error("SIGUSR2: upgrade abandoned: the new process exited\(status) before serving; still serving")
        }
    }

    func timerFired(_ timer: TimerWatcher) {
        stop()
        ParentProcess.send(SIGTERM, to: pid)
        gateway.upgradeInProgress = nil
        gateway.logger.error("SIGUSR2: upgrade abandoned: the new process did not serve within \(Int(Self.timeout)) s; stopped it; still serving")
    }

    private func stop() {
        watcher.stop()
        timer.stop()
        Posix.close(ready)
    }
}

extension StartupError {
    /// In a serving process forked by the privileged parent: the parent prints a start failure once for all its
    /// workers (PrivilegedParent.swift), so this process sends it there and exits with the status a failed start
    /// has (main.swift). Returns the error itself when the parent is gone, for this process to print.
    func reportedToParent(on channel: Int32) -> StartupError {
        guard PrivilegedChannel.reportStartFailure(description, on: channel) else { return self }
        exit(1)
    }
}
