/// Strict textual IPv4 / IPv6 / host-name validation for configuration values (no resolver, no Foundation).
///
/// Strict on purpose: `inet_aton` would read `010.1` as 8.0.0.1, and the original's colon counting rejected
/// `::1`. Everything here works on the UTF-8 bytes and accepts only ASCII.
enum IPAddressText {
    /// Dotted-quad IPv4: exactly four decimal octets 0-255 without leading zeros. Returns the 4 bytes.
    static func parseIPv4(_ text: some Sequence<UInt8>) -> [UInt8]? {
        var octets: [UInt8] = []
        octets.reserveCapacity(4)
        var value = 0
        var digits = 0
        for byte in text {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if digits == 1 && value == 0 { return nil }  // leading zero: octal in inet_aton
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                if value > 255 { return nil }
            case UInt8(ascii: "."):
                if digits == 0 || octets.count == 3 { return nil }
                octets.append(UInt8(value))
                value = 0
                digits = 0
            default:
                return nil
            }
        }
        if digits == 0 || octets.count != 3 { return nil }
        octets.append(UInt8(value))
        return octets
    }

    /// RFC 4291 text form (`::`, 1-4 hex digits per group, optional trailing dotted IPv4). Returns the 16 bytes.
    /// No zone: split off `%scope` first.
    static func parseIPv6(_ text: some Sequence<UInt8>) -> [UInt8]? {
        let bytes = Array(text)
        if bytes.isEmpty || bytes.count > 45 { return nil }
        var head: [UInt16] = []  // groups before "::"
        var tail: [UInt16] = []  // groups after "::"
        var sawDoubleColon = false
        var index = 0
        if bytes.starts(with: [UInt8(ascii: ":"), UInt8(ascii: ":")]) {
            sawDoubleColon = true
            index = 2
            if index == bytes.count { return [UInt8](repeating: 0, count: 16) }
        } else if bytes[0] == UInt8(ascii: ":") {
            return nil
        }
        while index < bytes.count {
            // One group: hex digits up to the next ':' (or a dotted IPv4 tail).
            var end = index
            while end < bytes.count && bytes[end] != UInt8(ascii: ":") { end += 1 }
            let group = bytes[index..<end]
            if group.contains(UInt8(ascii: ".")) {
                // Embedded IPv4 must be the last 32 bits.
                guard end == bytes.count, let v4 = parseIPv4(group)
                else { return nil }
                let high = UInt16(v4[0]) << 8 | UInt16(v4[1])
                let low = UInt16(v4[2]) << 8 | UInt16(v4[3])
                if sawDoubleColon { tail += [high, low] } else { head += [high, low] }
                index = end
                break
            }
            guard let value = hexGroup(group) else { return nil }
            if sawDoubleColon { tail.append(value) } else { head.append(value) }
            index = end
            if index == bytes.count { break }
            // At a ':'. A second one right after makes "::".
            index += 1
            if index < bytes.count && bytes[index] == UInt8(ascii: ":") {
                if sawDoubleColon { return nil }
                sawDoubleColon = true
                index += 1
                if index == bytes.count { break }
            } else if index == bytes.count {
                return nil  // trailing single ':'
            }
        }
        let total = head.count + tail.count
        if sawDoubleColon {
            if total > 7 { return nil }
        } else if total != 8 {
            return nil
        }
        let groups = head + [UInt16](repeating: 0, count: 8 - total) + tail
        var result: [UInt8] = []
        result.reserveCapacity(16)
        for group in groups {
            result.append(UInt8(group >> 8))
            result.append(UInt8(group & 0xff))
        }
        return result
    }

    private static func hexGroup(_ digits: ArraySlice<UInt8>) -> UInt16? {
        if digits.isEmpty || digits.count > 4 { return nil }
        var value: UInt16 = 0
        for byte in digits {
            let nibble: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt16(nibble)
        }
        return value
    }

    /// RFC 5952 canonical text: lowercase, no leading zeros, the longest run (first on a tie) of two or more
    /// zero groups as `::`, and `::ffff:a.b.c.d` for IPv4-mapped addresses.
    static func formatIPv6(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == 16, "an IPv6 address is 16 bytes")
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return "::ffff:\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15])"
        }
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        var bestStart = -1
        var bestLength = 1  // a single zero group is not shortened
        var runStart = -1
        for i in 0...8 {
            if i < 8 && groups[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength {
                    bestStart = runStart
                    bestLength = i - runStart
                }
                runStart = -1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 {
            return hex(0..<8)
        }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    /// An interface scope (`eth0`, `3`): 1-15 bytes (Linux IFNAMSIZ - 1) of letters, digits, `.`, `_`, `-`.
    static func isValidScope(_ text: some Collection<UInt8>) -> Bool {
        if text.isEmpty || text.count > 15 { return false }
        return text.allSatisfy {
            isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    /// A resolvable host name: dot-separated labels of letters, digits, `-` and `_` (1-63 bytes, no leading or
    /// trailing `-`), 253 bytes at most, and not all digits and dots (that would be a mistyped IPv4 address).
    static func isValidHostName(_ text: some BidirectionalCollection<UInt8>) -> Bool {
        if text.isEmpty || text.count > 253 { return false }
        if text.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") }) { return false }
        for label in text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            if label.isEmpty || label.count > 63 { return false }
            if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") { return false }
            if !label.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }) {
                return false
            }
        }
        return true
    }

    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isDigit(byte) || ((byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z"))
    }

    /// ASCII-only lowercasing; other bytes pass through.
    static func lowercased(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        bytes.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 | 0x20 : $0 }
    }

    /// A TCP port: 1-5 ASCII digits with a value in 1-65535.
    static func parsePort(_ text: some Collection<UInt8>) -> UInt16? {
        if text.isEmpty || text.count > 5 || !text.allSatisfy(isDigit) { return nil }
        let value = text.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return (1...65535).contains(value) ? UInt16(value) : nil
    }
}
