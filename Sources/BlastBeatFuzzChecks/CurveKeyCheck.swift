import BlastBeatCore

extension FuzzChecks {
    /// Z85 and ZeroMQ certificate files (`CurveKey`, `CurveCertificate`):
    /// - Z85 text that decodes re-encodes to the same text, and any whole 4-byte groups encode to text
    ///   that decodes back to them; a `CurveKey` from text exists exactly for 40 valid characters;
    /// - a certificate that parses, written out again by `files(...)`, parses to the same keys.
    @Sendable public static func curveKeys(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        if let decoded = Z85.decode(bytes) {
            invariant(decoded.count == bytes.count / 5 * 4, "Z85 decoded to \(decoded.count) bytes")
            invariant(Array(Z85.encode(decoded).utf8) == bytes, "Z85 decode + encode is not the identity")
        }
        let groups = Array(bytes.prefix(bytes.count / 4 * 4))
        let text = Z85.encode(groups)
        invariant(Z85.decode(Array(text.utf8)) == groups, "Z85 encode + decode is not the identity")
        let asText = String(decoding: bytes, as: UTF8.self)
        if let key = CurveKey(z85: asText) {
            invariant(key.bytes.count == 32 && key.z85 == asText, "CurveKey z85 round trip")
        }

        let certificate: CurveCertificate
        do throws(CurveCertificate.ParseError) {
            certificate = try CurveCertificate.parse(asText)
        } catch {
            return
        }
        let secret = certificate.secretKey ?? certificate.publicKey
        let (publicFile, secretFile) = CurveCertificate.files(
            publicKey: certificate.publicKey, secretKey: secret, generatedBy: "fuzz")
        let publicAgain = try? CurveCertificate.parse(publicFile)
        let secretAgain = try? CurveCertificate.parse(secretFile)
        invariant(publicAgain == CurveCertificate(publicKey: certificate.publicKey, secretKey: nil), "public file round trip")
        invariant(secretAgain == CurveCertificate(publicKey: certificate.publicKey, secretKey: secret), "secret file round trip")
    }
}
