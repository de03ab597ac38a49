import Glibc
internal import CSystem  // <sys/socket.h>: SOCK_DGRAM, MSG_NOSIGNAL (as Posix.swift)

/// The service manager's notification protocol (systemd's `sd_notify`, spoken without libsystemd): datagrams of
/// `KEY=VALUE` lines sent to the Unix socket named by `NOTIFY_SOCKET` — a path, or an abstract socket written
/// with a leading `@`. With `Type=notify` (dist/blastbeat.service) systemd considers the gateway started at
/// `READY=1`, reloading between `RELOADING=1` and the next `READY=1`, and stopping at `STOPPING=1`.
///
/// The socket is connected once, when the notifier is made: the gateway makes it before dropping root, so the
/// datagrams still go out after the switch to `uid` even when only root may open the socket file (the kernel
/// checks the file's permissions at `connect`, not at each send).
package final class ServiceNotifier {
    private let fd: Int32
    /// `NOTIFY_SOCKET` as given, for messages.
    package let address: String

    /// Reads `NOTIFY_SOCKET`: nil when it is unset or empty (not started by a service manager that wants
    /// notifications). Throws when it is set but cannot be used: not a path or `@name`, too long, or connect
    /// failing (the socket does not exist, or may not be written to).
    package static func fromEnvironment() throws(SystemError) -> ServiceNotifier? {
        guard let raw = getenv("NOTIFY_SOCKET") else { return nil }
        let address = String(cString: raw)
        if address.isEmpty { return nil }
        return try ServiceNotifier(address: address)
    }

    package init(address: String) throws(SystemError) {
        self.address = address
        var bytes = Array(address.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        guard abstract || bytes.first == UInt8(ascii: "/") else {
            throw SystemError(
                call: "NOTIFY_SOCKET=\(address.debugDescription) (expected an absolute path or @abstract-name)",
                errno: EAFNOSUPPORT)
        }
        if abstract { bytes[0] = 0 }  // Linux's abstract namespace: a leading NUL, no terminator
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        let room = MemoryLayout.size(ofValue: socketAddress.sun_path)
        // A path needs its terminating NUL inside sun_path; an abstract name may fill it.
        guard bytes.count < room || (abstract && bytes.count == room), bytes.count > 1 else {
            throw SystemError(call: "NOTIFY_SOCKET=\(address.debugDescription)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemError(call: "socket(AF_UNIX, SOCK_DGRAM)", errno: errno) }
        let connected = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        if connected != 0 {
            let error = errno
            close(fd)
            throw SystemError(call: "connect(NOTIFY_SOCKET=\(address))", errno: error)
        }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// Sends one notification, e.g. `READY=1`. Never blocks: a service manager that is not reading costs a
    /// failed send (EAGAIN), not a stalled gateway.
    package func send(_ message: String) throws(SystemError) {
        let bytes = Array(message.utf8)
        while true {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n >= 0 { return }
            let error = errno
            if error == EINTR { continue }
            throw SystemError(call: "notify \(address)", errno: error)
        }
    }

    /// `CLOCK_MONOTONIC` in microseconds: systemd 253 and later expect `MONOTONIC_USEC=` with `RELOADING=1`.
    package static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
