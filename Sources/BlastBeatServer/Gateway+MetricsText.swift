import BlastBeatCore
import BlastBeatSystem

/// `GET /metrics`: the series of README "Metrics" in the Prometheus text format, rendered on scrape only.
extension Gateway {
    /// What one pass over the open connections finds (per vhost slot, and for the whole gateway).
    private struct OpenConnections {
        var connections: [Int]
        var webSockets: [Int]
        var clientBytes = 0
        var tlsHandshakes = 0
    }

    /// Renders every series into `metrics.text` (its storage is reused) and returns nothing: the caller
    /// writes `metrics.text.bytes`. Costs one pass over the open connections and the nodes.
    func renderMetrics() {
        let m = metrics
        var open = OpenConnections(
            connections: [Int](repeating: 0, count: m.slotCount), webSockets: [Int](repeating: 0, count: m.slotCount))
        for connection in sessions.values {
            let slot = Metrics.slot(ofVhost: connection.meter.vhost)
            open.connections[slot] += 1
            if connection.webSocket != nil { open.webSockets[slot] += 1 }
            open.clientBytes += connection.pending.readableCount + connection.queuedOutputBytes
            if let tls = connection.tls, tls.isHandshakeComplete { open.tlsHandshakes += 1 }
            // Bytes of long exchanges (a WebSocket, a large download) show up without waiting for their end;
            // those of a request not routed yet wait for it.
            if connection.meter.routed || connection.webSocket != nil { m.addBytes(of: &connection.meter, to: slot) }
        }
        var t = m.text
        m.text = PrometheusText()  // uniquely referenced while rendering: appends do not copy
        t.reset()
        renderVhosts(into: &t, open: open)
        renderNodes(into: &t)
        renderGateway(into: &t, open: open)
        m.text = t
    }

    private func renderVhosts(into t: inout PrometheusText, open: OpenConnections) {
        let m = metrics
        let slots = 0..<m.slotCount
        t.family(
            "blastbeat_responses_total", .counter,
            "Responses sent, by vhost and status class (vhost=\"\": answered before a vhost was chosen).")
        let classes: [StaticString] = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        for slot in slots {
            for c in 0..<5 {
                t.start("blastbeat_responses_total")
                t.label("vhost", escaped: m.vhostLabels[slot])
                t.label("code", classes[c])
                t.value(m.responses[slot * 5 + c])
            }
        }
        // Per protocol: all responses, less those of HTTP/2 streams, are HTTP/1.x.
        t.family("blastbeat_protocol_responses_total", .counter, "Responses sent, by the client's protocol.")
        let all = m.responses.reduce(0, &+)
        t.start("blastbeat_protocol_responses_total")
        t.label("protocol", "HTTP/1.x")
        t.value(all &- m.http2Responses)
        t.start("blastbeat_protocol_responses_total")
        t.label("protocol", "HTTP/2")
        t.value(m.http2Responses)
        t.family(
            "blastbeat_request_duration_seconds", .histogram,
            "From a request's complete head to the end of its response, by vhost.")
        for slot in slots {
            var cumulative = 0
            for b in 0..<LatencyBuckets.count {
                cumulative += m.durationBuckets[slot * LatencyBuckets.count + b]
                t.start("blastbeat_request_duration_seconds", "_bucket")
                t.label("vhost", escaped: m.vhostLabels[slot])
                t.label("le", LatencyBuckets.labels[b])
                t.value(cumulative)
            }
            t.start("blastbeat_request_duration_seconds", "_sum")
            t.label("vhost", escaped: m.vhostLabels[slot])
            t.value(m.durationSums[slot])
            t.start("blastbeat_request_duration_seconds", "_count")
            t.label("vhost", escaped: m.vhostLabels[slot])
            t.value(cumulative)
        }
        perVhost(
            &t, "blastbeat_received_bytes_total", .counter, "Bytes read from clients (TLS: as on the wire), by vhost."
        ) { m.receivedBytes[$0] }
        perVhost(
            &t, "blastbeat_sent_bytes_total", .counter, "Bytes written to clients (TLS: as on the wire), by vhost."
        ) { m.sentBytes[$0] }
        perVhost(
            &t, "blastbeat_vhost_connections_open", .gauge,
            "Open client connections whose current (or, when idle, last) request is for the vhost."
        ) { open.connections[$0] }
        perVhost(&t, "blastbeat_vhost_websockets_open", .gauge, "Open WebSockets, by vhost.") { open.webSockets[$0] }
        perVhost(
            &t, "blastbeat_vhost_requests_in_flight", .gauge,
            "Requests and WebSockets the vhost's nodes hold now (what max-in-flight limits)."
        ) { $0 > 0 && $0 - 1 < self.config.vhosts.count ? self.vhostInFlight($0 - 1) : 0 }
        t.family(
            "blastbeat_rejections_total", .counter,
            "Requests and connections ended by a limit, by vhost and limit (the configuration key).")
        let limits = Metrics.Limit.allCases
        for slot in slots {
            for limit in limits {
                t.start("blastbeat_rejections_total")
                t.label("vhost", escaped: m.vhostLabels[slot])
                t.label("limit", limit.label)
                t.value(m.rejections[slot * limits.count + limit.rawValue])
            }
        }
    }

