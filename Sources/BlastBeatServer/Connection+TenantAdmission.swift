import BlastBeatCore
import BlastBeatSystem

/// The per-vhost limits a routed request meets before anything reaches a node (README "Limits per vhost"):
/// a vhost's `max-connections`, its `max-in-flight`, then `client-rate` / `client-burst` per client address.
extension Connection {
    /// Whether the request for `vhost` may go on; when not, it has been answered here.
    func admit(_ head: HTTPRequestHead, to vhost: Int) -> Bool {
        log.vhost = vhost
        // One copy of the vhost's limits (plain values) for the checks below.
        let own = gateway.vhostLimits[vhost]
        if countedVhost != vhost {
            // A keep-alive connection whose request is for another vhost moves to it, and takes one of its places.
            if let limit = own.maxConnections, gateway.vhostConnections[vhost] >= limit {
                gateway.vhostConnectionsFull(self, vhost: vhost, limit: limit)
                sendErrorAndClose(
                    status: 503, message: "this site has too many open connections; try again shortly", retryAfter: true)
                return false
            }
            gateway.leaveVhost(self)
            countedVhost = vhost
            gateway.vhostConnections[vhost] += 1
        }
        if let limit = own.maxInFlight, gateway.vhostInFlight[vhost] >= limit, !head.hasBody {
            // GatewaySession.dispatch refuses the same way (closing), for requests with a body and resends.
            gateway.vhostInFlightFull(vhost: vhost, limit: limit)
            gateway.countRejection(self, by: .maxInFlight)
            answerKeepingAlive(
                head, status: 503, reasonLine: "503 Service Unavailable",
                explanation: "this site's backends are busy; try again shortly", retryAfter: gateway.retryAfterSeconds)
            return false
        }
        if let rate = own.clientRate {
            let key = ClientRateTable.Key(prefix: clientPrefix, vhost: vhost)
            if let wait = gateway.clientRates.admit(key, rate: rate, burst: own.clientBurst, now: gateway.loop.now) {
                gateway.clientRateRefused(self, vhost: vhost, retryAfter: wait)
                answerTooManyRequests(head, retryAfter: wait)
                return false
            }
        }
        return true
    }

    /// 429 with `Retry-After`: see `answerKeepingAlive`.
    private func answerTooManyRequests(_ head: HTTPRequestHead, retryAfter: Int) {
        answerKeepingAlive(
            head, status: 429, reasonLine: "429 Too Many Requests",
            explanation: "requests from your address are over this site's rate; retry later", retryAfter: retryAfter)
    }

