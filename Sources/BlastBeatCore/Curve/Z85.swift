/// Z85 (ZeroMQ RFC 32), the text form of CURVE keys: every 4 bytes become 5 printable characters,
/// so a 32-byte key is 40 characters. Used for keys in configuration files, certificate files and logs.
package enum Z85 {
    package static let alphabet: [UInt8] = Array(
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    /// Character → digit, 0xFF for characters outside the alphabet.
    private static let digits: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, character) in alphabet.enumerated() { table[Int(character)] = UInt8(value) }
        return table
    }()

    /// Encodes `bytes`, whose count must be a multiple of 4.
    package static func encode(_ bytes: some Collection<UInt8>) -> String {
        precondition(bytes.count % 4 == 0, "Z85 encodes whole 4-byte groups")
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count / 4 * 5)
        var value: UInt32 = 0
        var taken = 0
        for byte in bytes {
            value = value << 8 | UInt32(byte)
            taken += 1
            if taken < 4 { continue }
            var group = [UInt8](repeating: 0, count: 5)
            for i in (0..<5).reversed() {
                group[i] = alphabet[Int(value % 85)]
                value /= 85
            }
            text += group
            taken = 0
            value = 0
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Decodes Z85 text; nil when its length is not a multiple of 5, a character is outside the
    /// alphabet, or a group is larger than 32 bits.
    package static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 5 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count / 5 * 4)
        var value: UInt64 = 0
        var taken = 0
        for character in text {
            let digit = digits[Int(character)]
            if digit == 0xFF { return nil }
            value = value * 85 + UInt64(digit)
            taken += 1
            if taken < 5 { continue }
            guard value <= UInt64(UInt32.max) else { return nil }
            bytes += [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
                      UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
            taken = 0
            value = 0
        }
        return bytes
    }
}
