import BlastBeatCore
import BlastBeatSystem

/// A per-vhost limit that refused a request before it reached a node (README "Limits per vhost"): what the
/// client is told. Gateway.admitRequest decides the checks that hold for every transport; each transport
/// answers in its own way (HTTP/1.1: Connection.answerKeepingAlive; HTTP/2: the stream's error response).
enum VhostRefusal {
    /// The vhost holds its `max-connections` (HTTP/1.1 only: Connection.admit counts connections).
    case maxConnections(limit: Int)
    /// The vhost's nodes hold `max-in-flight` requests.
    case maxInFlight(limit: Int)
    /// The client address is over the vhost's `client-rate`; it may send again in `retryAfter` seconds.
    case clientRate(retryAfter: Int)

    var status: Int { if case .clientRate = self { 429 } else { 503 } }

    var reasonLine: StaticString { if case .clientRate = self { "429 Too Many Requests" } else { "503 Service Unavailable" } }

    var explanation: StaticString {
        switch self {
        case .maxConnections: "this site has too many open connections; try again shortly"
        case .maxInFlight: "this site's backends are busy; try again shortly"
        case .clientRate: "requests from your address are over this site's rate; retry later"
        }
    }

    var metricsLimit: Metrics.Limit {
        switch self {
        case .maxConnections: .maxConnections
        case .maxInFlight: .maxInFlight
        case .clientRate: .clientRate
        }
    }
}

extension Gateway {
    /// The per-vhost checks of a routed request that do not depend on its transport: `max-in-flight` (for a
    /// request without a body: one with a body is refused where it is dispatched, GatewaySession.dispatch,
    /// which closes, since its body would be read only to be thrown away), then `client-rate` per client
    /// address. Nil admits the request; a refusal has been counted and logged, and the caller answers it.
    func admitRequest(to vhost: Int, limits: VhostLimits, hasBody: Bool, from connection: Connection) -> VhostRefusal? {
        // A look at the gateway's count, not a take: dispatch takes the place (GatewaySession.dispatch).
        if let limit = limits.maxInFlight, !hasBody, vhostCounts.total(.inFlight, vhost: vhost) >= limit {
            return refused(.maxInFlight(limit: limit), vhost: vhost, client: connection)
        }
        if let rate = limits.clientRate {
            let key = ClientRateTable.Key(prefix: connection.clientPrefix, vhost: vhost)
            if let wait = clientRates.admit(key, rate: rate, burst: limits.clientBurst, now: loop.now) {
                return refused(.clientRate(retryAfter: wait), vhost: vhost, client: connection)
            }
        }
        return nil
    }

    /// The one place a refusal by a per-vhost limit is counted (the stop line and the metrics, by the vhost
    /// itself: an HTTP/2 stream's connection has no vhost of its own) and logged at warning, at most once per
    /// 10 s per vhost and limit, for `client-rate` per client address and vhost (one client's doing, kept in
    /// its bucket: ClientRateTable.shouldLogLastRefusal). The cheap time test comes first: refusals come in
    /// floods. Returns `refusal`.
    @discardableResult
    func refused(_ refusal: VhostRefusal, vhost: Int, client connection: Connection, countMetrics: Bool = true) -> VhostRefusal {
        if countMetrics { metrics.rejected(slot: Metrics.slot(ofVhost: vhost), by: refusal.metricsLimit) }
        let shouldLog: Bool
        switch refusal {
        case .maxConnections:
            counters.vhostConnectionRefusals += 1
            shouldLog = loop.now - vhostRefusalLogged[vhost].connections >= 10
            if shouldLog { vhostRefusalLogged[vhost].connections = loop.now }
        case .maxInFlight:
            counters.vhostBusyRefusals += 1
            shouldLog = loop.now - vhostRefusalLogged[vhost].inFlight >= 10
            if shouldLog { vhostRefusalLogged[vhost].inFlight = loop.now }
        case .clientRate:
            counters.clientRateRefusals += 1
            shouldLog = clientRates.shouldLogLastRefusal(now: loop.now, interval: 10)
        }
        guard shouldLog else { return refusal }
        let name = config.vhosts[vhost].name
        let client = String(decoding: connection.remoteAddress, as: UTF8.self)
        switch refusal {
        case .maxConnections(let limit):
            logger.warning(
                "vhost \(name) has max-connections = \(limit) connections; answering 503 to \(client) "
                    + "(logged once per 10 s per vhost)")
        case .maxInFlight(let limit):
            logger.warning(
                "vhost \(name) has max-in-flight = \(limit) requests at its nodes; answering 503 to \(client) "
                    + "(logged once per 10 s per vhost)")
        case .clientRate(let wait):
            let limits = vhostLimits[vhost]
            logger.warning(
                "client \(client) is over client-rate (\(limits.clientRate ?? 0)/s, burst \(limits.clientBurst)) "
                    + "for vhost \(name); answering 429 with Retry-After: \(wait) (logged once per 10 s per client and vhost)")
        }
        return refusal
    }

    /// The connection no longer counts for its vhost (it closed, or its next request is for another one).
    func leaveVhost(_ connection: Connection) {
        guard connection.countedVhost >= 0 else { return }
        vhostCounts.add(.connections, vhost: connection.countedVhost, worker: countColumn, -1)
        connection.countedVhost = -1
    }

    /// The pause after the next refusal: spread evenly over [refusalPause / 2, refusalPause) by a golden-ratio
    /// sequence (no random numbers needed). Refusals come in floods, many in one loop iteration; equal pauses
    /// would end together too and be answered in one long iteration that everyone else waits for (a
    /// stall of tens of milliseconds every second with 1,800 refused connections, test_tenant_isolation.py).
    func nextRefusalPause() -> Double {
        refusalPhase += 0.618_033_988_749_895
        if refusalPhase >= 1 { refusalPhase -= 1 }
        return config.refusalPause * (0.5 + refusalPhase / 2)
    }
}
