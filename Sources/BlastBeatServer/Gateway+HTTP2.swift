import BlastBeatCore
import BlastBeatSystem

/// HTTP/2 streams at the gateway: the access log (backend messages and lost nodes take the paths HTTP/1.1's do).
extension Gateway {
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
