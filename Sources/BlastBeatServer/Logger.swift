package import BlastBeatCore
package import BlastBeatSystem

/// Leveled error log: `2026-11-25T12:00:00Z blastbeat LEVEL message`, on standard error or in the
/// `error-log` file.
package final class Logger {
    package var level: LogLevel
    private var sink: LogSink

    /// Standard error.
    package init(level: LogLevel) {
        self.level = level
        self.sink = LogSink(fd: 2)
    }

    /// `path` "-" is standard error; a file is opened for appending (created if needed).
    package init(level: LogLevel, path: String) throws(SystemError) {
        self.level = level
        self.sink = try LogSink(path: path, standardFD: 2)
    }

    /// The error log's file, nil on standard error.
    package var path: String? { sink.path }

    /// A reload that names another `error-log`: the lines from now on go to `sink`.
    package func write(to sink: LogSink) {
        self.sink.flush()
        self.sink = sink
    }

    /// SIGUSR1: see `LogSink.reopen`.
    package func reopen() throws(SystemError) -> Bool { try sink.reopen() }

    /// Before dropping root: see `LogSink.handOver`.
    package func handOver(to uid: UInt32) throws(SystemError) { try sink.handOver(to: uid) }

    package func log(_ messageLevel: LogLevel, _ message: @autoclosure () -> String) {
        guard messageLevel >= level else { return }
        let name: String
        switch messageLevel {
        case .debug: name = "DEBUG"
        case .info: name = "INFO"
        case .warning: name = "WARNING"
        case .error: name = "ERROR"
        }
        let stamp = WallClock.format(Int(WallClock.now()), "%Y-%m-%dT%H:%M:%S%z")
        sink.append(stamp)
        sink.append(" blastbeat \(name) \(message())\n")
        sink.flush()
    }

    package func debug(_ m: @autoclosure () -> String) { log(.debug, m()) }
    package func info(_ m: @autoclosure () -> String) { log(.info, m()) }
    package func warning(_ m: @autoclosure () -> String) { log(.warning, m()) }
    package func error(_ m: @autoclosure () -> String) { log(.error, m()) }
}