    /// An error response of the admission checks, with `Retry-After`: `reasonLine` is "STATUS Reason phrase",
    /// the body says it and `explanation`. The connection stays when the request has no body and the client
    /// keeps it alive: a client that waits goes on over the same connection, and its next (pipelined) request
    /// is read as usual (a malformed one still gets 400 and the close). Closing would cost more than the
    /// answer: a client that reconnects at once (a load generator, a retry loop) would make the gateway accept
    /// and close a connection per refusal, and fill the listen queue that other tenants' new clients wait in
    /// (bench/noisy_neighbour.py: B's slowest request went from 1.1 s, a dropped SYN, to 0.2 s). A request
    /// with a body is answered and closed, since its body would have to be read only to be thrown away.
    func answerKeepingAlive(
        _ head: HTTPRequestHead, status: Int, reasonLine: StaticString, explanation: StaticString, retryAfter: Int
    ) {
        guard !head.hasBody, session.keepAlive, !gateway.isShuttingDown else {
            return sendErrorAndClose(
                status: status, message: explanation.description, extraHeaders: "Retry-After: \(retryAfter)\r\n")
        }
        let bodyLength = reasonLine.utf8CodeUnitCount + 2 + explanation.utf8CodeUnitCount + 1
        // Written piece by piece into the output buffer: a flood of refused requests allocates nothing.
        enqueue("HTTP/1.1 ")
        enqueue(reasonLine)
        enqueue("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
        withDecimalDigits(bodyLength) { enqueue($0) }
        enqueue("\r\nRetry-After: ")
        withDecimalDigits(retryAfter) { enqueue($0) }
        enqueue(head.version == .http10 ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\n\r\n")
        if head.methodKind != .head {
            enqueue(reasonLine)
            enqueue(": ")
            enqueue(explanation)
            enqueue("\n")
        }
        log.status = status
        log.bytesSent = head.methodKind == .head ? 0 : bodyLength
        gateway.writeAccessLog(self)
        // exchangeFinished() without its head.reset(): startRequest still holds a copy of the head, so resetting
        // it here would copy its header list, one allocation per refused request (test_allocations.py). The
        // parser resets the head when the next request starts.
        if clientEOF { return closeAfterFlush() }
        request = .idle
        session.exchangeFinished()
        setDeadline(gateway.config.timeouts.keepAlive, .idle)
        processPending()
        updateInterest()
    }
}

extension Gateway {
    /// The connection no longer counts for its vhost (it closed, or its next request is for another one).
    func leaveVhost(_ connection: Connection) {
        guard connection.countedVhost >= 0 else { return }
        vhostConnections[connection.countedVhost] -= 1
        connection.countedVhost = -1
    }

    /// Counts a `max-in-flight` refusal and logs it as GatewaySession.dispatch does (the same rate limit).
    func vhostInFlightFull(vhost: Int, limit: Int) {
        counters.vhostBusyRefusals += 1
        // The cheap test first: WarningLimiter builds a key per call, and refusals come in floods.
        guard loop.now - vhostRefusalLogged[vhost].inFlight >= 10 else { return }
        vhostRefusalLogged[vhost].inFlight = loop.now
        if vhostServerNames[vhost].withUnsafeBytes({ warnings.allow("in-flight", $0, now: loop.now, interval: 10) }) {
            logger.warning(
                "vhost \(config.vhosts[vhost].name) has max-in-flight = \(limit) requests at its nodes; "
                    + "answering 503 (logged once per 10 s)")
        }
    }

    /// Counts a `max-connections` refusal of a vhost and logs it, once per 10 s per vhost.
    func vhostConnectionsFull(_ connection: Connection, vhost: Int, limit: Int) {
        counters.vhostConnectionRefusals += 1
        metrics.rejected(slot: Metrics.slot(ofVhost: vhost), by: .maxConnections)
        guard loop.now - vhostRefusalLogged[vhost].connections >= 10 else { return }
        vhostRefusalLogged[vhost].connections = loop.now
        if vhostServerNames[vhost].withUnsafeBytes({ warnings.allow("vhost-connections", $0, now: loop.now, interval: 10) }) {
            logger.warning(
                "vhost \(config.vhosts[vhost].name) has max-connections = \(limit) connections; answering 503 to "
                    + "\(String(decoding: connection.remoteAddress, as: UTF8.self)) and closing (logged once per 10 s per vhost)")
        }
    }

    /// Counts a `client-rate` refusal and logs it, once per 10 s per (vhost, client address).
    func clientRateRefused(_ connection: Connection, vhost: Int, retryAfter: Int) {
        counters.clientRateRefusals += 1
        // By the vhost itself: an HTTP/2 stream's connection has no vhost of its own.
        metrics.rejected(slot: Metrics.slot(ofVhost: vhost), by: .clientRate)
        if clientRates.shouldLogLastRefusal(now: loop.now, interval: 10) {
            let limits = vhostLimits[vhost]
            logger.warning(
                "client \(String(decoding: connection.remoteAddress, as: UTF8.self)) is over client-rate "
                    + "(\(limits.clientRate ?? 0)/s, burst \(limits.clientBurst)) for vhost \(config.vhosts[vhost].name); "
                    + "answering 429 with Retry-After: \(retryAfter) (logged once per 10 s per client and vhost)")
        }
    }
}
