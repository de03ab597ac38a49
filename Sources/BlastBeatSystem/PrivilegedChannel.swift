package import BlastBeatCore
import CSystem
import Glibc

/// The Unix socket pair between the privileged parent and the serving process (PrivilegedParent.swift in
/// BlastBeatServer). Parent → serving: messages of an 8-byte length and a payload whose first byte says what
/// it is: `B` a reload bundle (`FileBundle` bytes, with the listening sockets attached by SCM_RIGHTS to the
/// first part), `Q` "a new process serves now: stop" (SIGUSR2), `W` and one byte, a worker's index: the
/// attached socket is a link to that (restarted) worker (WorkerMesh.swift). Serving → parent: `WorkerReports`
/// (BlastBeatCore): single bytes, `R` to ask for a reload, `U` for an upgrade, `S` once serving (and after each
/// reload), and, from a process that could not start, `F` with its error; the parent reads nothing else.
package enum PrivilegedChannel {
    /// Largest bundle the serving process accepts (the configuration's files are at most 16 MiB each).
    package static let maxBundleBytes = 256 << 20
    /// Most sockets one bundle may carry (SCM_RIGHTS in one message).
    package static let maxSockets = 253

    /// How long the parent waits for a serving process to take a message. A process whose event loop is
    /// stuck stops reading its channel; past this the parent gives up (and replaces that process: a message
    /// cut in the middle leaves the channel out of step) instead of blocking its signals and restarts.
    package static let sendTimeoutSeconds = 5

    /// A connected pair, close-on-exec: `parent` stays blocking with a send timeout, `serving` is made
    /// non-blocking by its user.
    package static func pair() throws(SystemError) -> (parent: Int32, serving: Int32) {
        var fds: [Int32] = [-1, -1]
        if socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) != 0 {
            throw SystemError(call: "socketpair", errno: errno)
        }
        var timeout = timeval(tv_sec: sendTimeoutSeconds, tv_usec: 0)
        if setsockopt(fds[0], SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) != 0 {
            let error = errno
            Glibc.close(fds[0])
            Glibc.close(fds[1])
            throw SystemError(call: "setsockopt(SO_SNDTIMEO)", errno: error)
        }
        return (fds[0], fds[1])
    }

    /// What the serving process asks for.
    package enum Request: UInt8 {
        case reload = 82  // "R"
        case upgrade = 85  // "U"
        /// Serving: started, or a reload applied (the parent's `READY=1` waits for every worker's).
        case serving = 83  // "S"
    }

    /// Parent side: tells the serving process it has been replaced (SIGUSR2) and is to stop.
    package static func sendReplaced(on fd: Int32) throws(SystemError) {
        try send([UInt8(ascii: "Q")], sockets: [], on: fd)
    }

    /// Parent side: the socket of a link to (restarted) worker `worker`.
    package static func send(linkTo worker: Int, socket: Int32, on fd: Int32) throws(SystemError) {
        try send([UInt8(ascii: "W"), UInt8(truncatingIfNeeded: worker)], sockets: [socket], on: fd)
    }

    /// Parent side, blocking: sends one reload bundle with `sockets` attached.
    package static func send(bundle: [UInt8], sockets: [Int32], on fd: Int32) throws(SystemError) {
        try send([UInt8(ascii: "B")] + bundle, sockets: sockets, on: fd)
    }

    private static func send(_ bundle: [UInt8], sockets: [Int32], on fd: Int32) throws(SystemError) {
        guard sockets.count <= maxSockets else {
            throw SystemError(call: "send \(sockets.count) listening sockets (at most \(maxSockets))", errno: E2BIG)
        }
        var message: [UInt8] = []
        withUnsafeBytes(of: UInt64(bundle.count).littleEndian) { message += $0 }
        message += bundle
        var sent = 0
        // SO_SNDTIMEO bounds each send call; a slow reader could take a byte per call, so the whole message
        // gets one deadline too.
        let deadline = MonotonicClock.now() + Double(sendTimeoutSeconds)
        func timedOut() -> SystemError {
            let taken = sent == 0 ? "none of it" : "\(sent) of \(message.count) bytes"
            return SystemError(call: "send to the serving process (it took \(taken) in \(sendTimeoutSeconds) s)", errno: EAGAIN)
        }
        while sent < message.count {
            if sent > 0 && MonotonicClock.now() >= deadline { throw timedOut() }
            let n = message.withUnsafeBytes { bytes in
                sockets.withUnsafeBufferPointer { fds in
                    CSystem_send_with_fds(
                        fd, bytes.baseAddress! + sent, bytes.count - sent, fds.baseAddress,
                        sent == 0 ? Int32(fds.count) : 0)
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw timedOut() }
                throw SystemError(call: "send to the serving process", errno: errno)
            }
            sent += n
        }
    }

    /// Serving side: the channel does not block the event loop.
    package static func makeNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Serving side: asks the parent for a reload or an upgrade (the signal was sent to the serving process
    /// itself). False when the parent is gone.
    package static func request(_ request: Request, on fd: Int32) -> Bool {
        var byte = request.rawValue
        while true {
            let n = Glibc.send(fd, &byte, 1, Int32(MSG_NOSIGNAL))
            if n == 1 { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    /// Serving side, blocking: why this process could not start (it exits next; the parent prints it once).
    /// False when the parent is gone (the process prints it itself).
    package static func reportStartFailure(_ text: String, on fd: Int32) -> Bool {
        let bytes = WorkerReports.encodeFailure(text)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                // The channel is non-blocking once the gateway's link has it; the report is small and the
                // parent reads it, so waiting for room is short.
                var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if Glibc.poll(&poll, 1, 1000) > 0 { continue }
            }
            return false
        }
        return true
    }

    /// Parent side: the bytes waiting (for `WorkerReports`); empty when none, nil at end of file (the serving
    /// process is gone).
    package static func readReports(on fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { return Array(buffer[0..<n]) }
            if n < 0 && errno == EINTR { continue }
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? [] : nil
        }
    }
}

