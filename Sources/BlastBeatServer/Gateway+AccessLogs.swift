import BlastBeatCore
import BlastBeatSystem

/// Access logs per vhost: a vhost with its own `access-log` gets its lines there, the others in `[blastbeat]`'s.
/// Each distinct path is opened once (before the privilege drop, as the global one), handed to `uid`, flushed
/// every second and reopened on SIGUSR1 with it.
extension Gateway {
    /// Each vhost's access log for `config` (nil: its requests are not logged) and the vhosts' own files: the
    /// sinks already open (the global one `global`, the vhosts' own ones) are reused by path, the others opened.
    /// At start, and when a reload prepares (Gateway+Reload.swift).
    func vhostAccessLogs(
        for config: Configuration, global: LogSink?
    ) throws(StartupError) -> (perVhost: [LogSink?], own: [LogSink]) {
        var byPath: [String: LogSink] = [:]
        for sink in vhostOwnAccessLogs { if let path = sink.path { byPath[path] = sink } }
        if let global, let path = global.path { byPath[path] = global }
        var perVhost: [LogSink?] = []
        var own: [LogSink] = []
        perVhost.reserveCapacity(config.vhosts.count)
        for vhost in config.vhosts {
            switch vhost.accessLog {
            case .inherited:
                perVhost.append(global)
            case .off:
                perVhost.append(nil)
            case .file(let path):
                let sink: LogSink
                if let open = byPath[path] {
                    sink = open
                } else {
                    do { sink = try LogSink(path: path) } catch {
                        throw StartupError(
                            description: config.error(at: vhost.accessLogLine, key: nil, "access-log of vhost \(vhost.name): \(error)").description)
                    }
                    byPath[path] = sink
                }
                if sink !== global && !own.contains(where: { $0 === sink }) { own.append(sink) }
                perVhost.append(sink)
            }
        }
        return (perVhost, own)
    }

    func installAccessLogs(_ logs: (perVhost: [LogSink?], own: [LogSink])) {
        for sink in vhostOwnAccessLogs where !logs.own.contains(where: { $0 === sink }) { sink.flush() }
        vhostAccessLogs = logs.perVhost
        vhostOwnAccessLogs = logs.own
        logsRequests = accessLog != nil || vhostAccessLogs.contains { $0 != nil }
    }

    /// Every access log file, the global one first.
    var allAccessLogs: [LogSink] { (accessLog.map { [$0] } ?? []) + vhostOwnAccessLogs }

    /// The vhosts' own files that `--check` must be able to open.
    static func vhostAccessLogPaths(_ config: Configuration) -> [(vhost: VirtualHost, path: String)] {
        config.vhosts.compactMap { vhost in
            if case .file(let path) = vhost.accessLog { return (vhost, path) }
            return nil
        }
    }

    /// One line in the log of the request's vhost (`[blastbeat]`'s for a request no vhost took).
    func writeAccessLog(_ connection: Connection) {
        countResponse(connection, status: connection.log.status)
        let vhost = connection.log.vhost
        guard let accessLog = vhost >= 0 ? vhostAccessLogs[vhost] : accessLog else { return }
        let now = WallClock.now()
        let second = Int(now)
        if second != accessLogDate.second {
            accessLogDate = (second, WallClock.format(second, "%d/%b/%Y:%H:%M:%S %z"))
        }
        let node = connection.session.node.map { nodes.nodes[$0].identity }
        let elapsed = loop.now - connection.requestStart
        accessLog.withBuffer { out in
            connection.log.write(
                into: &out, remote: connection.remoteAddress, date: accessLogDate.text, node: node, seconds: elapsed,
                vhost: vhost >= 0 ? config.vhosts[vhost].name : nil, worker: worker?.index)
        }
    }
}
