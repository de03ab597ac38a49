import BlastBeatCore

/// What the admin listener's `GET /metrics` reports (README "Metrics"), counted where it happens.
///
/// Counting is a plain integer increment into an array indexed by vhost or node: no lookup, no lock
/// (one loop thread), no allocation. Everything that can be read from the gateway's own state at scrape
/// time (open connections and WebSockets per vhost, buffered bytes, node health and requests in flight)
/// is read then instead of being counted, so the hot path pays for none of it (see Metrics+Render).
///
/// Vhost slots: one per configured vhost, in configuration order, plus `noVhost` for what was answered
/// before a vhost was chosen (no vhost for the Host, a malformed head, a header timeout). Node slots: one
/// per configured node; the `NAME#INSTANCE` processes of a node count into their node's slot, so a
/// restarted instance (a new identity) continues its node's counters instead of starting new series.
final class Metrics {
    /// The limits a request can be rejected by, as the `limit` label names them (the configuration keys).
    enum Limit: Int, CaseIterable {
        case maxInFlight, maxBodySize, maxRequestLine, maxHeaderSize, maxHeaders
        case headerTimeout, bodyTimeout, backendTimeout, webSocketIdleTimeout, tlsHandshakeTimeout
        case maxOutputBuffer, webSocketMaxMessage
        case clientRate, maxConnections

        var label: StaticString {
            switch self {
            case .maxInFlight: "max-in-flight"
            case .maxBodySize: "max-body-size"
            case .maxRequestLine: "max-request-line"
            case .maxHeaderSize: "max-header-size"
            case .maxHeaders: "max-headers"
            case .headerTimeout: "header-timeout"
            case .bodyTimeout: "body-timeout"
            case .backendTimeout: "backend-timeout"
            case .webSocketIdleTimeout: "websocket-idle-timeout"
            case .tlsHandshakeTimeout: "tls-handshake-timeout"
            case .maxOutputBuffer: "max-output-buffer"
            case .webSocketMaxMessage: "websocket-max-message"
            case .clientRate: "client-rate"
            case .maxConnections: "max-connections"
            }
        }
    }

    /// The slot of what belongs to no vhost (rendered with `vhost=""`); vhost `v` has slot `v + 1`, so a
    /// reload that adds vhosts appends slots and every count keeps its place (ConfigReload.swift).
    let noVhost = 0
    /// `noVhost` plus the configured vhosts (retired ones included: their counts stay).
    var slotCount: Int { vhostLabels.count }

    static func slot(ofVhost vhost: Int) -> Int { vhost >= 0 ? vhost + 1 : 0 }

    // Per vhost slot.
    /// Responses by status class: `slot * 5 + (status / 100 - 1)` (1xx … 5xx).
    var responses: [Int]
    /// Request durations: `slot * LatencyBuckets.count + bucket` (not cumulative; summed when rendered).
    var durationBuckets: [Int]
    var durationSums: [Double]
    /// Bytes read from and written to client sockets (TLS: ciphertext, as on the wire).
    var receivedBytes: [Int]
    var sentBytes: [Int]
    /// `slot * Limit.allCases.count + limit`.
    var rejections: [Int]

    // Per configured node, by NodeTable index (see `install`).
    private(set) var nodeResponses: [Int] = []
    private(set) var nodeRetries: [Int] = []
    /// The round trip of the last answered ping, seconds (nil until one was answered).
    private(set) var nodePingRTT: [Double?] = []
    /// When the last ping was sent (nil: none outstanding).
    private var nodePingSentAt: [Double?] = []

    // Gateway.
    /// TLS handshakes of closed connections that completed, and that did not (open ones are added at scrape).
    var closedTLSHandshakes = 0
    var tlsHandshakeFailures = 0
    /// Responses by protocol: HTTP/2 streams' (the rest are HTTP/1.x).
    var http2Responses = 0
    var configReloads = 0
    var configReloadFailures = 0
    /// Unix time the gateway started.
    let startTime: Double

    /// The text of the last scrape; its storage is kept for the next one.
    var text = PrometheusText()
    /// Escaped `vhost` and `node` label values, made once per configuration.
    private(set) var vhostLabels: [[UInt8]] = [[]]
    private(set) var nodeLabels: [[UInt8]] = []

    init(startTime: Double) {
        responses = []
        durationBuckets = []
        durationSums = []
        receivedBytes = []
        sentBytes = []
        rejections = []
        self.startTime = startTime
        install(vhostNames: [], nodeNames: [])
    }

