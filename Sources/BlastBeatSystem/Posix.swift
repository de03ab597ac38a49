package import BlastBeatCore
import Glibc
internal import CSystem

/// Thin wrappers around the socket syscalls the gateway uses.
///
/// Each wrapper reads errno immediately after the call, retries EINTR, returns EAGAIN as
/// `.wouldBlock` and throws `SystemError` for everything else. They are `@inline(never)` so no
/// ARC traffic can run between the call and the errno read (the pattern of nio's System.swift).
package enum Posix {
    @inline(never)
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return .processed(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "read", errno: e)
        }
    }

    /// Reads into `buffer` (the gateway's shared read buffer) from its start, up to its capacity.
    package static func read(_ fd: Int32, into buffer: inout ReadBuffer) throws(SystemError) -> IOResult {
        var result = IOResult.wouldBlock
        try buffer.fill { (bytes: inout MutableSpan<UInt8>) throws(SystemError) -> Int in
            try bytes.withUnsafeMutableBufferPointer { (room) throws(SystemError) -> Int in
                result = try read(fd, into: UnsafeMutableRawBufferPointer(room))
                if case .processed(let n) = result { return n }
                return 0
            }
        }
        return result
    }

    /// Reads and drops up to `maximum` bytes (`MSG_TRUNC`: a TCP socket discards them without copying):
    /// the input of a connection that is lingering on its way out.
    @inline(never)
    package static func discard(_ fd: Int32, maximum: Int) throws(SystemError) -> IOResult {
        while true {
            let n = recv(fd, nil, maximum, Int32(MSG_TRUNC))
            if n >= 0 { return .processed(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "recv", errno: e)
        }
    }

    @inline(never)
    package static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        while true {
            let n = Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .processed(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "send", errno: e)
        }
    }

    /// Sends `buffer` with `descriptors` attached (SCM_RIGHTS; at most 253), no SIGPIPE: a worker mesh link handing
    /// a backend connection over (WorkerMesh.swift). The descriptors go only if some bytes do.
    @inline(never)
    static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, attaching descriptors: [Int32]) throws(SystemError) -> IOResult {
        while true {
            let n = descriptors.withUnsafeBufferPointer {
                CSystem_send_with_fds(fd, buffer.baseAddress, buffer.count, $0.baseAddress, Int32($0.count))
            }
            if n >= 0 { return .processed(n) }
            if n == -2 { throw SystemError(call: "send \(descriptors.count) descriptors", errno: E2BIG) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "sendmsg", errno: e)
        }
    }

    /// Reads into `buffer` and appends the descriptors that arrived with the bytes (close-on-exec) to
    /// `descriptors`; at most `maxDescriptors` are kept from one read, any more are closed.
    @inline(never)
    static func receive(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, descriptors: inout [Int32], maxDescriptors: Int
    ) throws(SystemError) -> IOResult {
        while true {
            var count: Int32 = 0
            let n = withUnsafeTemporaryAllocation(of: Int32.self, capacity: maxDescriptors) { fds in
                let n = CSystem_recv_with_fds(fd, buffer.baseAddress, buffer.count, fds.baseAddress, Int32(maxDescriptors), &count)
                descriptors += fds[0..<Int(count)]
                return n
            }
            if n >= 0 { return .processed(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "recvmsg", errno: e)
        }
    }

    /// Sends `first` then `second` in one system call (`sendmsg` with two iovecs, no SIGPIPE).
    @inline(never)
    package static func write(
        _ fd: Int32, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer
    ) throws(SystemError) -> IOResult {
        var vectors = (
            iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count))
        while true {
            let n = withUnsafeMutableBytes(of: &vectors) { raw in
                var message = msghdr()
                message.msg_iov = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
                message.msg_iovlen = 2
                return Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            }
            if n >= 0 { return .processed(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "sendmsg", errno: e)
        }
    }

    /// Sends `count` iovecs in one system call (`sendmsg`, no SIGPIPE).
    @inline(never)
    static func write(_ fd: Int32, vectors: UnsafeMutablePointer<iovec>, count: Int) throws(SystemError) -> IOResult {
        while true {
            var message = msghdr()
            message.msg_iov = vectors
            message.msg_iovlen = count
            let n = Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .processed(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: "sendmsg", errno: e)
        }
    }

    /// Accepts one connection as non-blocking and close-on-exec; nil when the backlog is empty.
    @inline(never)
    package static func accept(_ fd: Int32) throws(SystemError) -> (fd: Int32, peer: SocketAddress)? {
        var peer = sockaddr_storage()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    CSystem_accept4(fd, $0, &length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
            if client >= 0 { return (client, SocketAddress(storage: peer)) }
            let e = Glibc.errno
            if e == EINTR || e == ECONNABORTED { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SystemError(call: "accept4", errno: e)
        }
    }

    package static func close(_ fd: Int32) {
        // Linux releases the descriptor even when close reports EINTR, so it is never retried.
        _ = Glibc.close(fd)
    }

    /// Closes a TCP socket with a reset (SO_LINGER 0): no FIN exchange and no TIME_WAIT on our side, the
    /// cheapest way to turn a connection away (the peer sees ECONNRESET). Anything queued is discarded.
    package static func closeWithReset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = Glibc.setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        _ = Glibc.close(fd)
    }

    /// Half-closes the sending side so the client sees EOF after the last response byte.
    package static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    package static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var v = value
        if Glibc.setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw SystemError(call: "setsockopt(\(level), \(name))", errno: Glibc.errno)
        }
    }

    /// Turns off Nagle's algorithm on a TCP socket (best effort: a failure only costs latency).
    package static func setNoDelay(_ fd: Int32) {
        try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// Creates a listening, non-blocking TCP socket bound to `address`.
    package static func listen(address: SocketAddress, backlog: Int32) throws(SystemError) -> Int32 {
        let family = Int32(address.family)
        return try listeningSocket(family: family, named: "\(address)", backlog: backlog) { fd throws(SystemError) in
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if family == AF_INET6 {
                // One socket per address family: `[::]` must not swallow `0.0.0.0` on the same port.
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1)
            }
            return address.withSockAddr { Glibc.bind(fd, $0, $1) }
        }
    }

    /// socket(), `bind` (options, then bind(2)'s return code), listen(); the socket is closed on any failure.
    private static func listeningSocket(
        family: Int32, named name: String, backlog: Int32, bind: (Int32) throws(SystemError) -> Int32
    ) throws(SystemError) -> Int32 {
        let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemError(call: "socket", errno: Glibc.errno) }
        do throws(SystemError) {
            if try bind(fd) != 0 { throw SystemError(call: "bind(\(name))", errno: Glibc.errno) }
            if Glibc.listen(fd, backlog) != 0 { throw SystemError(call: "listen(\(name))", errno: Glibc.errno) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// Creates a listening, non-blocking Unix stream socket at `path`, replacing a stale socket
    /// file left by an earlier run (as libzmq's `ipc://` does).
    package static func listenUnix(path: String, backlog: Int32) throws(SystemError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let room = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < room else { throw SystemError(call: "bind(\(path))", errno: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        return try listeningSocket(family: AF_UNIX, named: path, backlog: backlog) { fd in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
    }

    /// Removes the file at `path` (a Unix socket's file at shutdown).
    package static func removeFile(_ path: String) throws(SystemError) {
        if Glibc.unlink(path) != 0 { throw SystemError(call: "unlink \(path)", errno: Glibc.errno) }
    }

    /// Writes `text` to standard error in one call (a message that must appear once, whole).
    /// `write(fd, first, second)` for bytes lent as spans (the queued output and a large payload).
    package static func write(_ fd: Int32, _ first: RawSpan, _ second: RawSpan) throws(SystemError) -> IOResult {
        try first.withUnsafeBytes { (first) throws(SystemError) in
            try second.withUnsafeBytes { (second) throws(SystemError) in try write(fd, first, second) }
        }
    }

    package static func write(_ fd: Int32, _ bytes: RawSpan) throws(SystemError) -> IOResult {
        try bytes.withUnsafeBytes { (bytes) throws(SystemError) in try write(fd, bytes) }
    }

    /// Creates `path` with `mode` (never over an existing file: `O_EXCL`) and writes `text` to it.
    package static func createFile(_ path: String, containing text: String, mode: UInt32) throws(SystemError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(mode))
        if fd < 0 { throw SystemError(call: "create", errno: errno) }
        defer { Glibc.close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw SystemError(call: "write", errno: errno) }
            written += n
        }
    }

    package static func writeStandardError(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    /// The port a socket is bound to (for listeners bound to port 0 in tests).
    package static func localPort(_ fd: Int32) -> UInt16 { localAddress(fd).port }

    /// The address a socket is bound to (a listening socket received from the privileged parent).
    package static func localAddress(_ fd: Int32) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return SocketAddress(storage: storage)
    }

    /// Who is at the other end of a Unix socket, for logs: "a local process (pid N, uid N)".
    package static func peerCredentials(_ fd: Int32) -> String {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        guard CSystem_peercred(fd, &pid, &uid) == 0 else { return "a local process" }
        return "a local process (pid \(pid), uid \(uid))"
    }

    /// A whole (small) file: configuration, certificates, keys. Not for the event loop's hot path. Past
    /// `limit` bytes it fails with EFBIG (checked while reading: a path like /dev/zero is not read forever).
    package static func readFile(_ path: String, limit: Int = 16 << 20) throws(SystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SystemError(call: "open \(path)", errno: errno) }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError(call: "read \(path)", errno: errno)
            }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            if bytes.count > limit { throw SystemError(call: "read \(path) (over \(limit) bytes)", errno: EFBIG) }
        }
    }
}
