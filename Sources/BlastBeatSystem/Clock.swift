import Glibc

/// Wall-clock helpers for logs (formatting happens at most once per second per format).
package enum WallClock {
    /// Seconds since the epoch.
    package static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// `strftime` of a whole second in local time, e.g. "%d/%b/%Y:%H:%M:%S %z" for the access log.
    package static func format(_ seconds: Int, _ pattern: String) -> [UInt8] {
        var t = time_t(seconds)
        var parts = tm()
        localtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, pattern, &parts)
        return buffer.prefix(n).map { UInt8(bitPattern: $0) }
    }
}

/// Appends bytes to a file descriptor, buffering so a busy gateway makes one write per batch.
package final class LogSink {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private let ownsFD: Bool

    package init(fd: Int32) {
        self.fd = fd
        self.ownsFD = false
        buffer.reserveCapacity(64 * 1024)
    }

    /// Opens `path` for appending; "-" is standard output.
    package init(path: String) throws(SystemError) {
        if path == "-" {
            self.fd = 1
            self.ownsFD = false
        } else {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd < 0 { throw SystemError(call: "open(\(path))", errno: errno) }
            self.fd = fd
            self.ownsFD = true
        }
        buffer.reserveCapacity(64 * 1024)
    }

    deinit {
        flush()
        if ownsFD { close(fd) }
    }

    package func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 32 * 1024 { flush() }
    }

    package func append(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 32 * 1024 { flush() }
    }

    /// Direct access for encoders that build a line in place.
    package func withBuffer(_ body: (inout [UInt8]) -> Void) {
        body(&buffer)
        if buffer.count >= 32 * 1024 { flush() }
    }

    package func flush() {
        var offset = 0
        buffer.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    break  // a log that cannot be written must not take the gateway down
                }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
