import Glibc

/// Seconds on the monotonic clock, for deadlines outside the event loop (the privileged parent's).
package enum MonotonicClock {
    package static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

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
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let ownsFD: Bool
    /// The file's path when it is a file (not standard output or error): what `reopen` opens again.
    package let path: String?

    package init(fd: Int32) {
        self.fd = fd
        self.ownsFD = false
        self.path = nil
        buffer.reserveCapacity(64 * 1024)
    }

    /// Opens `path` for appending, creating it (mode 640) if needed; "-" is `standardFD` (standard output
    /// for the access log, standard error for the error log).
    package init(path: String, standardFD: Int32 = 1) throws(SystemError) {
        if path == "-" {
            self.fd = standardFD
            self.ownsFD = false
            self.path = nil
        } else {
            self.fd = try Self.open(path)
            self.ownsFD = true
            self.path = path
        }
        buffer.reserveCapacity(64 * 1024)
    }

    /// `--check`: whether `init(path:)` would open `path`, without creating or changing anything: an existing
    /// file must open for appending, a new one needs a directory this user may create files in.
    package static func checkOpenable(_ path: String) throws(SystemError) {
        if path == "-" { return }
        // O_NONBLOCK: opening a FIFO without a reader fails instead of waiting for one.
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            return
        }
        if errno != ENOENT { throw SystemError(call: "open(\(path))", errno: errno) }
        let bytes = Array(path.utf8)
        let directory = bytes.lastIndex(of: UInt8(ascii: "/")).map { String(decoding: bytes[..<max($0, 1)], as: UTF8.self) } ?? "."
        if access(directory, W_OK | X_OK) != 0 {
            throw SystemError(call: "open(\(path))", errno: errno)  // what the real open would say
        }
    }

    private static func open(_ path: String) throws(SystemError) -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        if fd < 0 { throw SystemError(call: "open(\(path))", errno: errno) }
        return fd
    }

    /// Log rotation (SIGUSR1): writes what is buffered to the current file, then opens `path` again, so
    /// that after `mv` of the file new lines go to a file at the configured path. When the open fails
    /// (the new file may not be created or written by this user) the sink keeps its current file and
    /// throws. Returns false for standard output and error, which have nothing to reopen.
    package func reopen() throws(SystemError) -> Bool {
        guard let path else { return false }
        flush()
        let fresh = try Self.open(path)
        close(fd)
        fd = fresh
        return true
    }

    /// Makes the open file owned by `uid` (group unchanged), so that after the gateway has switched to
    /// that user `reopen` can open the same file again. Called as root, before the switch.
    package func handOver(to uid: UInt32) throws(SystemError) {
        guard let path else { return }
        if fchown(fd, uid, gid_t.max) != 0 { throw SystemError(call: "chown(\(path))", errno: errno) }
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
