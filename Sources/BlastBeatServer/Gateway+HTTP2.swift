import BlastBeatCore
import BlastBeatSystem

/// HTTP/2 streams at the gateway: backend messages by sid, lost nodes, the access log.
extension Gateway {
    /// The streams waiting on nodes found dead in this iteration: retried where safe, else 502 or RST_STREAM.
    func failHTTP2Streams(onDeadNodes dead: [Int]) {
        if http2Streams.isEmpty { return }
        for stream in Array(http2Streams.values) where !stream.closed {
            guard let node = stream.session.node, dead.contains(node), stream.session.nodeKnowsSession,
                !nodes.isUsable(node)
            else { continue }
            withExtendedLifetime(stream.connection.connection) { stream.session.nodeLost(connectionReplaced: false) }
        }
    }

    /// A node's connection was replaced by a newer one: its streams' requests went to the old one.
    func http2StreamsOnReplacedConnection(_ node: Int) {
        for stream in http2Streams.values where stream.session.node == node && stream.session.nodeKnowsSession {
            http2StreamsOnReplacedConnections.append(stream)
        }
    }

    func failHTTP2StreamsOnReplacedConnections() {
        let lost = http2StreamsOnReplacedConnections
        http2StreamsOnReplacedConnections.removeAll()
        for stream in lost where !stream.closed && stream.session.nodeKnowsSession {
            withExtendedLifetime(stream.connection.connection) { stream.session.nodeLost(connectionReplaced: true) }
        }
    }

    /// One access log line for a stream's response (its request line says `HTTP/2`).
    func writeAccessLog(_ stream: HTTP2Stream) {
        let vhost = stream.log.vhost
        metrics.http2Responses &+= 1
        metrics.responseCompleted(
            slot: Metrics.slot(ofVhost: vhost), status: stream.log.status, seconds: loop.now - stream.requestStart,
            meter: &stream.connection.connection.meter)
        guard let accessLog = vhost >= 0 ? vhostAccessLogs[vhost] : accessLog else { return }
        let now = WallClock.now()
        let second = Int(now)
        if second != accessLogDate.second {
            accessLogDate = (second, WallClock.format(second, "%d/%b/%Y:%H:%M:%S %z"))
        }
        let node = stream.session.node.map { nodes.nodes[$0].identity }
        let elapsed = loop.now - stream.requestStart
        let remote = stream.connection.connection.remoteAddress
        accessLog.withBuffer { out in
            stream.log.write(
                into: &out, remote: remote, date: accessLogDate.text, node: node, seconds: elapsed,
                vhost: vhost >= 0 ? config.vhosts[vhost].name : nil, worker: worker?.index)
        }
    }
}