    private func perVhost(
        _ t: inout PrometheusText, _ name: StaticString, _ type: PrometheusText.MetricType, _ help: StaticString,
        _ value: (Int) -> Int
    ) {
        t.family(name, type, help)
        for slot in 0..<metrics.slotCount {
            t.start(name)
            t.label("vhost", escaped: metrics.vhostLabels[slot])
            t.value(value(slot))
        }
    }

    private func renderNodes(into t: inout PrometheusText) {
        let m = metrics
        let count = m.nodeLabels.count
        var connected = [Int](repeating: 0, count: count)
        var inFlight = [Int](repeating: 0, count: count)
        for node in nodes.nodes where node.base < count {
            if node.health == .alive { connected[node.base] += 1 }
            inFlight[node.base] += node.inFlight
        }
        func perNode(
            _ name: StaticString, _ type: PrometheusText.MetricType, _ help: StaticString, _ value: (Int) -> Int
        ) {
            t.family(name, type, help)
            for base in 0..<count where !m.nodeLabels[base].isEmpty {
                t.start(name)
                t.label("node", escaped: m.nodeLabels[base])
                t.value(value(base))
            }
        }
        perNode(
            "blastbeat_node_instances_connected", .gauge,
            "Processes serving the node (itself and its NAME#INSTANCE ones) that are alive."
        ) { connected[$0] }
        perNode("blastbeat_node_requests_in_flight", .gauge, "Requests and WebSockets the node holds now.") {
            inFlight[$0]
        }
        perNode("blastbeat_node_responses_total", .counter, "Response heads the node sent.") { m.nodeResponses[$0] }
        perNode("blastbeat_node_retries_total", .counter, "retry messages the node sent.") { m.nodeRetries[$0] }
        perNode(
            "blastbeat_node_deaths_total", .counter,
            "Times the node (or one of its instances) was marked dead: unreachable, silent past ping-timeout, or its connection lost."
        ) {
            $0 < self.nodes.deaths.count ? self.nodes.deaths[$0] : 0
        }
        t.family(
            "blastbeat_node_ping_rtt_seconds", .gauge,
            "Round trip of the node's last answered ping (nodes are pinged when quiet for ping-freq).")
        for base in 0..<count where !m.nodeLabels[base].isEmpty {
            guard let rtt = m.nodePingRTT[base] else { continue }
            t.start("blastbeat_node_ping_rtt_seconds")
            t.label("node", escaped: m.nodeLabels[base])
            t.value(rtt)
        }
    }

