internal import BlastBeatCore

/// Writes the HTTP/1.1 response head that goes out in a `headers` message, and checks it the way the
/// gateway will.
///
/// The head is parsed back with the gateway's own `HTTPResponseHeadParser` before anything is sent, so a head
/// the gateway would refuse (and answer with 502) becomes a `BackendError` in the node instead, and the framing
/// the gateway will see is exactly the one `ResponseState` follows.
enum ResponseHead {
    /// The encoded head and what the gateway will make of it.
    struct Encoded {
        var bytes: [UInt8]
        var parsed: HTTPResponseHead
    }

    /// Encodes `HTTP/1.1 status reason`, the headers, and the blank line.
    ///
    /// - Parameters:
    ///   - contentLength: when set, `Content-Length: contentLength` is written after `headers`.
    ///   - stripFraming: leave out any `Content-Length` and `Transfer-Encoding` in `headers`.
    static func encode(
        status: Int, headers: [(String, String)], contentLength: Int? = nil, stripFraming: Bool = false
    ) throws(BackendError) -> Encoded {
        guard (100...999).contains(status) else {
            throw BackendError.invalidStatus.with("invalid HTTP status \(status) (expected 100...999)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(64 + headers.count * 32)
        out.append(contentsOf: "HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\n".utf8)
        for (name, value) in headers {
            if stripFraming, isFraming(name) { continue }
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw BackendError.invalidHeader.with("invalid header name \(String(reflecting: name))")
            }
            guard value.utf8.allSatisfy(isValueByte) else {
                throw BackendError.invalidHeader.with("invalid value for header \(name) (control byte)")
            }
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: ": ".utf8)
            out.append(contentsOf: value.utf8)
            out.append(contentsOf: "\r\n".utf8)
        }
        if let contentLength {
            out.append(contentsOf: "Content-Length: \(contentLength)\r\n".utf8)
        }
        out.append(contentsOf: "\r\n".utf8)
        let parsed: HTTPResponseHead
        do {
            parsed = try out.withUnsafeBytes { raw throws(BackendHeadError) in try HTTPResponseHeadParser.parse(raw.bytes) }
        } catch {
            throw BackendError.invalidHeader.with("the gateway would refuse this response head: \(error)")
        }
        return Encoded(bytes: out, parsed: parsed)
    }

    /// `Content-Length` or `Transfer-Encoding`, case-insensitively.
    static func isFraming(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower == "content-length" || lower == "transfer-encoding"
    }

    /// RFC 9110 token characters.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// HTAB, SP, VCHAR and obs-text: no CR, LF, NUL or other control byte.
    private static func isValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }

}
