package import BlastBeatCore
import Glibc

/// Where the gateway reads the files its configuration names (the configuration and its includes, TLS
/// certificates and keys, CURVE keys).
///
/// - `direct`: the file system, with the process's own rights.
/// - `recording`: the file system, keeping a copy of everything read (and every failure) in `bundle`: what
///   the privileged parent does as root for a reload (PrivilegedParent.swift).
/// - `replaying`: only the copies in a received bundle: the serving process, running as `uid`, reloads from
///   what the parent read. Each read fails or succeeds exactly as it did for the parent.
package final class FileSource {
    package enum Mode {
        case direct
        case recording
        case replaying
    }

    package let mode: Mode
    package private(set) var bundle: FileBundle

    package init(_ mode: Mode = .direct, bundle: FileBundle = FileBundle()) {
        self.mode = mode
        self.bundle = bundle
    }

    package static var direct: FileSource { FileSource(.direct) }

    /// The whole file; the error names the call and the path ("open /etc/x.pem: No such file or directory").
    package func read(_ path: String, limit: Int = 16 << 20) throws(SystemError) -> [UInt8] {
        try lookUpOrRecord(\.files, path, call: "read \(path)") { () throws(SystemError) in
            do throws(SystemError) { return try Posix.readFile(path, limit: limit) } catch {
                throw SystemError(call: "read \(path)", errno: error.errno)
            }
        }
    }

    /// The paths a glob matches, sorted (glob(3)); none is fine, an unreadable directory is an error.
    package func glob(_ pattern: String) throws(SystemError) -> [String] {
        try lookUpOrRecord(\.globs, pattern, call: "glob \(pattern)") { () throws(SystemError) in try Self.expand(pattern) }
    }

    /// Replaying: the parent's outcome for `key`, success or failure as it was. Otherwise `fetch` runs, and
    /// its outcome is recorded when recording.
    private func lookUpOrRecord<Value>(
        _ table: WritableKeyPath<FileBundle, [String: FileBundle.Entry<Value>]>, _ key: String, call: String,
        _ fetch: () throws(SystemError) -> Value
    ) throws(SystemError) -> Value {
        switch mode {
        case .replaying:
            switch bundle[keyPath: table][key] {
            case .value(let value): return value
            case .failed(let errno): throw SystemError(call: call, errno: errno)
            case nil: throw SystemError(call: "\(call) (not read by the privileged parent)", errno: ENOENT)
            }
        case .direct, .recording:
            do {
                let value = try fetch()
                if mode == .recording { bundle[keyPath: table][key] = .value(value) }
                return value
            } catch {
                if mode == .recording { bundle[keyPath: table][key] = .failed(errno: error.errno) }
                throw error
            }
        }
    }

    /// Records the sockets bound for a listener (recording mode, in the parent).
    package func recordListener(key: String, sockets: FileBundle.Entry<Int>) {
        bundle.listeners.append((key, sockets))
    }

    private static func expand(_ pattern: String) throws(SystemError) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        errno = 0
        switch Glibc.glob(pattern, GLOB_ERR, nil, &result) {
        case 0:
            break
        case GLOB_NOMATCH:
            return []
        default:
            throw SystemError(call: "glob \(pattern)", errno: errno == 0 ? EIO : errno)
        }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
        }
        return paths
    }
}
