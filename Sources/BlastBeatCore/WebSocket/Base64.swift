/// Standard base64 (RFC 4648 §4, with `=` padding), encode only: all the WebSocket handshake needs.
package enum Base64 {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8
    )

    /// Number of bytes `encode` appends for `count` input bytes.
    package static func encodedCount(_ count: Int) -> Int {
        (count + 2) / 3 * 4
    }

    /// Appends the base64 encoding of `bytes` to `output`.
    package static func encode(_ bytes: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        output.reserveCapacity(output.count + Self.encodedCount(bytes.count))
        var index = 0
        while index + 3 <= bytes.count {
            let triple = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            output.append(Self.alphabet[Int(triple >> 18 & 0x3F)])
            output.append(Self.alphabet[Int(triple >> 12 & 0x3F)])
            output.append(Self.alphabet[Int(triple >> 6 & 0x3F)])
            output.append(Self.alphabet[Int(triple & 0x3F)])
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let triple = UInt32(bytes[index]) << 16
            output.append(Self.alphabet[Int(triple >> 18 & 0x3F)])
            output.append(Self.alphabet[Int(triple >> 12 & 0x3F)])
            output.append(UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        case 2:
            let triple = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            output.append(Self.alphabet[Int(triple >> 18 & 0x3F)])
            output.append(Self.alphabet[Int(triple >> 12 & 0x3F)])
            output.append(Self.alphabet[Int(triple >> 6 & 0x3F)])
            output.append(UInt8(ascii: "="))
        default:
            break
        }
    }

    /// The base64 encoding of `bytes`.
    package static func encode(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { encode($0) }
    }

    package static func encode(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var output: [UInt8] = []
        Self.encode(bytes, into: &output)
        return output
    }

    /// Whether `byte` is one of the 64 alphabet characters (not `=`).
    package static func isAlphabetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
            return true
        default:
            return false
        }
    }
}
