import BlastBeatCore
import Testing

@Suite struct WebSocketHandshakeTests {
    @Test func rfc6455ExampleAcceptValue() {
        let key = Array("dGhlIHNhbXBsZSBub25jZQ==".utf8)
        let accept = key.withUnsafeBytes { WebSocketHandshake.acceptValue(key: $0.bytes) }
        #expect(String(decoding: accept, as: UTF8.self) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(accept.count == WebSocketHandshake.acceptValueLength)
    }

    struct KeyCase: Sendable, CustomTestStringConvertible {
        var key: String
        var valid: Bool
        var testDescription: String { "\(self.key.debugDescription) -> \(self.valid)" }
    }

    static let keyCases: [KeyCase] = [
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZQ==", valid: true),
        KeyCase(key: "AAAAAAAAAAAAAAAAAAAAAA==", valid: true),
        KeyCase(key: "/////////////////////w==", valid: true),
        KeyCase(key: "++++++++++++++++++++++==", valid: true),  // non-canonical trailing bits: still 16 bytes
        KeyCase(key: "", valid: false),
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZQ=", valid: false),  // 23 bytes
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZQ===", valid: false),  // 25 bytes
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZQAA", valid: false),  // 18 bytes of data, no padding
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZ===", valid: false),  // padding too early
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZ-==", valid: false),  // base64url alphabet
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZ_==", valid: false),
        KeyCase(key: " GhlIHNhbXBsZSBub25jZQ==", valid: false),
        KeyCase(key: "dGhlIHNhbXBsZSBub25jZQ= ", valid: false),
        KeyCase(key: "dGhlIHNhbXBs\u{0}SBub25jZQ==", valid: false),
    ]

    @Test(arguments: keyCases)
    func keyValidation(_ row: KeyCase) {
        let key = Array(row.key.utf8)
        #expect(key.withUnsafeBytes { WebSocketHandshake.isValidKey($0.bytes) } == row.valid)
    }

    @Test(arguments: [("13", true), ("8", false), ("12", false), ("130", false), ("", false), (" 13", false)])
    func versionCheck(value: String, supported: Bool) {
        let bytes = Array(value.utf8)
        #expect(bytes.withUnsafeBytes { WebSocketHandshake.isSupportedVersion($0.bytes) } == supported)
    }

    /// RFC 4648 §10 test vectors.
    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func base64Vectors(input: String, expected: String) {
        let encoded = Array(input.utf8).withUnsafeBytes { Base64.encode($0) }
        #expect(String(decoding: encoded, as: UTF8.self) == expected)
        #expect(encoded.count == Base64.encodedCount(input.utf8.count))
    }

    @Test func base64AllByteValues() {
        let input = (0...255).map { UInt8($0) }
        let encoded = input.withUnsafeBytes { Base64.encode($0) }
        #expect(encoded.count == Base64.encodedCount(input.count))
        #expect(encoded.allSatisfy { Base64.isAlphabetByte($0) || $0 == UInt8(ascii: "=") })
        #expect(String(decoding: encoded.prefix(8), as: UTF8.self) == "AAECAwQF")
        #expect(String(decoding: encoded.suffix(8), as: UTF8.self) == "/P3+/w==")
    }

    /// FIPS 180 examples plus lengths around the 55/56/64-byte padding edges (digests from Python's hashlib).
    static let shaCases: [(String, [UInt8], String)] =
        [
            ("abc", Array("abc".utf8), "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                "two-block FIPS example", Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8),
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
            ),
        ]
        + [
            (0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"), (1, "9842926af7ca0a8cca12604f945414f07b01e13d"),
            (55, "ddf57317ef34bfee3b6df83d359098930eb278bc"), (56, "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"),
            (57, "11a02dcf95859677a62e75024067c22b165d890f"), (63, "c55856749bef509bdfe6bfebfc7bf4e793e82132"),
            (64, "bede92be29c3874e1b54ddc77988d606fc857a8e"), (65, "b05a80522b053d6dc7e0a517d0e70212c7dad11f"),
            (119, "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"), (120, "82134b02fb3f702491be9bed581eeab59334acb2"),
            (128, "a09133e6730ffe899efb70204cb5646cd5dc24ee"), (1000, "4231a8a50a10fa9758db8ec71fdef855b751048a"),
        ].map { (count, digest) in
            ("\(count) bytes", (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }, digest)
        }

    @Test(arguments: shaCases)
    func sha1Vectors(name: String, input: [UInt8], expected: String) {
        let digest = input.withUnsafeBytes { SHA1.hash($0) }
        #expect(WebSocketTestSupport.hex(digest).replacing(" ", with: "") == expected, "\(name)")
        // The same input fed in uneven pieces.
        for piece in [1, 3, 17, 64] {
            var sha = SHA1()
            for part in WebSocketTestSupport.chunks(input, size: piece) {
                part.withUnsafeBytes { sha.update($0) }
            }
            #expect(sha.finalize() == digest, "\(name) in \(piece)-byte pieces")
        }
    }
}
