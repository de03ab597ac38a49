package import BlastBeatCore
import BlastBeatSystem

/// Leveled error log on standard error: `2026-11-25T12:00:00Z blastbeat[pid] LEVEL message`.
package final class Logger {
    package var level: LogLevel
    private let sink = LogSink(fd: 2)

    package init(level: LogLevel) {
        self.level = level
    }

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
