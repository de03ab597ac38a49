package import BlastBeatCore
internal import CZeroMQ
import Glibc

/// CURVE (ZeroMQ RFC 26) for the backend SDK's DEALERs: the keys a client socket needs, whether the linked
/// libzmq can do CURVE at all, the public half of a secret key, and reading key files.
///
/// The keys themselves (`CurveKey`, `CurveCertificate`) are plain values in BlastBeatCore; this file holds the
/// parts that need libzmq or the file system.
package enum ZMQCurve {
    /// What a CURVE client socket is configured with: its own key pair and the server's public key.
    package struct ClientKeys: Sendable, Equatable {
        package var publicKey: CurveKey
        package var secretKey: CurveKey
        /// The gateway's public key; the handshake fails unless the gateway holds its secret half.
        package var serverKey: CurveKey

        package init(publicKey: CurveKey, secretKey: CurveKey, serverKey: CurveKey) {
            self.publicKey = publicKey
            self.secretKey = secretKey
            self.serverKey = serverKey
        }
    }

    /// Whether the linked libzmq was built with CURVE (with libsodium or its own tweetnacl). Without it,
    /// setting a CURVE option fails with EINVAL, which would tell an operator nothing.
    package static var isAvailable: Bool { zmq_has("curve") != 0 }

    /// The public key that belongs to `secretKey` (a Curve25519 base-point multiplication, done by libzmq),
    /// so that a certificate whose two keys do not match is refused at startup instead of failing every
    /// handshake. Nil when libzmq has no CURVE.
    package static func publicKey(forSecret secretKey: CurveKey) -> CurveKey? {
        // zmq_curve_public writes 40 Z85 characters and a NUL.
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&text, secretKey.z85) == 0 else { return nil }
        return CurveKey(z85: String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// Why a key file could not be read.
    package enum KeyFileError: Error, Equatable, CustomStringConvertible {
        case system(call: String, errno: Int32)
        /// Larger than any certificate file (they are a few hundred bytes): most likely the wrong path.
        case tooLarge(limit: Int)

        package var description: String {
            switch self {
            case .system(let call, let errno): "\(SystemError(call: call, errno: errno))"
            case .tooLarge(let limit): "larger than \(limit) bytes, so not a ZeroMQ certificate file"
            }
        }
    }

    /// Whether `path` names an existing file (of any kind), without reading it.
    package static func fileExists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    /// Reads a key file (a ZeroMQ certificate) as text, at most `limit` bytes.
    package static func readKeyFile(_ path: String, limit: Int = 64 << 10) throws(KeyFileError) -> String {
        // errno is read right after each call, before anything else can change it.
        var fd: Int32 = -1
        var openErrno: Int32 = EINTR
        while fd < 0 && openErrno == EINTR {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            openErrno = fd < 0 ? errno : 0
        }
        if fd < 0 { throw .system(call: "open", errno: openErrno) }
        defer { _ = close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let (n, readErrno) = chunk.withUnsafeMutableBytes { raw in
                let n = read(fd, raw.baseAddress, raw.count)
                return (n, n < 0 ? errno : 0)
            }
            if n < 0 {
                if readErrno == EINTR { continue }
                throw .system(call: "read", errno: readErrno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            // Checked while reading: a path like /dev/zero must not be read forever.
            if bytes.count > limit { throw .tooLarge(limit: limit) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
