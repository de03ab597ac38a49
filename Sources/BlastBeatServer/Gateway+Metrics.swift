import BlastBeatCore
import BlastBeatSystem

/// The counting points of the metrics (see Metrics): each is one call from where the event happens.
extension Gateway {
    /// A response is complete (called where its access log line is written).
    func countResponse(_ connection: Connection, status: Int) {
        let slot = connection.meterSlot
        let seconds = connection.meter.started ? loop.now - connection.requestStart : nil
        metrics.responseCompleted(slot: slot, status: status, seconds: seconds, meter: &connection.meter)
        // The next request is nobody's until it is routed.
        connection.meter.routed = false
        connection.meter.started = false
    }

    /// A client connection closed: its last bytes go to its vhost, its TLS handshake is counted.
    func countClosed(_ connection: Connection) {
        let meter = connection.meter
        metrics.addBytes(of: &connection.meter, to: Metrics.slot(ofVhost: meter.vhost))
        if let tls = connection.tls {
            if tls.isHandshakeComplete { metrics.closedTLSHandshakes &+= 1 } else { metrics.tlsHandshakeFailures &+= 1 }
        }
    }

    /// A request the gateway answers itself because of a limit (see `Metrics.limit(of:)`).
    func countRejection(_ transport: SessionTransport, _ failure: SessionFailure) {
        if let limit = Metrics.limit(of: failure) { metrics.rejected(slot: transport.meterSlot, by: limit) }
    }

    /// A connection's deadline passed (before it is acted on): the timeouts that end a request or a
    /// connection are rejections by that timeout; an idle keep-alive connection closing is not.
    func countTimeout(_ connection: Connection) {
        let limit: Metrics.Limit
        switch connection.deadlineReason {
        case .http2: return  // its streams' timeouts are their own (HTTP2Connection+Timers.swift)
        case .head: limit = .headerTimeout
        case .body, .write: limit = .bodyTimeout
        case .backend: limit = .backendTimeout
        case .tlsHandshake: limit = .tlsHandshakeTimeout
        case .webSocketIdle:
            // The first expiry pings; only the second (no answer) closes.
            guard connection.webSocket?.liveness == .pinged else { return }
            limit = .webSocketIdleTimeout
        case .idle, .linger, .refusalPause: return
        }
        metrics.rejected(slot: connection.meterSlot, by: limit)
    }

    /// A connection-level limit without a deadline (`max-output-buffer`, `websocket-max-message`).
    func countRejection(_ connection: Connection, by limit: Metrics.Limit) {
        metrics.rejected(slot: connection.meterSlot, by: limit)
    }

    /// The same limits met by one HTTP/2 stream, counted in its request's vhost.
    func countRejection(_ stream: HTTP2Stream, by limit: Metrics.Limit) {
        metrics.rejected(slot: stream.meterSlot, by: limit)
    }
}

extension HTTP2Stream {
    /// The vhost slot the stream's request counts in (none before it is routed). The connection's own meter
    /// is not routed: its streams may go to different vhosts.
    var meterSlot: Int { Metrics.slot(ofVhost: log.vhost) }
}

extension Connection {
    /// The vhost slot the current request counts in: its vhost once routed, else none.
    var meterSlot: Int { meter.routed ? Metrics.slot(ofVhost: meter.vhost) : gateway.metrics.noVhost }

    /// The request head is complete: its duration runs from `requestStart`.
    func meterRequestStarted() { meter.started = true }

    /// The request was routed to `vhost`; the connection counts as open for it from now on.
    func meterRouted(to vhost: Int) {
        meter.vhost = vhost
        meter.routed = true
    }
}
