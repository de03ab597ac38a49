internal import COpenSSL
import Glibc

/// A TLS failure: what we were doing, plus the whole OpenSSL error queue at that moment.
///
/// Creating a `TLSError` drains the calling thread's OpenSSL error queue (`ERR_get_error` until it
/// returns 0), so no stale entry is blamed on a later, unrelated call (the queue is per thread and
/// OpenSSL never empties it by itself).
package struct TLSError: Error, CustomStringConvertible {
    /// What failed, for an operator: "no certificate found in /etc/blastbeat/a.pem".
    package var message: String
    /// OpenSSL's queue, oldest first, e.g. "SSL routines: unsupported protocol".
    package var openSSLErrors: [String]
    /// The first errno OpenSSL recorded (from fopen/fread), if any.
    package var systemErrno: Int32?
    /// Which of a certificate's two files is to blame, when loading a `TLSCertificate` failed: the certificate
    /// file (unreadable, no certificate, does not parse) or the key file (unreadable, does not parse, encrypted,
    /// not the certificate's key). Lets the configuration error name the `certificate` or the `key` line.
    package var file: File?

    package enum File: Sendable {
        case certificate
        case key
    }

    /// Builds an error for `message` and drains the OpenSSL error queue into it.
    init(_ message: String) {
        self.message = message
        self.openSSLErrors = []
        self.systemErrno = nil
        self.file = nil
        while true {
            var data: UnsafePointer<CChar>?
            var flags: Int32 = 0
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            openSSLErrors.append(Self.describe(code, data: (flags & ERR_TXT_STRING) != 0 ? data : nil))
            if ERR_GET_LIB(code) == ERR_LIB_SYS && systemErrno == nil { systemErrno = ERR_GET_REASON(code) }
        }
    }

    /// Empties the queue without building a message (before an SSL_* call, as SSL_get_error requires,
    /// and after calls whose failure is expected and harmless).
    static func clearQueue() {
        ERR_clear_error()
    }

    private static func describe(_ code: UInt, data: UnsafePointer<CChar>?) -> String {
        var text: String
        if ERR_GET_LIB(code) == ERR_LIB_SYS {
            text = "system: " + String(cString: strerror(ERR_GET_REASON(code)))
        } else {
            let library = ERR_lib_error_string(code).map { String(cString: $0) } ?? "library \(ERR_GET_LIB(code))"
            let reason = ERR_reason_error_string(code).map { String(cString: $0) } ?? "reason \(ERR_GET_REASON(code))"
            text = "\(library): \(reason)"
        }
        if let data, data.pointee != 0 { text += " [\(String(cString: data))]" }
        return text
    }

    package var description: String {
        openSSLErrors.isEmpty ? message : "\(message) (\(openSSLErrors.joined(separator: "; ")))"
    }
}
