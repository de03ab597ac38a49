import BlastBeatCore
import BlastBeatSystem
import Glibc

/// Signals: graceful stop, reload (Gateway+Reload.swift), log reopening; and the service manager.
extension Gateway {
    // MARK: shutdown

    package func signalReceived(_ signal: Int32) {
        if signal == SIGHUP {
            if isShuttingDown { return logger.info("SIGHUP during shutdown: not reloading") }
            if let parent {
                // The parent reads the files as root and answers with a bundle (PrivilegedLink.received).
                notify("RELOADING=1\nMONOTONIC_USEC=\(ServiceNotifier.monotonicMicroseconds())")
                if parent.request(.reload) { return }
                self.parent = nil
                logger.warning("the privileged parent is gone: reloading with the files uid \(getuid()) can read")
            }
            return reloadConfiguration(files: .direct, sockets: [])
        }
        if signal == SIGUSR1 {
            return reopenLogs()
        }
        if signal == SIGUSR2 {
            return upgradeRequested()
        }
        if isShuttingDown {
            logger.warning("second signal: stopping now")
            for connection in Array(sessions.values) { connection.close() }
            loop.stop()
            return
        }
        beginStopping()
        notify("STOPPING=1")
        logger.info(
            "\(signal == SIGINT ? "SIGINT" : signal == SIGQUIT ? "SIGQUIT" : "SIGTERM"): no longer accepting; finishing \(sessions.count) connection(s) within \(config.timeouts.shutdown)s")
        closeListeners()
        for connection in Array(sessions.values) { connection.shutdownRequested() }
        shutdownTimer.start(after: config.timeouts.shutdown)
        if sessions.isEmpty && router.finishedStopping() { loop.stop() }
    }
}

// MARK: log files and the service manager

extension Gateway {
    /// SIGUSR1 (log rotation): both log files are opened again at their paths. A file that cannot be opened
    /// keeps being written where it was, and the error says so.
    func reopenLogs() {
        var reopened: [String] = []
        let failure = " (the gateway, running as uid \(getuid()), must be able to open it: README.md, \"Log rotation\")"
        do {
            if try logger.reopen(), let path = logger.path { reopened.append(path) }
        } catch {
            logger.error("SIGUSR1: cannot reopen error-log, still writing to the old file: \(error)\(failure)")
        }
        for accessLog in allAccessLogs {
            do {
                if try accessLog.reopen(), let path = accessLog.path { reopened.append(path) }
            } catch {
                logger.error("SIGUSR1: cannot reopen access-log, still writing to the old file: \(error)\(failure)")
            }
        }
        if !reopened.isEmpty {
            logger.info("SIGUSR1: reopened \(reopened.joined(separator: " and "))")
        } else if logger.path == nil && allAccessLogs.allSatisfy({ $0.path == nil }) {
            logger.info("SIGUSR1: no log file to reopen (error-log and access-log are standard streams or off)")
        }
    }

    /// As root, before switching to `uid`: the log files become that user's, so SIGUSR1 can reopen them.
    func handOverLogFiles(to uid: UInt32) {
        var logs: [(key: String, path: String?, handOver: (UInt32) throws(SystemError) -> Void)] = [
            ("error-log", logger.path, logger.handOver)
        ]
        for sink in allAccessLogs { logs.append(("access-log", sink.path, sink.handOver)) }
        for (key, path, handOver) in logs {
            guard let path else { continue }
            do { try handOver(uid) } catch {
                logger.warning("\(key) \(path): \(error); after the switch to uid \(uid) SIGUSR1 may fail to reopen it")
            }
        }
    }

    /// One notification to the service manager, when there is one; a failure is logged and changes nothing.
    func notify(_ state: String) {
        guard let notifier else { return }
        do { try notifier.send(state) } catch {
            logger.warning("\(error) (sending \(state.split(separator: "\n").first ?? ""))")
        }
    }
}
