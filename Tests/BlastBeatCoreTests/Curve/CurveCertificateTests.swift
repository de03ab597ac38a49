import BlastBeatCore
import Testing

@Suite struct Z85Tests {
    /// ZeroMQ RFC 32's test vector.
    @Test func rfcVector() {
        let bytes: [UInt8] = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]
        #expect(Z85.encode(bytes) == "HelloWorld")
        #expect(Z85.decode("HelloWorld".utf8) == bytes)
    }

    @Test func roundTripOfEveryByteValue() {
        let bytes = (0..<256).map { UInt8($0) }
        #expect(Z85.decode(Z85.encode(bytes).utf8) == bytes)
    }

    @Test func refusesBadText() {
        #expect(Z85.decode("Hello".utf8.dropLast()) == nil)  // not a multiple of 5
        #expect(Z85.decode("Hell\"".utf8) == nil)  // outside the alphabet
        #expect(Z85.decode("#####".utf8) == nil)  // 84·85⁴+… > 2³²
        #expect(CurveKey(z85: "HelloWorld") == nil)  // 8 bytes, not 32
    }
}

@Suite struct CurveCertificateTests {
    /// Written by pyzmq 25's `zmq.auth.create_certificates` (keys from RFC 26's example set).
    static let pyzmqSecret = """
        #   ****  Generated on 2026-12-06 07:01:02.000000 by pyzmq  ****
        #   ZeroMQ CURVE **Secret** Certificate
        #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

        metadata
        curve
            public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
            secret-key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"

        """

    @Test func readsPyzmqSecretFile() throws {
        let certificate = try CurveCertificate.parse(Self.pyzmqSecret)
        #expect(certificate.publicKey.z85 == "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID")
        #expect(certificate.secretKey?.z85 == "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs")
    }

    @Test func publicFileHasNoSecret() throws {
        let text = Self.pyzmqSecret.split(separator: "\n").filter { !$0.contains("secret-key") }.joined(separator: "\n")
        let certificate = try CurveCertificate.parse(text)
        #expect(certificate.secretKey == nil)
    }

    @Test func czmqStyleWithMetadataAndCRLF() throws {
        let text = "metadata\r\n    name = \"public-key\"\r\n    public-key = \"ignored: not in curve\"\r\ncurve\r\n    public-key = 'Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID'\r\n"
        #expect(try CurveCertificate.parse(text).publicKey.z85 == "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID")
    }

    /// A top-level line that is only `= value` is a section with an empty name (found by the curve-keys
    /// fuzzer: splitting it at "=" gave no name, and reading it trapped).
    @Test func topLevelLineWithoutName() throws {
        let text = "metadata\n= x\n=\ncurve\n    public-key = \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\"\n"
        #expect(try CurveCertificate.parse(text).publicKey.z85 == "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID")
        #expect(throws: CurveCertificate.ParseError.missingPublicKey) { try CurveCertificate.parse("=") }
    }

    @Test func errorsNameTheLine() {
        #expect(throws: CurveCertificate.ParseError.missingPublicKey) { try CurveCertificate.parse("metadata\n") }
        #expect(throws: CurveCertificate.ParseError.invalidKey(name: "public-key", line: 2)) {
            try CurveCertificate.parse("curve\n    public-key = \"short\"\n")
        }
        #expect(throws: CurveCertificate.ParseError.duplicateKey(name: "public-key", line: 3)) {
            let key = "    public-key = \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\"\n"
            try CurveCertificate.parse("curve\n" + key + key)
        }
    }

    @Test func keygenFilesReadBack() throws {
        let publicKey = try #require(CurveKey(z85: "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"))
        let secretKey = try #require(CurveKey(z85: "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"))
        let (publicFile, secretFile) = CurveCertificate.files(publicKey: publicKey, secretKey: secretKey, generatedBy: "test")
        #expect(try CurveCertificate.parse(publicFile) == CurveCertificate(publicKey: publicKey, secretKey: nil))
        #expect(try CurveCertificate.parse(secretFile) == CurveCertificate(publicKey: publicKey, secretKey: secretKey))
    }
}
