import BlastBeatCore
import BlastBeatSystem
import Glibc

/// SIGHUP: the whole configuration is read again (with its included files) and applied in place
/// (README.md, "Reload"). Vhosts, nodes, node keys, limits, certificates, log files and listeners change;
/// connections, requests and WebSockets in flight go on, each request with the limits it started with.
///
/// A reload happens in two steps. First everything that can fail: reading and checking the files, the keys,
/// the certificates, binding the new listeners, opening new log files. Any failure undoes what was opened
/// and changes nothing. Then the switch, which cannot fail: the merged configuration (ConfigReload.swift,
/// which keeps every vhost's index) and the tables derived from it.
extension Gateway {
    /// Reloads from `files` (the file system, or the privileged parent's bundle) with the listening `sockets`
    /// the parent bound; every socket not used is closed.
    func reloadConfiguration(files: FileSource, sockets: [Int32]) {
        notify("RELOADING=1\nMONOTONIC_USEC=\(ServiceNotifier.monotonicMicroseconds())")
        defer {
            notify("READY=1")
            parent?.reportServing()
        }
        var sockets = ReceivedSockets(files.bundle, sockets)
        defer { sockets.closeUnused() }
        metrics.configReloads += 1
        do {
            let summary = try reload(files: files, sockets: &sockets)
            logger.info("SIGHUP: reloaded \(config.file): \(summary)")
        } catch {
            metrics.configReloadFailures += 1
            logger.error("SIGHUP: reload failed, nothing changed: \(error)")
        }
    }

    /// After a reload, until every backend connection the new configuration refuses is closed.
    func recheckBackendConnections() {
        guard let until = recheckUntil else { return }
        if router.recheckConnectedPeers(evenBusy: loop.now >= until) == 0 { recheckUntil = nil }
    }

    /// What a reload prepared and has yet to switch to.
    private struct PreparedReload {
        var plan: ConfigReload
        var keys: BackendKeys
        /// New listeners by their index in the merged configuration.
        var opened: [(index: Int, listeners: [Listener])] = []
        /// Certificates for the running TLS listeners that stay, by position in `listeners`.
        var certificates: [(position: Int, defaultCertificate: TLSCertificate?, all: [TLSCertificate])] = []
        /// Set when the path changed: the new file (for `access-log`, nil when it is now off).
        var errorLog: LogSink? = nil
        var accessLogChanged = false
        var accessLog: LogSink? = nil
        /// Each vhost's access log, and the vhosts' own files (new ones opened, the running ones reused).
        var vhostAccessLogs: (perVhost: [LogSink?], own: [LogSink]) = ([], [])

        func undo() {
            for (_, listeners) in opened { for listener in listeners { listener.close() } }
        }
    }

    private func reload(files: FileSource, sockets: inout ReceivedSockets) throws(StartupError) -> String {
        let next = try CommandLineTasks.loadConfiguration(config.file, files: files)
        let plan: ConfigReload
        do { plan = try ConfigReload.plan(running: config, next: next, isIdle: { vhostInFlight($0) == 0 }) } catch {
            throw StartupError(description: "\(error)")
        }
        guard vhostCounts.layout.fits(vhosts: plan.merged.vhosts.count) else {
            // The shared counts were mapped before the workers started and cannot grow (VhostCountLayout).
            throw StartupError(
                description:
                    "\(config.file): \(plan.merged.vhosts.count) vhosts (retired ones included) are more than the \(vhostCounts.layout.vhostCapacity) this gateway has per-vhost counts for; restart it to serve them")
        }
        let prepared = try prepare(plan, files: files, sockets: &sockets)
        switchTo(prepared)
        return plan.summary
    }

    /// Everything that can fail, with `plan.merged` as the configuration; on failure what was opened is closed.
    private func prepare(
        _ plan: ConfigReload, files: FileSource, sockets: inout ReceivedSockets
    ) throws(StartupError) -> PreparedReload {
        let merged = plan.merged
        let keys: BackendKeys
        do { keys = try BackendKeys.load(merged, files: files) } catch { throw StartupError(description: "\(error)") }
        if keys.server?.publicKey != backendKeys.server?.publicKey {
            throw StartupError(
                description: merged.error(
                    at: merged.curveKeyLine, key: "curve-key",
                    "the key in the file changed, but a reload cannot change the gateway's key: restart the gateway"
                ).description)
        }
        var prepared = PreparedReload(plan: plan, keys: keys)
        let running = config
        do throws(StartupError) {
            for index in plan.addedListeners {
                let received = try sockets.take(for: merged.listeners[index], in: merged)
                prepared.opened.append((index, try openListener(index, of: merged, files: files, sockets: received)))
            }
            for (position, listener) in listeners.enumerated() where listener.tls != nil && listener.isOpen {
                guard let index = plan.runningListener.firstIndex(of: listenerConfigIndex[position]) else { continue }
                let (defaultCertificate, all) = try TLSFiles.certificates(merged, forListener: index, files: files)
                prepared.certificates.append((position, defaultCertificate, all))
            }
            if merged.errorLog != running.errorLog {
                do { prepared.errorLog = try LogSink(path: merged.errorLog, standardFD: 2) } catch {
                    throw StartupError(description: "\(merged.file): error-log: \(error)")
                }
            }
            if merged.accessLog != running.accessLog {
                prepared.accessLogChanged = true
                if let path = merged.accessLog {
                    do { prepared.accessLog = try LogSink(path: path) } catch {
                        throw StartupError(description: "\(merged.file): access-log: \(error)")
                    }
                }
            }
            prepared.vhostAccessLogs = try vhostAccessLogs(
                for: merged, global: prepared.accessLogChanged ? prepared.accessLog : accessLog)
        } catch {
            prepared.undo()
            throw error
        }
        return prepared
    }

