import BlastBeatCore
import BlastBeatSystem

/// Access logs per vhost: a vhost with its own `access-log` gets its lines there, the others in `[blastbeat]`'s.
/// Each distinct path is opened once (before the privilege drop, as the global one), handed to `uid`, flushed
/// every second and reopened on SIGUSR1 with it.
extension Gateway {
    /// Opens the vhosts' own files and fills `vhostAccessLogs` (nil for a vhost whose requests are not logged).
    func openVhostAccessLogs() throws(StartupError) {
        var byPath: [String: LogSink] = [:]
        if let global = accessLog, let path = config.accessLog { byPath[path] = global }
        vhostAccessLogs.reserveCapacity(config.vhosts.count)
        for vhost in config.vhosts {
            switch vhost.accessLog {
            case .inherited:
                vhostAccessLogs.append(accessLog)
            case .off:
                vhostAccessLogs.append(nil)
            case .file(let path):
                if let sink = byPath[path] {
                    vhostAccessLogs.append(sink)
                    continue
                }
                let sink: LogSink
                do { sink = try LogSink(path: path) } catch {
                    throw StartupError(description: "\(config.file):\(vhost.accessLogLine): access-log of vhost \(vhost.name): \(error)")
                }
                byPath[path] = sink
                vhostOwnAccessLogs.append(sink)
                vhostAccessLogs.append(sink)
            }
        }
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
}
