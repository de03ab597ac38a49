/// Request-target handling for `PATH_INFO` and `QUERY_STRING`: splitting off the query and fragment,
/// skipping an absolute-form's scheme and authority, and percent-decoding the path.
extension UwsgiEncoder {
    /// The path and query parts of a request-target, as ranges of `request`.
    struct TargetParts {
        var path: Range<Int>
        var query: Range<Int>
        /// Absolute-form with nothing after the authority (`http://h` or `http://h?q`): PATH_INFO is `/`.
        var emptyAbsolutePath: Bool
    }

    static func splitTarget(_ target: Range<Int>, in request: UnsafeRawBufferPointer) -> TargetParts {
        let bytes = self.bytes(target, in: request)
        var pathStart = 0
        var isAbsolute = false
        if let authorityStart = self.absoluteFormAuthorityStart(bytes) {
            isAbsolute = true
            pathStart = authorityStart
            while pathStart < bytes.count, !self.endsAuthority(bytes[pathStart]) {
                pathStart += 1
            }
        }
        var pathEnd = pathStart
        while pathEnd < bytes.count, bytes[pathEnd] != UInt8(ascii: "?"), bytes[pathEnd] != UInt8(ascii: "#") {
            pathEnd += 1
        }
        var queryStart = pathEnd
        var queryEnd = pathEnd
        if pathEnd < bytes.count, bytes[pathEnd] == UInt8(ascii: "?") {
            queryStart = pathEnd + 1
            queryEnd = queryStart
            while queryEnd < bytes.count, bytes[queryEnd] != UInt8(ascii: "#") {
                queryEnd += 1
            }
        }
        let base = target.lowerBound
        return TargetParts(
            path: (base + pathStart)..<(base + pathEnd),
            query: (base + queryStart)..<(base + queryEnd),
            emptyAbsolutePath: isAbsolute && pathStart == pathEnd
        )
    }

    /// For an absolute-form target (`scheme://authority...`, RFC 3986 scheme syntax), the offset just past
    /// `://`; nil for origin-form, authority-form and `*`.
    private static func absoluteFormAuthorityStart(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let first = bytes.first, self.isAlpha(first) else { return nil }
        var index = 1
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: ":") {
                break
            }
            guard
                self.isAlpha(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
            else { return nil }
            index += 1
        }
        // `index` is at the ':' (or at the end when there is none).
        guard index + 2 < bytes.count, bytes[index + 1] == UInt8(ascii: "/"), bytes[index + 2] == UInt8(ascii: "/")
        else { return nil }
        return index + 3
    }

    private static func endsAuthority(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#")
    }

    private static func isAlpha(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
    }

    /// Writes `bytes` with every valid `%XX` decoded; runs without `%` are copied in one piece.
    static func appendPercentDecoded(_ bytes: UnsafeRawBufferPointer, into out: inout UwsgiWriter) {
        var runStart = 0
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = self.hexValue(bytes[index + 1]), let low = self.hexValue(bytes[index + 2])
            else {
                index += 1
                continue
            }
            out.bytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
            out.byte(high << 4 | low)
            index += 3
            runStart = index
        }
        out.bytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<bytes.count]))
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