    /// The switch: nothing here fails (a certificate table that OpenSSL refuses keeps the old one, logged).
    private func switchTo(_ prepared: PreparedReload) {
        let plan = prepared.plan
        config = plan.merged
        backendKeys = prepared.keys
        installSettings()
        logger.level = config.logLevel
        if let errorLog = prepared.errorLog { logger.write(to: errorLog) }
        if prepared.accessLogChanged {
            accessLog?.flush()
            accessLog = prepared.accessLog
        }
        installAccessLogs(prepared.vhostAccessLogs)
        router.setLimits(maxMessageSize: config.largestBackendMessage + 64 * 1024, maxQueuedBytes: config.maxNodeQueue * 2)
        // A node no vhost lists any more, or a key no longer listed for its node, loses its connections once
        // their requests in flight are done (checked every second), within the longest backend-timeout.
        recheckUntil = loop.now + config.vhosts.reduce(config.timeouts.backend) { max($0, $1.limits.backendTimeout) }
        recheckBackendConnections()

        for (position, defaultCertificate, all) in prepared.certificates {
            let listener = listeners[position]
            do {
                try listener.tls?.reload(defaultCertificate: defaultCertificate, certificates: all)
                logger.info("reloaded \(all.count) certificate(s) for https://\(listener.address)")
            } catch {
                logger.error("certificate reload for https://\(listener.address) failed, keeping the old ones: \(error)")
            }
        }
        // Running listeners: the others get the new Hosts; the removed ones close, and the connections they
        // accepted finish what they have in flight and close (Connection.listenerRemoved).
        var kept: [Listener] = []
        var keptIndex: [Int] = []
        for (position, listener) in listeners.enumerated() {
            guard let index = plan.runningListener.firstIndex(of: listenerConfigIndex[position]), listener.isOpen else {
                listener.close()
                listener.router = VirtualHostRouter(entries: [], defaultVhost: nil, listenerPort: listener.router.listenerPort)
                for connection in Array(sessions.values) where connection.listener === listener {
                    connection.listenerRemoved()
                }
                continue
            }
            listener.router = vhostRouter(forListener: index, of: config, port: listener.router.listenerPort)
            if let tls = listener.tls { TLSFiles.offerProtocols(config, forListener: index, on: tls) }
            kept.append(listener)
            keptIndex.append(index)
        }
        for (index, opened) in prepared.opened {
            for listener in opened {
                kept.append(listener)
                keptIndex.append(index)
                if !isShuttingDown && !acceptingPaused { listener.setAccepting(true) }
                logger.info("listening on \(listener.tls == nil ? "http" : "https")://\(listener.address)")
            }
        }
        listeners = kept
        listenerConfigIndex = keptIndex
        if !plan.addedVhosts.isEmpty || !plan.changedVhosts.isEmpty { warnIfTenantsAreUnauthenticated() }
    }
}

/// The listening sockets that came with a bundle, by listener (FileBundle.listeners gives how many each has,
/// in order). Those a reload does not use are closed.
struct ReceivedSockets {
    private var byKey: [String: Result<[Int32], SystemError>] = [:]
    private var unused: Set<Int32>

    init(_ bundle: FileBundle, _ sockets: [Int32]) {
        unused = Set(sockets)
        var next = 0
        for (key, entry) in bundle.listeners {
            switch entry {
            case .value(let count):
                guard next + count <= sockets.count else { break }
                byKey[key] = .success(Array(sockets[next..<next + count]))
                next += count
            case .failed(let errno):
                byKey[key] = .failure(SystemError(call: "bind (by the privileged parent)", errno: errno))
            }
        }
    }

    /// The parent's sockets for `listener`, nil when it sent none (the gateway binds it itself); a bind
    /// that failed in the parent is this listener's error.
    mutating func take(for listener: ListenerConfig, in config: Configuration) throws(StartupError) -> [Int32]? {
        switch byKey[FileBundle.listenerKey(listener)] {
        case nil:
            return nil
        case .success(let fds):
            for fd in fds { unused.remove(fd) }
            return fds
        case .failure(let error):
            throw StartupError(description: config.error(at: listener.line, key: listener.tls ? "bind-ssl" : "bind", "\(error)").description)
        }
    }

    func closeUnused() {
        for fd in unused { Posix.close(fd) }
    }
}
