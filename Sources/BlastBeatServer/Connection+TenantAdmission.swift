import BlastBeatCore
import BlastBeatSystem

/// The per-vhost limits a routed HTTP/1.1 request meets before anything reaches a node (README "Limits per
/// vhost"): the vhost's `max-connections` (connections are HTTP/1.1's to count), then the checks every transport
/// shares (Gateway.admitRequest: `max-in-flight`, `client-rate`); and how a refusal is answered here.
extension Connection {
    /// Whether the request for `vhost` may go on; when not, it has been answered here.
    func admit(_ head: HTTPRequestHead, to vhost: Int) -> Bool {
        log.vhost = vhost
        // One copy of the vhost's limits (plain values) for the checks below.
        let own = gateway.vhostLimits[vhost]
        if countedVhost != vhost {
            // A keep-alive connection whose request is for another vhost moves to it, and takes one of its places.
            if let limit = own.maxConnections, !gateway.takeConnection(vhost, limit: limit) {
                // Refused like the other limits, keeping the connection (still counted where it was, if anywhere):
                // closing it would send a client that retries at once back through the listen queue.
                answerKeepingAlive(head, gateway.refused(.maxConnections(limit: limit), vhost: vhost, client: self))
                return false
            }
            gateway.leaveVhost(self)
            countedVhost = vhost
            // Taken above when the vhost has a limit (counted across every worker).
            if own.maxConnections == nil { gateway.vhostCounts.add(.connections, vhost: vhost, worker: gateway.countColumn, 1) }
        }
        if let refusal = gateway.admitRequest(to: vhost, limits: own, hasBody: head.hasBody, from: self) {
            answerKeepingAlive(head, refusal)
            return false
        }
        return true
    }

    /// The answer to a refusal of the admission checks, with `Retry-After`: the status line, a body that says
    /// it and the refusal's explanation. The connection stays when the request has no body and the client
    /// keeps it alive: a client that waits goes on over the same connection. Closing would cost more than the
    /// answer: a client that reconnects at once (a load generator, a retry loop) would make the gateway accept
    /// and close a connection per refusal, and its new connection would wait in the listen queue in front of
    /// other tenants' new clients (bench/noisy_neighbour.py: B's slowest request went from 1.1 s, a dropped
    /// SYN, to 0.2 s). A request with a body is answered and closed, since its body would have to be read
    /// only to be thrown away.
    ///
    /// The connection's next request is read after a pause (`refusal-pause`, 1 s: between half of it and all of
    /// it, Gateway.nextRefusalPause; `Retry-After` says at least 1 s, so a client that honours it never notices;
    /// pipelined requests wait in `pending`; a
    /// malformed one still gets 400 and the close then): a client that ignores `Retry-After` and asks again at
    /// once costs the gateway one refusal per pause instead of one per round trip. Without the pause, 800 of
    /// tenant A's connections retrying at once made 14,000 refusals a second, and tenant B's requests waited
    /// behind them in the loop (test_tenant_isolation.py).
    func answerKeepingAlive(_ head: HTTPRequestHead, _ refusal: VhostRefusal) {
        let status = refusal.status
        let reasonLine = refusal.reasonLine
        let explanation = refusal.explanation
        let retryAfter: Int
        if case .clientRate(let wait) = refusal { retryAfter = wait } else { retryAfter = gateway.retryAfterSeconds }
        guard !head.hasBody, session.keepAlive, !gateway.isShuttingDown else {
            return sendErrorAndClose(
                status: status, message: explanation.description, extraHeaders: "Retry-After: \(retryAfter)\r\n")
        }
        let bodyLength = reasonLine.utf8CodeUnitCount + 2 + explanation.utf8CodeUnitCount + 1
        // Written piece by piece into the output buffer: a flood of refused requests allocates nothing.
        enqueue("HTTP/1.1 ")
        enqueue(reasonLine)
        enqueue("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
        withDecimalDigitSpan(bodyLength) { enqueue($0) }
        enqueue("\r\nRetry-After: ")
        withDecimalDigitSpan(retryAfter) { enqueue($0) }
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
        if input == .ended { return closeAfterFlush() }
        request = .idle
        session.exchangeFinished()
        setDeadline(gateway.nextRefusalPause(), .refusalPause)
        updateInterest()
    }

    /// The pause after a refusal is over: the connection reads (and handles pipelined requests) again.
    func resumeAfterRefusal() {
        setDeadline(gateway.config.timeouts.keepAlive, .idle)
        processPending()
        updateInterest()
    }
}
