internal import BlastBeatCore
internal import BlastBeatSystem

/// The keys a node needs to connect to a gateway with CURVE: the node's own certificate (public and secret
/// key) and the gateway's public key.
///
/// CURVE (ZeroMQ RFC 26) encrypts everything between the node and the gateway and tells the gateway which
/// key is connecting. A gateway with a `curve-key` lets an identity `NODE` (and every `NODE#instance`)
/// connect only with the public keys listed for it (`node-key = NODE KEY` in the vhost), so another tenant
/// cannot take the node's requests by connecting with its name. Without CURVE, anyone who can reach the
/// gateway's `zmq` endpoint can.
///
/// The files are ZeroMQ certificates, as pyzmq writes them:
///
/// ```sh
/// python3 -c 'import zmq.auth; zmq.auth.create_certificates("keys", "app")'
/// # keys/app.key         public:  give it to the gateway's operator (node-key = app <its public-key>)
/// # keys/app.key_secret  secret:  this node's --curve-key; keep it private
/// ```
///
/// ```swift
/// let curve = try CurveCredentials(curveKeyFile: "keys/app.key_secret", serverKey: "keys/gateway.key")
/// let node = try BackendNode(node: "app", endpoints: ["tcp://gateway:5000"], curve: curve)
/// ```
///
/// The secret key is never printed: `description` shows only the public keys.
public struct CurveCredentials: Sendable, CustomStringConvertible {
    let keys: ZMQCurve.ClientKeys

    /// This node's public key (40 Z85 characters): what the gateway's `node-key` line must name.
    public var publicKey: String { keys.publicKey.z85 }
    /// The gateway's public key (40 Z85 characters).
    public var serverKey: String { keys.serverKey.z85 }

    public var description: String { "CURVE (node key \(publicKey), gateway key \(serverKey))" }

    /// Reads the node's secret certificate file and the gateway's public key.
    ///
    /// - Parameters:
    ///   - curveKeyFile: the node's **secret** certificate (`NAME.key_secret`), with `public-key` and
    ///     `secret-key` in its `curve` section. The two keys must belong together.
    ///   - serverKey: the gateway's public key: the path of its public certificate file, or the key itself as
    ///     40 Z85 characters. An existing file wins, so that a path is never mistaken for a key.
    /// - Throws: `.curveKeyUnreadable` when a file cannot be read; `.invalidCurveKey` when a file is not a
    ///   ZeroMQ certificate, the node's file has no secret key or keys that do not belong together, or the
    ///   server key is neither a file nor a Z85 key, or is a secret certificate; `.curveUnavailable` when the
    ///   linked libzmq was built without CURVE.
    public init(curveKeyFile: String, serverKey: String) throws(BackendError) {
        let text = try Self.read(curveKeyFile, what: "curve key file")
        try self.init(secretCertificate: text, named: String(reflecting: curveKeyFile), serverKey: serverKey)
    }

    /// The same from the node's secret certificate as text (a key kept in a secret store rather than a file).
    public init(secretCertificate: String, serverKey: String) throws(BackendError) {
        try self.init(secretCertificate: secretCertificate, named: "the node's certificate", serverKey: serverKey)
    }

    private init(secretCertificate text: String, named name: String, serverKey: String) throws(BackendError) {
        // Checked first: without CURVE in libzmq, the key check below cannot run either.
        guard ZMQCurve.isAvailable else {
            throw BackendError.curveUnavailable.with(
                "this libzmq was built without CURVE (zmq_has(\"curve\") is false); install one built with libsodium")
        }
        let certificate: CurveCertificate
        do {
            certificate = try CurveCertificate.parse(text)
        } catch {
            throw BackendError.invalidCurveKey.with("\(name) is not a ZeroMQ certificate: \(error)")
        }
        guard let secretKey = certificate.secretKey else {
            throw BackendError.invalidCurveKey.with(
                "\(name) has no secret-key: give the node's secret certificate (NAME.key_secret), not the public one")
        }
        // A mismatched pair would fail every handshake with nothing but reconnects to show for it.
        guard CurveCrypto.publicKey(forSecret: secretKey) == certificate.publicKey else {
            throw BackendError.invalidCurveKey.with("in \(name), the public-key does not belong to the secret-key")
        }
        keys = ZMQCurve.ClientKeys(
            publicKey: certificate.publicKey, secretKey: secretKey, serverKey: try Self.serverKey(serverKey))
    }

    /// The gateway's public key from a certificate file or from Z85 text.
    private static func serverKey(_ value: String) throws(BackendError) -> CurveKey {
        if ZMQCurve.fileExists(value) {
            let text = try read(value, what: "server key file")
            let certificate: CurveCertificate
            do {
                certificate = try CurveCertificate.parse(text)
            } catch {
                throw BackendError.invalidCurveKey.with(
                    "server key file \(String(reflecting: value)) is not a ZeroMQ certificate: \(error)")
            }
            // The gateway's secret must stay on the gateway; a node that holds it could impersonate it.
            guard certificate.secretKey == nil else {
                throw BackendError.invalidCurveKey.with(
                    "server key file \(String(reflecting: value)) holds the gateway's secret-key: give the node "
                        + "only the gateway's public certificate")
            }
            return certificate.publicKey
        }
        guard let key = CurveKey(z85: value) else {
            throw BackendError.invalidCurveKey.with(
                "server key \(String(reflecting: value)) is neither an existing certificate file nor a "
                    + "40-character Z85 key")
        }
        return key
    }

    private static func read(_ path: String, what: String) throws(BackendError) -> String {
        do {
            return try ZMQCurve.readKeyFile(path)
        } catch {
            throw BackendError.curveKeyUnreadable.with("cannot read \(what) \(String(reflecting: path)): \(error)")
        }
    }
}
