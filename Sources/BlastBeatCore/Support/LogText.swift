/// Bytes from the network (identities, ZMTP properties, message types) made safe for a log line: printable
/// ASCII stays, everything else — and the backslash, so the escape cannot be faked — becomes `\xHH`. No peer
/// can then end a log line, forge the next one, or send terminal escape sequences. The one escaping function
/// every log call with network bytes goes through.
package enum LogText {
    /// At most `limit` bytes, then "...".
    package static func escaped(_ bytes: some Collection<UInt8>, limit: Int = 64) -> String {
        var text = ""
        for b in bytes.prefix(limit) {
            if b >= 0x20 && b < 0x7F && b != 0x5C {
                text.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                text += "\\x" + (b < 0x10 ? "0" : "") + String(b, radix: 16)
            }
        }
        return bytes.count > limit ? text + "..." : text
    }

    /// `escaped` in double quotes (a quote inside stays: the line is still one line).
    package static func quoted(_ bytes: some Collection<UInt8>, limit: Int = 64) -> String {
        "\"" + escaped(bytes, limit: limit) + "\""
    }

    /// `quoted` for bytes lent as a span (a backend's identity).
    package static func quoted(_ bytes: RawSpan, limit: Int = 64) -> String {
        bytes.withUnsafeBytes { quoted($0, limit: limit) }
    }
}
