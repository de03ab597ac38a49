package import BlastBeatCore
package import BlastBeatSystem
import Glibc

/// The privileged parent (README.md, "Reload"). Started as root with a `uid` to switch to, the gateway forks
/// before doing anything else: the child is the gateway as before (it binds, reads its files, drops to
/// `uid` and serves); the parent keeps root and does only what a reload needs the rights of root for.
///
/// On SIGHUP (its own, or a reload request byte from the serving process) it reads the configuration, its
/// included files and every key and certificate file it names, binds the listeners the serving process does
/// not have yet, and sends all of it in one bundle (FileBundle.swift, PrivilegedChannel.swift). The serving
/// process reloads from that bundle exactly as it would from the files (Gateway+Reload.swift).
///
/// Why that is safe: the parent reads from the serving process nothing but "reload now" bytes, and a reload
/// does only what the root-owned configuration says (the same files, the same listeners). A compromised
/// serving process can make the parent read the configuration again, nothing more; it never gets root back,
/// and what it receives is what it would have been given on a reload anyway.
///
/// The other signals go to the serving process; when it exits the parent exits with its status, and when the
/// parent dies the serving process sees its channel close and stops gracefully (PrivilegedLink).
package struct PrivilegedParent {
    private let path: String
    private let child: Int32
    private let channel: Int32
    private let signals: ParentSignals
    private let logger = Logger(level: .info)
    /// Listening sockets the parent bound for reloads, by listener key; it keeps its copies so a later
    /// reload can send them again (the serving process closes the ones it has already).
    private var bound: [String: [Int32]] = [:]
    /// Listeners the serving process bound itself at start (nothing to send for them while they stay).
    private var boundByServing: Set<String>

    /// When started as root with a `uid` other than root: forks. In the serving process it returns the
    /// channel to the parent; in the parent it never returns. Without root (or with `uid = root`) nil.
    package static func startIfPrivileged(_ config: Configuration, path: String) throws(StartupError) -> Int32? {
        let target: (uid: UInt32, gid: UInt32)?
        do { target = try Privileges.target(user: config.uid ?? "nobody", group: config.gid ?? "nogroup") } catch {
            throw StartupError(description: "\(config.file): uid/gid: \(error)")
        }
        guard let target, target.uid != 0 else { return nil }
        do {
            let signals = try ParentSignals([SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD])
            let (parentEnd, servingEnd) = try PrivilegedChannel.pair()
            let pid = try ParentProcess.fork()
            if pid == 0 {
                Glibc.close(parentEnd)
                signals.close()
                ParentSignals.unblockAll()
                return servingEnd
            }
            Glibc.close(servingEnd)
            var parent = PrivilegedParent(
                path: path, child: pid, channel: parentEnd, signals: signals,
                boundByServing: Set(config.listeners.map(FileBundle.listenerKey)))
            exit(parent.run())
        } catch {
            throw StartupError(description: "privileged parent: \(error)")
        }
    }

    private init(path: String, child: Int32, channel: Int32, signals: ParentSignals, boundByServing: Set<String>) {
        self.path = path
        self.child = child
        self.channel = channel
        self.signals = signals
        self.boundByServing = boundByServing
    }

    /// Until the serving process exits; returns its exit status.
    private mutating func run() -> Int32 {
        var channelOpen = true
        while true {
            switch signals.wait(channel: channelOpen ? channel : nil) {
            case .signal(SIGCHLD):
                if let status = ParentProcess.reap(child) {
                    if status > 128 { logger.error("the serving process was killed by signal \(status - 128)") }
                    return status
                }
            case .signal(SIGHUP):
                sendReload()
            case .signal(SIGUSR2):
                break  // reserved for a binary upgrade; ignored like the serving process does
            case .signal(let signal):
                ParentProcess.send(signal, to: child)
            case .channelReadable:
                if PrivilegedChannel.readRequests(on: channel) {
                    sendReload()
                } else {
                    channelOpen = false  // the serving process is exiting; SIGCHLD follows
                }
            }
        }
    }

    /// Reads what the configuration names, as root, and sends it with the listeners' sockets. A file that
    /// cannot be read or parsed is sent as it is: the serving process reports the error at its line.
    private mutating func sendReload() {
        let files = FileSource(.recording)
        var sockets: [Int32] = []
        if let next = try? CommandLineTasks.loadConfiguration(path, files: files) {
            // Reads the key and certificate files into the bundle (errors are the serving process's to report).
            _ = try? CommandLineTasks.check(next, files: files)
            var kept: [String: [Int32]] = [:]
            let keys = next.listeners.map(FileBundle.listenerKey)
            for (listener, key) in zip(next.listeners, keys) where !boundByServing.contains(key) {
                let outcome = bound[key].map { Result<[Int32], SystemError>.success($0) } ?? Self.bind(listener)
                switch outcome {
                case .success(let fds):
                    kept[key] = fds
                    sockets += fds
                    files.recordListener(key: key, sockets: .value(fds.count))
                case .failure(let error):
                    files.recordListener(key: key, sockets: .failed(errno: error.errno))
                }
            }
            for (key, fds) in bound where kept[key] == nil { fds.forEach { Glibc.close($0) } }
            bound = kept
            // A listener the configuration no longer has is closed by the serving process; bound again by
            // the parent if it comes back.
            boundByServing.formIntersection(keys)
        }
        do { try PrivilegedChannel.send(files.bundle.encoded(), sockets: sockets, on: channel) } catch {
            logger.error("privileged parent: cannot send the reload to the serving process: \(error)")
        }
    }

    private static func bind(_ listener: ListenerConfig) -> Result<[Int32], SystemError> {
        var fds: [Int32] = []
        do {
            for address in try SocketAddress.resolve(listener.address) {
                fds.append(try Posix.listen(address: address, backlog: 1024))
            }
            return .success(fds)
        } catch {
            fds.forEach { Glibc.close($0) }
            return .failure(error)
        }
    }
}
