package import BlastBeatCore
internal import CSystem
internal import CZeroMQ
import Glibc

/// CURVE (ZeroMQ RFC 26) for the backend SDK's DEALERs: the keys a client socket needs, whether the linked
/// libzmq can do CURVE at all, and reading key files (the public half of a secret key: `CurveCrypto`).
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

    /// Whether `path` names an existing file (of any kind), without reading it.
    package static func fileExists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    /// Reads a key file (a ZeroMQ certificate) as text; more than `limit` bytes cannot be one.
    package static func readKeyFile(_ path: String, limit: Int = 64 << 10) throws(SystemError) -> String {
        do { return String(decoding: try Posix.readFile(path, limit: limit), as: UTF8.self) } catch {
            if error.errno != EFBIG { throw error }
            throw SystemError(call: "read \(path): larger than \(limit) bytes, so not a ZeroMQ certificate file", errno: EFBIG)
        }
    }
}
