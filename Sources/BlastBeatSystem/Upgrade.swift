import CSystem
import Glibc

/// Listening sockets a process was given by whoever started it: its privileged parent (inherited through
/// fork) or the process it replaces (SIGUSR2: inherited through exec, named in `BLASTBEAT_SOCKETS`). Keys are
/// `FileBundle.listenerKey` for client listeners and `zmq ENDPOINT` for the ROUTER's. Whatever is not taken
/// is closed by `closeRest`.
package final class InheritedSockets {
    private var byKey: [String: [Int32]]

    package init(_ byKey: [String: [Int32]] = [:]) { self.byKey = byKey }

    package static let environmentName = "BLASTBEAT_SOCKETS"

    package static func routerKey(_ endpoint: String) -> String { "zmq \(endpoint)" }

    /// The admin listener's sockets (bound by the parent of several workers, who share them).
    package static func adminKey(_ address: String) -> String { "admin \(address)" }

    /// The sockets named in the environment (removed from it, so they are not passed on by mistake); each is
    /// made close-on-exec again.
    package static func fromEnvironment() -> InheritedSockets {
        guard let value = getenv(environmentName).map({ String(cString: $0) }) else { return InheritedSockets() }
        unsetenv(environmentName)
        var table: [String: [Int32]] = [:]
        for entry in value.split(separator: ";") {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let key = Self.unhex(parts[0]) else { continue }
            let fds = parts[1].split(separator: ",").compactMap { Int32($0) }.filter { fcntl($0, F_GETFD) >= 0 }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            table[key] = fds
        }
        return InheritedSockets(table)
    }

    /// `KEY=fd,fd;…` with the keys in hex (a key may hold any byte an ipc:// path can).
    package static func environmentValue(_ table: [String: [Int32]]) -> String {
        table.map { key, fds in
            key.utf8.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
                .joined() + "=" + fds.map(String.init).joined(separator: ",")
        }.joined(separator: ";")
    }

    private static func unhex(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2, limitedBy: text.endIndex) ?? text.endIndex
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    package var isEmpty: Bool { byKey.isEmpty }

    package func take(_ key: String) -> [Int32]? { byKey.removeValue(forKey: key) }

    package func closeRest() {
        for fds in byKey.values { fds.forEach(Posix.close) }
        byKey.removeAll()
    }
}

/// SIGUSR2: starts the new binary with the same arguments, handing it the listening sockets; it writes one
/// byte to the pipe named in `BLASTBEAT_UPGRADE_READY` once it serves (`Upgrade.reportReady`).
package enum Upgrade {
    package static let readyEnvironmentName = "BLASTBEAT_UPGRADE_READY"

    /// The new process's pid and the read end of its ready pipe (close-on-exec, blocking).
    package static func spawn(
        arguments: [String], sockets: [String: [Int32]]
    ) throws(SystemError) -> (pid: Int32, ready: Int32) {
        var pipeFDs: [Int32] = [-1, -1]
        if pipe(&pipeFDs) != 0 { throw SystemError(call: "pipe", errno: errno) }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }  // the child keeps the write end (CSystem_spawn)
        // Everything the child needs is built here: after fork it may only call async-signal-safe functions.
        var environment = [String]()
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if !text.hasPrefix(InheritedSockets.environmentName + "=") && !text.hasPrefix(readyEnvironmentName + "=") {
                environment.append(text)
            }
            index += 1
        }
        environment.append("\(InheritedSockets.environmentName)=\(InheritedSockets.environmentValue(sockets))")
        environment.append("\(readyEnvironmentName)=\(writeEnd)")
        let passed = sockets.values.flatMap { $0 } + [writeEnd]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = passed.withUnsafeBufferPointer { fds in
            CSystem_spawn(arguments[0], argv, envp, fds.baseAddress, Int32(fds.count))
        }
        Glibc.close(writeEnd)
        if pid < 0 {
            Glibc.close(readEnd)
            throw SystemError(call: "fork", errno: errno)
        }
        return (pid, readEnd)
    }

    /// In the new process, at start: the write end of the old process's ready pipe (close-on-exec from now on),
    /// nil when this start is not an upgrade.
    package static func takeReadyPipe() -> Int32? {
        guard let value = getenv(readyEnvironmentName).map({ String(cString: $0) }), let fd = Int32(value),
            fcntl(fd, F_GETFD) >= 0
        else { return nil }
        unsetenv(readyEnvironmentName)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// Once the new process serves: one byte to the old one, which then stops.
    package static func reportReady(_ fd: Int32) {
        var byte = UInt8(ascii: "R")
        _ = write(fd, &byte, 1)
        Glibc.close(fd)
    }

    /// The old process, when the ready pipe is readable: true for the new process's byte, false for end of
    /// file (it exited before serving).
    package static func readReady(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            return n == 1
        }
    }
}
