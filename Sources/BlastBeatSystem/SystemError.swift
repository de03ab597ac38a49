import Glibc

/// A failed system call: which call and the errno it left, for an operator-readable message.
package struct SystemError: Error, CustomStringConvertible, Sendable {
    package var call: String
    package var errno: Int32

    package init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    package var description: String {
        let reason = strerror(errno).map { String(cString: $0) } ?? "errno \(errno)"
        return "\(call): \(reason)"
    }
}

/// Result of a non-blocking I/O call: bytes processed, or "would block" as a value (not an error).
package enum IOResult: Equatable {
    case processed(Int)
    case wouldBlock
}
