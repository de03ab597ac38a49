import BlastBeatCore
import BlastBeatSystem
import Glibc

/// Serving: the privileges dropped after binding, the listeners and the ROUTER started, the loop run until the
/// gateway stops, and what is left closed then (Gateway.swift builds all of it).
extension Gateway {
    /// Drops root privileges (after binding), then serves until shut down.
    package func run() throws(StartupError) {
        let user = config.uid ?? "nobody"
        let group = config.gid ?? "nogroup"
        do {
            if let target = try Privileges.target(user: user, group: group) {
                handOverLogFiles(to: target.uid)
                try Privileges.drop(to: target)
                logger.info("running as uid \(target.uid) gid \(target.gid)\(worker.map { " (worker \($0.index) of \($0.count))" } ?? "")")
            }
        } catch {
            shutdownNow()
            let failure = StartupError(description: "\(config.file): uid/gid: \(error)")
            throw parent.map { failure.reportedToParent(on: $0.channel) } ?? failure
        }
        if let worker { logger.info("worker \(worker.index) of \(worker.count) serving as pid \(getpid())") }
        for listener in listeners {
            listener.setAccepting(true)
            logger.info("listening on \(listener.tls == nil ? "http" : "https")://\(listener.address)")
        }
        if let admin {
            admin.start()
            logger.info("admin listener (GET /metrics, /healthz) on \(admin.description)")
        }
        logger.info(
            "ROUTER bound to \(config.zmqEndpoint) (\(config.zmqEngine) ZMTP); \(nodes.nodes.count) node(s) configured; backends \(backendKeys.server.map { "authenticated with CURVE, gateway key \($0.publicKey.z85)" } ?? "not authenticated (NULL)")")
        warnIfTenantsAreUnauthenticated()
        nodeWaitEnds = loop.now + config.pingTimeout
        // With several workers the parent notifies, once every worker serves (PrivilegedParent.swift).
        notify("READY=1\nMAINPID=\(getpid())")
        parent?.reportServing()
        if let readyPipe {
            // Started by SIGUSR2: the old process stops now.
            Upgrade.reportReady(readyPipe)
            self.readyPipe = nil
        }
        pingTimer.start(after: config.pingFrequency / Double(Self.pingSlices), repeat: config.pingFrequency / Double(Self.pingSlices))
        housekeepingTimer.start(after: 1, repeat: 1)
        loop.run()
        shutdownNow()
        logger.info(
            "stopped: \(counters.requests) requests, \(counters.malformedBackendMessages + counters.unknownSessionMessages + counters.forgedIdentityMessages + counters.outOfOrderBackendMessages) backend messages dropped, \(counters.backendProtocolErrors) backend connections broke ZMTP, \(counters.refusedBackendClaims) backend connections refused, \(counters.vhostBusyRefusals) requests over max-in-flight, \(counters.clientRateRefusals) requests over client-rate, \(counters.vhostConnectionRefusals) over a vhost's max-connections, \(counters.clientConnectionRefusals) connections over max-client-connections, \(counters.connectionsClosedForRoom) closed to make room, \(counters.connectionsOverShare) refused over their address's share"
        )
    }

    private func shutdownNow() {
        for connection in Array(sessions.values) { connection.close() }
        releaseTarpit(all: true)
        closeListeners()
        admin?.close()
        accessLog?.flush()
        for sink in vhostOwnAccessLogs { sink.flush() }
        if let error = router?.close() {
            logger.warning("the ROUTER's socket file stays (the next start replaces it): \(error)")
        }
    }
}
