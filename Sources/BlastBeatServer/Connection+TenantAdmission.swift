import BlastBeatCore
import BlastBeatSystem

/// The per-vhost limits a routed request meets before anything reaches a node (README "Limits per vhost"):
/// a vhost's `max-connections`, then `client-rate` / `client-burst` per client address.
extension Connection {
    /// Whether the request for `vhost` may go on; when not, it has been answered here.
    func admit(_ head: HTTPRequestHead, to vhost: Int) -> Bool {
        log.vhost = vhost
        if countedVhost != vhost {
            // A keep-alive connection whose request is for another vhost moves to it, and takes one of its places.
            if let limit = gateway.vhostLimits[vhost].maxConnections, gateway.vhostConnections[vhost] >= limit {
                gateway.vhostConnectionsFull(self, vhost: vhost, limit: limit)
                sendErrorAndClose(
                    status: 503, message: "this site has too many open connections; try again shortly", retryAfter: true)
                return false
            }
            gateway.leaveVhost(self)
            countedVhost = vhost
            gateway.vhostConnections[vhost] += 1
        }
        if let rate = gateway.vhostLimits[vhost].clientRate {
            let key = ClientRateTable.Key(prefix: clientPrefix, vhost: vhost)
            let burst = gateway.vhostLimits[vhost].clientBurst
            if let wait = gateway.clientRates.admit(key, rate: rate, burst: burst, now: gateway.loop.now) {
                gateway.clientRateRefused(self, vhost: vhost, retryAfter: wait)
                answerTooManyRequests(head, retryAfter: wait)
                return false
            }
        }
        return true
    }

    /// 429 with `Retry-After`. The connection stays when the request has no body and the client keeps it
    /// alive: a client that slows down goes on over the same connection, and its next (pipelined) request is
    /// read as usual (a malformed one still gets 400 and the close). A request with a body is answered and
    /// closed, since its body would have to be read only to be thrown away.
    private func answerTooManyRequests(_ head: HTTPRequestHead, retryAfter: Int) {
        let message: StaticString = "429 Too Many Requests: requests from your address are over this site's rate; retry later\n"
        guard !head.hasBody, session.keepAlive, !gateway.isShuttingDown else {
            let seconds = "Retry-After: \(retryAfter)\r\n"
            return sendErrorAndClose(
                status: 429, message: "requests from your address are over this site's rate; retry later",
                extraHeaders: seconds)
        }
        // Written piece by piece into the output buffer: a flood of refused requests allocates nothing.
        enqueue("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
        withDecimalDigits(message.utf8CodeUnitCount) { enqueue($0) }
        enqueue("\r\nRetry-After: ")
        withDecimalDigits(retryAfter) { enqueue($0) }
        enqueue(head.version == .http10 ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\n\r\n")
        if head.methodKind != .head { enqueue(message) }
        log.status = 429
        log.bytesSent = head.methodKind == .head ? 0 : message.utf8CodeUnitCount
        gateway.writeAccessLog(self)
        exchangeFinished()
    }
}

extension Gateway {
    /// The connection no longer counts for its vhost (it closed, or its next request is for another one).
    func leaveVhost(_ connection: Connection) {
        guard connection.countedVhost >= 0 else { return }
        vhostConnections[connection.countedVhost] -= 1
        connection.countedVhost = -1
    }

    /// Counts a `max-connections` refusal of a vhost and logs it, once per 10 s per vhost.
    func vhostConnectionsFull(_ connection: Connection, vhost: Int, limit: Int) {
        counters.vhostConnectionRefusals += 1
        if vhostServerNames[vhost].withUnsafeBytes({ warnings.allow("vhost-connections", $0, now: loop.now, interval: 10) }) {
            logger.warning(
                "vhost \(config.vhosts[vhost].name) has max-connections = \(limit) connections; answering 503 to "
                    + "\(String(decoding: connection.remoteAddress, as: UTF8.self)) and closing (logged once per 10 s per vhost)")
        }
    }

    /// Counts a `client-rate` refusal and logs it, once per 10 s per (vhost, client address).
    func clientRateRefused(_ connection: Connection, vhost: Int, retryAfter: Int) {
        counters.clientRateRefusals += 1
        var key = connection.remoteAddress
        withDecimalDigits(vhost) { key.appendBytes($0) }
        if key.withUnsafeBytes({ warnings.allow("client-rate", $0, now: loop.now, interval: 10) }) {
            let limits = vhostLimits[vhost]
            logger.warning(
                "client \(String(decoding: connection.remoteAddress, as: UTF8.self)) is over client-rate "
                    + "(\(limits.clientRate ?? 0)/s, burst \(limits.clientBurst)) for vhost \(config.vhosts[vhost].name); "
                    + "answering 429 with Retry-After: \(retryAfter) (logged once per 10 s per client and vhost)")
        }
    }
}
