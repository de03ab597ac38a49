package import BlastBeatCore
import CSystem
import Glibc

/// The Unix socket pair between the privileged parent and the serving process (PrivilegedParent.swift in
/// BlastBeatServer). Parent → serving: reload bundles (an 8-byte length, then `FileBundle` bytes, with the
/// listening sockets attached by SCM_RIGHTS to the first part). Serving → parent: single bytes, each one a
/// request to reload; the parent reads nothing else from it.
package enum PrivilegedChannel {
    /// Largest bundle the serving process accepts (the configuration's files are at most 16 MiB each).
    package static let maxBundleBytes = 256 << 20
    /// Most sockets one bundle may carry (SCM_RIGHTS in one message).
    package static let maxSockets = 253

    /// A connected pair, close-on-exec: `parent` stays blocking, `serving` is made non-blocking by its user.
    package static func pair() throws(SystemError) -> (parent: Int32, serving: Int32) {
        var fds: [Int32] = [-1, -1]
        if socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) != 0 {
            throw SystemError(call: "socketpair", errno: errno)
        }
        return (fds[0], fds[1])
    }

    /// Parent side, blocking: sends one bundle with `sockets` attached.
    package static func send(_ bundle: [UInt8], sockets: [Int32], on fd: Int32) throws(SystemError) {
        guard sockets.count <= maxSockets else {
            throw SystemError(call: "send \(sockets.count) listening sockets (at most \(maxSockets))", errno: E2BIG)
        }
        var message: [UInt8] = []
        withUnsafeBytes(of: UInt64(bundle.count).littleEndian) { message += $0 }
        message += bundle
        var sent = 0
        while sent < message.count {
            let n = message.withUnsafeBytes { bytes in
                sockets.withUnsafeBufferPointer { fds in
                    CSystem_send_with_fds(
                        fd, bytes.baseAddress! + sent, bytes.count - sent, fds.baseAddress,
                        sent == 0 ? Int32(fds.count) : 0)
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError(call: "send to the serving process", errno: errno)
            }
            sent += n
        }
    }

    /// Serving side: the channel does not block the event loop.
    package static func makeNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Serving side: asks the parent for a reload (SIGHUP sent to the serving process itself). False when
    /// the parent is gone.
    package static func requestReload(on fd: Int32) -> Bool {
        var byte: UInt8 = UInt8(ascii: "R")
        while true {
            let n = Glibc.send(fd, &byte, 1, Int32(MSG_NOSIGNAL))
            if n == 1 { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    /// Parent side: consumes reload requests; false at end of file (the serving process is gone).
    package static func readRequests(on fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { return true }
            if n < 0 && errno == EINTR { continue }
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
    }
}

/// Serving side: collects bundles from the non-blocking channel as bytes arrive.
package struct BundleReceiver {
    package enum Outcome {
        /// Nothing complete yet.
        case waiting
        case bundle(bytes: [UInt8], sockets: [Int32])
        /// The parent closed its end (it died or was killed).
        case closed
    }

    private var pending: [UInt8] = []
    private var sockets: [Int32] = []

    package init() {}

    package mutating func receive(from fd: Int32) throws(SystemError) -> Outcome {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var fds = [Int32](repeating: -1, count: PrivilegedChannel.maxSockets)
        while true {
            var count: Int32 = 0
            let n = chunk.withUnsafeMutableBytes { bytes in
                fds.withUnsafeMutableBufferPointer {
                    CSystem_recv_with_fds(fd, bytes.baseAddress, bytes.count, $0.baseAddress, Int32($0.count), &count)
                }
            }
            sockets += fds[0..<Int(count)]
            if n == 0 { return .closed }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .waiting }
                throw SystemError(call: "receive from the privileged parent", errno: errno)
            }
            pending += chunk[0..<n]
            if pending.count >= 8 {
                let length = pending[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                guard length <= PrivilegedChannel.maxBundleBytes else {
                    throw SystemError(call: "a reload bundle of \(length) bytes from the privileged parent", errno: EFBIG)
                }
                if pending.count >= 8 + length {
                    let bytes = Array(pending[8..<8 + length])
                    pending.removeFirst(8 + length)
                    defer { sockets = [] }
                    return .bundle(bytes: bytes, sockets: sockets)
                }
            }
        }
    }
}

/// The parent's wait: the signals it handles arrive through a signalfd (blocked for normal delivery), and
/// it also wakes when the channel is readable or closed.
package final class ParentSignals {
    private let fd: Int32

    package enum Event {
        case signal(Int32)
        case channelReadable
    }

    /// Blocks `signals` for normal delivery (before the serving process is forked, which unblocks them).
    package init(_ signals: [Int32]) throws(SystemError) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in signals { sigaddset(&mask, signal) }
        if sigprocmask(SIG_BLOCK, &mask, nil) != 0 { throw SystemError(call: "sigprocmask", errno: errno) }
        fd = CSystem_signalfd(&mask)
        if fd < 0 { throw SystemError(call: "signalfd", errno: errno) }
    }

    /// Unblocks every signal again: for the forked serving process, whose libev watchers use normal delivery.
    package static func unblockAll() {
        var mask = sigset_t()
        sigfillset(&mask)
        sigprocmask(SIG_UNBLOCK, &mask, nil)
    }

    package func close() { Glibc.close(fd) }

    /// Waits for a signal or the channel.
    package func wait(channel: Int32?) -> Event {
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if let channel { fds.append(pollfd(fd: channel, events: Int16(POLLIN), revents: 0)) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 { continue }  // EINTR
            if fds[0].revents & Int16(POLLIN) != 0 {
                var info = signalfd_siginfo()
                if read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                    return .signal(Int32(info.ssi_signo))
                }
            }
            if fds.count > 1 && fds[1].revents != 0 { return .channelReadable }
        }
    }
}

/// Process calls the privileged parent and the serving process make around the fork.
package enum ParentProcess {
    /// fork(2): the child's pid in the parent, 0 in the child.
    package static func fork() throws(SystemError) -> Int32 {
        let pid = Glibc.fork()
        if pid < 0 { throw SystemError(call: "fork", errno: errno) }
        return pid
    }

    /// Reaps `child` if it exited: its exit status (128 + signal when killed), or nil if it still runs.
    package static func reap(_ child: Int32) -> Int32? {
        var status: Int32 = 0
        let pid = waitpid(child, &status, WNOHANG)
        guard pid == child else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    package static func send(_ signal: Int32, to pid: Int32) { _ = kill(pid, signal) }
}
