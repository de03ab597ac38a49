/// A `[blastbeat:NAME]` section: a Host name, the backend identities allowed to serve it, and its TLS files.
package struct VirtualHost: Sendable, Equatable {
    /// Section text after "blastbeat:", verbatim (case kept; sections merge only on an exact match).
    package var name: String
    /// Host part, ASCII-lowercased: "example.com"; "::1" for "[::1]:8080" and for "::1".
    package var hostName: [UInt8]
    /// Port part if the name has one. Clients omit the scheme's default port from Host, so a vhost meant for
    /// port 80 or 443 is named without one.
    package var port: UInt16?
    /// Node identities in config order, duplicates removed; each 1-255 bytes, not starting with NUL.
    package var nodes: [[UInt8]]
    /// `default = true`: answers Hosts no other vhost on the listener matches.
    package var isDefault: Bool
    /// PEM paths; after parsing, the `[blastbeat]` default when the section sets neither.
    package var certificate: String?
    package var key: String?
    /// Lines of the `certificate` and `key` in force: the section's own, or `[blastbeat]`'s when it inherits
    /// them (0 when there are none), so an unreadable or mismatched file is reported at the line that names it.
    package var certificateLine = 0
    package var keyLine = 0
    /// Line of the (first) section header.
    package var line: Int
    /// Who answers a WebSocket upgrade: the gateway at once (the original's behaviour), or the backend.
    package var webSocketHandshake: WebSocketHandshakeMode = .gateway
    /// Subprotocols the gateway may select (in gateway mode), matched against the client's offer in its order.
    package var webSocketProtocols: [String] = []
    /// `node-key` lines: which CURVE keys may claim which of this vhost's nodes.
    package var nodeKeys: [NodeKey] = []
    /// `max-instances` for this vhost's nodes, when it sets its own.
    package var maxInstances: Int?
    /// `http2`: whether requests for this vhost are served over HTTP/2 (`[blastbeat]`'s setting unless the
    /// section sets its own). A TLS client naming it by SNI is not offered `h2`; an HTTP/2 stream routed
    /// to it anyway (prior knowledge, or a connection opened for another name) is answered 421.
    package var http2 = true
    /// The per-request limits of this vhost's requests: its own, or `[blastbeat]`'s where it sets none.
    package var limits = VhostLimits()
    /// Removed by a reload (ConfigReload.swift): matched by no Host and served by no listener, kept in its
    /// place so the requests in flight for it keep their vhost index.
    package var isRetired = false
    /// Where this vhost's requests are logged: `[blastbeat]`'s `access-log`, or the section's own.
    package var accessLog: VhostAccessLog = .inherited
    package var accessLogLine = 0

    package init(
        name: String,
        hostName: [UInt8],
        port: UInt16? = nil,
        nodes: [[UInt8]] = [],
        isDefault: Bool = false,
        certificate: String? = nil,
        key: String? = nil,
        line: Int = 0
    ) {
        self.name = name
        self.hostName = hostName
        self.port = port
        self.nodes = nodes
        self.isDefault = isDefault
        self.certificate = certificate
        self.key = key
        self.line = line
    }

    /// Splits a section name into host and port.
    ///
    /// Forms: `host`, `host:port`, `[v6]`, `[v6]:port`, and a bare `v6` (two or more colons, no port; the
    /// original's unbracketed style cannot carry one). `host` is a reg-name as in RFC 3986 §3.2.2 (letters,
    /// digits, `-._~!$&'()*+,;=%`), so every Host a client can send can be named; IPv6 must be a valid address
    /// without zone. Returns nil when the name is none of these (including the empty name, which the original
    /// accepted and which could only ever match an empty Host).
    static func splitName(_ name: String) -> (host: [UInt8], port: UInt16?)? {
        let bytes = Array(name.utf8)
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            let inner = bytes[1..<close]
            guard IPAddressText.parseIPv6(inner) != nil else { return nil }
            let rest = bytes[(close + 1)...]
            if rest.isEmpty {
                return (IPAddressText.lowercased(inner), nil)
            }
            guard rest.first == UInt8(ascii: ":"), let port = IPAddressText.parsePort(rest.dropFirst()) else {
                return nil
            }
            return (IPAddressText.lowercased(inner), port)
        }
        let colons = bytes.count(where: { $0 == UInt8(ascii: ":") })
        if colons >= 2 {
            guard IPAddressText.parseIPv6(bytes) != nil else { return nil }
            return (IPAddressText.lowercased(bytes), nil)
        }
        var host = bytes[...]
        var port: UInt16?
        if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            host = bytes[..<colon]
            guard let parsed = IPAddressText.parsePort(bytes[(colon + 1)...]) else { return nil }
            port = parsed
        }
        guard !host.isEmpty, host.allSatisfy(isRegNameByte) else { return nil }
        return (IPAddressText.lowercased(host), port)
    }

    private static func isRegNameByte(_ byte: UInt8) -> Bool {
        if IPAddressText.isAlphanumeric(byte) { return true }
        switch byte {
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "!"),
            UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
            UInt8(ascii: "%"):
            return true
        default:
            return false
        }
    }
}

/// A vhost's `access-log`: none of its own (`[blastbeat]`'s applies), `off`, or a path (`-`: standard output).
package enum VhostAccessLog: Sendable, Equatable {
    case inherited
    case off
    case file(String)
}

/// The limits that apply to one vhost's requests, so one tenant's settings (a slow backend's long timeout,
/// large uploads) are not every tenant's. Each is the vhost section's own value, or `[blastbeat]`'s.
package struct VhostLimits: Sendable, Equatable {
    /// `backend-timeout`, seconds: how long a request waits for the node's response head (then 504).
    package var backendTimeout: Double = Timeouts().backend
    /// `body-timeout`, seconds: the longest pause inside a request body, or in writing a response.
    package var bodyTimeout: Double = Timeouts().body
    /// `max-body-size`, bytes: a larger request body gets 413.
    package var maxBodySize: Int = HTTPLimits().maxBodySize
    /// `max-output-buffer`, bytes: response bytes queued for one client before the client counts as too slow.
    package var maxOutputBuffer: Int = 64 << 20
    /// `websocket-max-message`, bytes: the largest WebSocket message either way.
    package var webSocketMaxMessage: Int = WebSocketSettings().maxMessageSize
    /// `max-in-flight`: requests and open WebSockets the vhost's nodes hold at once; past it a request gets
    /// 503 with Retry-After at once. Nil: no limit of its own (the nodes' queues bound it).
    package var maxInFlight: Int?
    /// `client-rate`, requests per second per client prefix (see ClientPrefix), and `client-burst`, the requests
    /// a client may send at once; past them a request gets 429 with Retry-After. Nil: no rate limit.
    package var clientRate: Double?
    package var clientBurst: Int = 1
    /// `max-connections` of the vhost: client connections whose current (or, when idle, last) request is for
    /// it; past it a request that would bring another connection to the vhost gets 503 and the close. Nil: only
    /// `[blastbeat]`'s total applies.
    package var maxConnections: Int?

    package init() {}
}
