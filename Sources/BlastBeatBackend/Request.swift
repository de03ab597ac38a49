internal import BlastBeatCore

/// One HTTP request as the gateway describes it in its `uwsgi` message: method, path, headers, environment.
///
/// The body is not part of it; it arrives afterwards through `BackendHandler.requestBody` (see `hasBody`).
/// Strings are the bytes decoded as UTF-8 with invalid sequences replaced (U+FFFD); `rawEnvironment` keeps
/// the exact bytes (e.g. a `PATH_INFO` whose `%FF` the gateway decoded into a raw 0xFF byte).
public struct Request: Sendable {
    /// Every uwsgi variable, in packet order, byte-exact.
    public let rawEnvironment: [(name: [UInt8], value: [UInt8])]
    /// The variables by name (`REQUEST_METHOD`, `PATH_INFO`, `HTTP_HOST`...); a repeated name keeps its last value.
    public let environment: [String: String]
    /// Request headers by lowercase name (`host`, `content-type`, `x-forwarded-for`...), rebuilt from the
    /// `HTTP_*` variables (`_` becomes `-`) plus `CONTENT_TYPE` and `CONTENT_LENGTH`. The gateway has already
    /// joined repeated header lines with `, ` (cookies with `; `).
    public let headers: [String: String]

    /// `REQUEST_METHOD` (`GET`, `POST`...).
    public var method: String { environment["REQUEST_METHOD"] ?? "GET" }
    /// `PATH_INFO`: the percent-decoded path.
    public var path: String { environment["PATH_INFO"] ?? "" }
    /// `QUERY_STRING`: the raw query, without the `?`.
    public var query: String { environment["QUERY_STRING"] ?? "" }
    /// `REQUEST_URI`: the raw request target.
    public var uri: String { environment["REQUEST_URI"] ?? "" }
    /// `SERVER_PROTOCOL`: `HTTP/1.1` or `HTTP/1.0`.
    public var httpVersion: String { environment["SERVER_PROTOCOL"] ?? "HTTP/1.1" }
    /// `CONTENT_LENGTH` as a number, when the request has one.
    public var contentLength: Int? { environment["CONTENT_LENGTH"].flatMap { Int($0) } }

    /// Whether `body` messages and the empty end-of-body marker follow: `CONTENT_LENGTH` > 0, or a chunked
    /// request (`HTTP_TRANSFER_ENCODING` containing `chunked`). The same rule as the gateway's.
    public var hasBody: Bool {
        if let length = contentLength, length > 0 { return true }
        return environment["HTTP_TRANSFER_ENCODING"].map { $0.lowercased().contains("chunked") } ?? false
    }

    /// The request is a WebSocket upgrade (`Upgrade: websocket`); after it, messages flow both ways.
    public var isWebSocket: Bool {
        environment["HTTP_UPGRADE"].map { $0.lowercased().contains("websocket") } ?? false
    }

    /// A header's value by name, case-insensitively (`header("Content-Type")`).
    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// Builds a request from decoded uwsgi pairs.
    public init(environment pairs: [(name: [UInt8], value: [UInt8])]) {
        rawEnvironment = pairs
        var env: [String: String] = [:]
        var headers: [String: String] = [:]
        for (name, value) in pairs {
            let key = String(decoding: name, as: UTF8.self)
            let text = String(decoding: value, as: UTF8.self)
            env[key] = text
            if key.hasPrefix("HTTP_") {
                var header = ""
                for scalar in key.unicodeScalars.dropFirst(5) {
                    header.unicodeScalars.append(scalar == "_" ? "-" : Self.asciiLowercased(scalar))
                }
                headers[header] = text
            } else if key == "CONTENT_TYPE" {
                headers["content-type"] = text
            } else if key == "CONTENT_LENGTH" {
                headers["content-length"] = text
            }
        }
        environment = env
        self.headers = headers
    }

    /// Decodes a uwsgi packet (the body of a `uwsgi` message); nil when it is malformed.
    ///
    /// Both size conventions are accepted: the standard one (the size field counts the pairs only, what this
    /// gateway sends) and the original BlastBeat's (4 + pairs), since the frame holds exactly one packet.
    public init?(uwsgi packet: [UInt8]) {
        var pairs = UwsgiDecoder.decode(packet)
        if pairs == nil, packet.count >= 4, Int(packet[1]) | Int(packet[2]) << 8 == packet.count & 0xFFFF {
            // The original's convention: rewrite the size field to the standard value and decode again.
            var fixed = packet
            let pairsLength = packet.count - 4
            fixed[1] = UInt8(truncatingIfNeeded: pairsLength)
            fixed[2] = UInt8(truncatingIfNeeded: pairsLength >> 8)
            pairs = UwsgiDecoder.decode(fixed)
        }
        guard let pairs else { return nil }
        self.init(environment: pairs.map { (name: $0.key, value: $0.value) })
    }

    private static func asciiLowercased(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        ("A"..."Z").contains(scalar) ? Unicode.Scalar(scalar.value + 32)! : scalar
    }
}