    private func renderGateway(into t: inout PrometheusText, open: OpenConnections) {
        let m = metrics
        func single(_ name: StaticString, _ type: PrometheusText.MetricType, _ help: StaticString, _ value: Int) {
            t.family(name, type, help)
            t.start(name)
            t.value(value)
        }
        let c = counters
        single("blastbeat_connections_accepted_total", .counter, "Client connections accepted.", c.acceptedConnections)
        single("blastbeat_connections_open", .gauge, "Client connections open now.", sessions.count)
        single(
            "blastbeat_tls_handshakes_total", .counter, "TLS handshakes completed.",
            m.closedTLSHandshakes + open.tlsHandshakes)
        single(
            "blastbeat_tls_handshake_failures_total", .counter,
            "TLS connections closed before their handshake completed (failed, timed out, abandoned, or plain HTTP).",
            m.tlsHandshakeFailures)
        var nodeBytes = 0
        for meter in nodeQueueMeters { nodeBytes += meter.queuedBytes }
        t.family(
            "blastbeat_buffered_bytes", .gauge,
            "Bytes the gateway holds now: for clients (unread input, unsent output), for nodes (client data not yet sent to them)."
        )
        t.start("blastbeat_buffered_bytes")
        t.label("held_for", "clients")
        t.value(open.clientBytes)
        t.start("blastbeat_buffered_bytes")
        t.label("held_for", "nodes")
        t.value(nodeBytes)
        single(
            "blastbeat_max_buffered_bytes", .gauge, "The memory budget (max-buffered).", budget.limit)
        t.family(
            "blastbeat_budget_bytes", .gauge,
            "Bytes counted against max-buffered: response bytes queued for clients, client data for nodes, credit granted and unused.")
        for (part, value) in [("clients" as StaticString, budget.clientBytes), ("nodes", nodeBytes), ("credit", budget.reservedCredit)] {
            t.start("blastbeat_budget_bytes")
            t.label("part", part)
            t.value(value)
        }
        single(
            "blastbeat_backends_paused", .gauge,
            "Backend connections not read now because they sent uncredited bytes at max-buffered.", pausedBackends.count)
        single(
            "blastbeat_backend_read_pauses_total", .counter,
            "Times a backend connection (libzmq: every backend) stopped being read at max-buffered.", c.backendReadPauses)
        single(
            "blastbeat_sessions_throttled_total", .counter,
            "Times a credited session was left without credit: its share of max-buffered full, or the budget.",
            c.sessionsThrottled)
        single("blastbeat_credit_grants_total", .counter, "credit messages sent to backends.", c.creditGrants)
        single(
            "blastbeat_credit_overruns_total", .counter, "Messages a credited backend sent with its credit used up.",
            c.creditOverruns)
        if let rss = ProcessMemory.residentBytes() {
            single(
                "blastbeat_resident_memory_bytes", .gauge, "Resident memory of the gateway process (/proc/self/statm).",
                rss)
        }
        single("blastbeat_config_reloads_total", .counter, "SIGHUP reloads of the configuration, applied or not.", m.configReloads)
        single(
            "blastbeat_config_reload_failures_total", .counter,
            "SIGHUP reloads that failed and changed nothing.", m.configReloadFailures)
        single(
            "blastbeat_backend_protocol_errors_total", .counter,
            "Backend connections closed for breaking ZMTP (native engine).", c.backendProtocolErrors)
        single("blastbeat_requests_total", .counter, "Request heads received complete.", c.requests)
        single(
            "blastbeat_client_errors_total", .counter, "Malformed requests and WebSocket protocol errors from clients.",
            c.clientErrors)
        single(
            "blastbeat_backend_errors_total", .counter, "Invalid or truncated responses from nodes.", c.backendErrors)
        single(
            "blastbeat_timeouts_total", .counter,
            "Connection deadlines that passed (every kind, idle keep-alive included).", c.timeouts)
        single(
            "blastbeat_malformed_backend_messages_total", .counter,
            "Backend messages dropped: wrong frame count or unknown type.", c.malformedBackendMessages)
        single(
            "blastbeat_unknown_session_messages_total", .counter, "Backend messages dropped: unknown sid.",
            c.unknownSessionMessages)
        single(
            "blastbeat_forged_identity_messages_total", .counter,
            "Backend messages dropped: sent by a node that does not own the sid, or by an unconfigured identity.",
            c.forgedIdentityMessages)
        single(
            "blastbeat_out_of_order_backend_messages_total", .counter,
            "Backend messages dropped: meaningless in the session's state.", c.outOfOrderBackendMessages)
        single(
            "blastbeat_refused_backend_claims_total", .counter,
            "Backend connections refused at the handshake (identity, CURVE key, max-instances).", c.refusedBackendClaims
        )
        single(
            "blastbeat_backend_handovers_total", .counter,
            "Backend connections handed to the worker their X-BlastBeat-Worker label names.", c.backendHandovers)
        single(
            "blastbeat_backend_handover_failures_total", .counter,
            "Backend connections closed because their handover to another worker failed.", c.backendHandoverFailures)
        single(
            "blastbeat_backend_mislabelled_connections_total", .counter,
            "Backend connections whose X-BlastBeat-Worker label named no worker (they stay where they landed).",
            c.mislabelledBackendConnections)
        single(
            "blastbeat_worker_mesh_forwarded_messages_total", .counter,
            "Backend messages of sessions that crossed to or from another worker (a connection per worker spares them).",
            router.workerMeshForwardedMessages)
        single(
            "blastbeat_worker_mesh_dropped_sends_total", .counter,
            "Messages other workers sent to a backend held here past twice its max-node-queue (they ignored its queue-full notice): dropped.",
            router.workerMeshDroppedSends)
        single(
            "blastbeat_max_in_flight_refusals_total", .counter, "Requests answered 503 at their vhost's max-in-flight.",
            c.vhostBusyRefusals)
        single(
            "blastbeat_client_connection_refusals_total", .counter, "Connections refused at max-client-connections.",
            c.clientConnectionRefusals)
        single(
            "blastbeat_connections_closed_for_room_total", .counter,
            "Connections closed at max-connections to let a new client in.", c.connectionsClosedForRoom)
        single(
            "blastbeat_connections_over_share_total", .counter,
            "New connections refused at max-connections: their address held its share of the connections.",
            c.connectionsOverShare)
        single(
            "blastbeat_node_queue_read_pauses_total", .counter,
            "Times a client was not read because its node's queue was full (max-node-queue).", c.readPausesForNodeQueue)
        t.family("blastbeat_start_time_seconds", .gauge, "Unix time the gateway started.")
        t.start("blastbeat_start_time_seconds")
        t.value(m.startTime.rounded())
    }
}
