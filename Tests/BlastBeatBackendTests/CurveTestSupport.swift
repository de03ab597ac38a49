import BlastBeatCore
import CZeroMQ
import Glibc
import Testing

/// A fresh CURVE key pair from libzmq, in binary and as certificate file text.
struct TestKeyPair {
    let publicKey: [UInt8]
    let secretKey: [UInt8]

    init() {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        precondition(zmq_curve_keypair(&publicText, &secretText) == 0, "libzmq without CURVE")
        publicKey = CurveKey(z85: Self.string(publicText))!.bytes
        secretKey = CurveKey(z85: Self.string(secretText))!.bytes
    }

    var publicZ85: String { Z85.encode(publicKey) }
    var secretZ85: String { Z85.encode(secretKey) }

    /// The (public, secret) certificate files, in the format pyzmq and `CurveCertificate.files` write.
    var certificates: (public: String, secret: String) {
        CurveCertificate.files(
            publicKey: CurveKey(bytes: publicKey)!, secretKey: CurveKey(bytes: secretKey)!, generatedBy: "a test")
    }

    private static func string(_ text: [CChar]) -> String {
        String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A secret certificate exactly as pyzmq 26 wrote it (`zmq.auth.create_certificates(".", "hello")`), with the
/// public key that goes with it. A test key: it protects nothing.
enum PyzmqCertificate {
    static let publicKey = "O65#-m9R/=XRQE/wXia3e16D*aBgXb7]KX)}U@c9"
    static let secret = """
        #   ****  Generated on 2026-12-06 06:52:59.764860 by pyzmq  ****
        #   ZeroMQ CURVE **Secret** Certificate
        #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

        metadata
        curve
            public-key = "O65#-m9R/=XRQE/wXia3e16D*aBgXb7]KX)}U@c9"
            secret-key = "J7$!a&p8NRGwZx?Oo%PSJNe!UAONYWGAY{F@9u1M"

        """
}

/// A directory under /tmp for key files, removed with everything in it by `remove()`.
final class TemporaryDirectory {
    let path: String
    private var files: [String] = []

    init() {
        var template = Array("/tmp/blastbeat-backend-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp: errno \(errno)")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes `text` to `name` in the directory and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let file = "\(path)/\(name)"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "open \(file): errno \(errno)")
        defer { close(fd) }
        var text = text
        text.withUTF8 { bytes in precondition(Glibc.write(fd, bytes.baseAddress, bytes.count) == bytes.count) }
        files.append(file)
        return file
    }

    func remove() {
        for file in files { unlink(file) }
        rmdir(path)
    }
}