    /// The configuration's vhosts (by index, retired ones included) and nodes (by NodeTable index; instances
    /// count as their node): at start and after a reload. Counts survive a reload: a vhost keeps its index,
    /// new ones get new slots, and a slot given to another vhost (a removed one's, reused) starts from zero.
    func install(vhostNames: [String], nodeNames: [[UInt8]]) {
        let labels = [[]] + vhostNames.map { PrometheusText.escapedLabelValue($0.utf8) }
        let slots = labels.count
        func grow<T>(_ array: inout [T], _ perSlot: Int, _ zero: T) {
            array += [T](repeating: zero, count: max(0, slots * perSlot - array.count))
        }
        grow(&responses, 5, 0)
        grow(&durationBuckets, LatencyBuckets.count, 0)
        grow(&durationSums, 1, 0)
        grow(&receivedBytes, 1, 0)
        grow(&sentBytes, 1, 0)
        grow(&rejections, Limit.allCases.count, 0)
        for slot in 1..<min(slots, vhostLabels.count) where labels[slot] != vhostLabels[slot] {
            resetSlot(slot)
        }
        vhostLabels = labels
        let nodes = nodeNames.count
        nodeLabels = nodeNames.map { PrometheusText.escapedLabelValue($0) }
        nodeResponses += [Int](repeating: 0, count: max(0, nodes - nodeResponses.count))
        nodeRetries += [Int](repeating: 0, count: max(0, nodes - nodeRetries.count))
        nodePingRTT += [Double?](repeating: nil, count: max(0, nodes - nodePingRTT.count))
        nodePingSentAt += [Double?](repeating: nil, count: max(0, nodes - nodePingSentAt.count))
    }

    private func resetSlot(_ slot: Int) {
        for i in slot * 5..<(slot + 1) * 5 { responses[i] = 0 }
        for i in slot * LatencyBuckets.count..<(slot + 1) * LatencyBuckets.count { durationBuckets[i] = 0 }
        durationSums[slot] = 0
        receivedBytes[slot] = 0
        sentBytes[slot] = 0
        let limits = Limit.allCases.count
        for i in slot * limits..<(slot + 1) * limits { rejections[i] = 0 }
    }

    // MARK: counting

    /// A response is complete (where the access log line is written): its status class, its duration when
    /// its head was complete (`seconds` nil otherwise), and the connection's bytes so far.
    func responseCompleted(slot: Int, status: Int, seconds: Double?, meter: inout ConnectionMeter) {
        let statusClass = status / 100
        if statusClass >= 1 && statusClass <= 5 { responses[slot * 5 + statusClass - 1] &+= 1 }
        if let seconds {
            durationBuckets[slot * LatencyBuckets.count + LatencyBuckets.index(of: seconds)] &+= 1
            durationSums[slot] += seconds
        }
        addBytes(of: &meter, to: slot)
    }

    /// Moves the bytes a connection moved since the last call into `slot`'s totals.
    func addBytes(of meter: inout ConnectionMeter, to slot: Int) {
        receivedBytes[slot] &+= meter.bytesIn
        sentBytes[slot] &+= meter.bytesOut
        meter.bytesIn = 0
        meter.bytesOut = 0
    }

    func rejected(slot: Int, by limit: Limit) {
        rejections[slot * Limit.allCases.count + limit.rawValue] &+= 1
    }

    /// The limit behind a failure the gateway answers itself, if it is one.
    static func limit(of failure: SessionFailure) -> Limit? {
        switch failure {
        case .vhostBusy: return .maxInFlight
        case .badRequest(let error):
            switch error {
            case .bodyTooLarge: return .maxBodySize
            case .requestLineTooLong: return .maxRequestLine
            case .headTooLarge: return .maxHeaderSize
            case .tooManyHeaders: return .maxHeaders
            default: return nil
            }
        default:
            // A backend timeout is counted where the deadline fires (Connection.timedOut, and an HTTP/2
            // stream's in HTTP2Connection.timerFired).
            return nil
        }
    }

    func nodeAnswered(_ base: Int) { nodeResponses[base] &+= 1 }

    func nodeRetried(_ base: Int) { nodeRetries[base] &+= 1 }

    /// A ping went out. A later one replaces an unanswered one, so a node that comes back after a long death
    /// measures from its last ping, not its first.
    func pingSent(to base: Int, at now: Double) {
        nodePingSentAt[base] = now
    }

    /// A pong: the round trip since the last ping, if one is unanswered (a backend also announces itself with
    /// an unsolicited pong, which measures nothing).
    func pongReceived(from base: Int, at now: Double) {
        guard let sent = nodePingSentAt[base] else { return }
        nodePingRTT[base] = max(0, now - sent)
        nodePingSentAt[base] = nil
    }
}

/// What a connection contributes to its vhost's series, kept on the connection between counting points.
struct ConnectionMeter {
    /// The vhost of the last routed request (-1: none yet): the connection counts as open for it.
    var vhost = -1
    /// Whether the current request was routed to `vhost`; otherwise its response counts under no vhost.
    var routed = false
    /// Whether the current request's head was complete (its duration is measured from then).
    var started = false
    /// Socket bytes read and written since they were last added to a vhost.
    var bytesIn = 0
    var bytesOut = 0
}