/// Serving side: collects bundles from the non-blocking channel as bytes arrive.
package struct BundleReceiver {
    package enum Outcome {
        /// Nothing complete yet.
        case waiting
        case bundle(bytes: [UInt8], sockets: [Int32])
        /// A new process serves now (SIGUSR2): stop.
        case replaced
        /// A link to worker `worker`, restarted (the receiver owns `socket`).
        case workerLink(worker: Int, socket: Int32)
        /// The parent closed its end (it died or was killed).
        case closed
    }

    private var pending: [UInt8] = []
    private var sockets: [Int32] = []

    package init() {}

    /// The next complete message: one already read, else what the channel has now. Call again until
    /// `.waiting` (several messages may arrive in one read).
    package mutating func receive(from fd: Int32) throws(SystemError) -> Outcome {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var fds = [Int32](repeating: -1, count: PrivilegedChannel.maxSockets)
        while true {
            if let message = try nextMessage() { return message }
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
        }
    }

    private mutating func nextMessage() throws(SystemError) -> Outcome? {
        guard pending.count >= 8 else { return nil }
        let length = pending[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard length <= PrivilegedChannel.maxBundleBytes else {
            throw SystemError(call: "a reload bundle of \(length) bytes from the privileged parent", errno: EFBIG)
        }
        guard pending.count >= 8 + length else { return nil }
        let kind = length > 0 ? pending[8] : 0
        let bytes = length > 0 ? Array(pending[9..<8 + length]) : []
        pending.removeFirst(8 + length)
        if kind == UInt8(ascii: "Q") { return .replaced }
        if kind == UInt8(ascii: "W"), bytes.count == 1, sockets.count == 1 {
            defer { sockets = [] }
            return .workerLink(worker: Int(bytes[0]), socket: sockets[0])
        }
        // The sockets travel with the first bytes of the bundle they belong to.
        defer { sockets = [] }
        return .bundle(bytes: bytes, sockets: sockets)
    }
}

/// The parent's wait: the signals it handles arrive through a signalfd (blocked for normal delivery), and
/// it also wakes when the channel is readable or closed.
package final class ParentSignals {
    private let fd: Int32

    package enum Event {
        case signal(Int32)
        /// One of the descriptors watched is readable (or closed).
        case readable(Int32)
        case timedOut
    }

    /// Blocks `signals` for normal delivery (before the serving process is forked, which unblocks them once its
    /// event loop watches them).
    package init(_ signals: [Int32]) throws(SystemError) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in signals { sigaddset(&mask, signal) }
        if sigprocmask(SIG_BLOCK, &mask, nil) != 0 { throw SystemError(call: "sigprocmask", errno: errno) }
        fd = CSystem_signalfd(&mask)
        if fd < 0 { throw SystemError(call: "signalfd", errno: errno) }
    }

    /// Unblocks every signal again: for the forked serving process, whose libev watchers use normal delivery,
    /// once they are in place (a signal sent while it was starting is then delivered to them).
    package static func unblockAll() {
        var mask = sigset_t()
        sigfillset(&mask)
        sigprocmask(SIG_UNBLOCK, &mask, nil)
    }

    package func close() { Glibc.close(fd) }

    /// Waits for a signal, a readable descriptor among `watching`, or `timeout` seconds (nil: no limit).
    package func wait(watching: [Int32], timeout: Double?) -> Event {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        fds += watching.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let milliseconds = timeout.map { Int32(max(0, min($0, 86_400)) * 1000) + 1 } ?? -1
        let n = poll(&fds, nfds_t(fds.count), milliseconds)
        if n == 0 { return .timedOut }
        if n > 0 && fds[0].revents & Int16(POLLIN) != 0 {
            var info = signalfd_siginfo()
            if read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                return .signal(Int32(info.ssi_signo))
            }
        }
        if n > 0, let ready = fds.dropFirst().first(where: { $0.revents != 0 }) { return .readable(ready.fd) }
        return .timedOut  // EINTR: the caller checks its deadlines and waits again
    }
}

/// Process calls the privileged parent and the serving process make around the fork.
package enum ParentProcess {
    /// The CPUs this process may run on (`workers = auto`); at least 1.
    package static func availableCPUs() -> Int { max(1, Int(CSystem_available_cpus())) }

    /// A connected Unix stream pair, close-on-exec: a link between two workers (WorkerMesh.swift).
    package static func socketPair() throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        if socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) != 0 {
            throw SystemError(call: "socketpair", errno: errno)
        }
        return (fds[0], fds[1])
    }

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
