/// The validated gateway configuration: everything the server needs from the ini file, already checked.
///
/// Built only by `ConfigParser.parse(_:file:)`, which guarantees: at least one listener; a `zmq` endpoint;
/// every vhost has 1+ nodes; no address is both plain and TLS (the original silently kept the first); at most
/// one `default` vhost per listener; every vhost served on a TLS listener has a certificate and key (its own or
/// the `[blastbeat]` default); `pingTimeout > pingFrequency`; all numbers in range. The server can therefore
/// use it without re-checking.
package struct Configuration: Sendable, Equatable {
    /// `zmq-engine = native | libzmq`.
    package enum ZMQEngine: String, Sendable, Equatable {
        /// The gateway speaks ZMTP 3.1 itself, on its event loop: no thread hand-offs (the default).
        case native
        /// A libzmq ROUTER socket: every transport libzmq has, at the cost of its I/O thread.
        case libzmq
    }

    /// The file name, for messages.
    package var file: String
    /// Every file read (the main one and those `include` named) and which positions are whose lines: the
    /// `…Line` properties below hold positions, turned into FILE:LINE by `error(at:key:_:)`.
    package var sources = ConfigSources()
    /// In order of first appearance in the file.
    package var listeners: [ListenerConfig]
    /// In order of first appearance in the file; Host matching tries them in this order.
    package var vhosts: [VirtualHost]
    /// The endpoint the ROUTER binds (`tcp://…`, `ipc://…`; `inproc://…` and interface names only with libzmq).
    package var zmqEndpoint: String
    /// `zmq-engine`: who speaks ZMTP for the ROUTER. With `.native` (the default) `zmqEndpoint` is guaranteed to
    /// parse as a `ZMTPEndpoint`.
    package var zmqEngine: ZMQEngine = .native
    /// `ping-freq`, seconds between pings to every node.
    package var pingFrequency: Double = 3.0
    /// `ping-timeout`, seconds: a node silent this long is dead. Always greater than `pingFrequency`.
    package var pingTimeout: Double = 10.0
    /// `max-hops`: most `retry` messages accepted per request.
    package var maxHops: Int = 10
    /// `curve-key`: the gateway's secret certificate file. Set, every backend must complete CURVE and
    /// prove a key its vhosts list for the node it claims (`node-key`).
    package var curveKeyFile: String?
    package var curveKeyLine = 0
    /// `workers = N | auto` (README.md, "Worker processes").
    package enum Workers: Sendable, Equatable {
        /// One per CPU the process may run on (sched_getaffinity), resolved at start.
        case auto
        case count(Int)

        /// Most worker processes: the worker index travels in one byte of every session id (WorkerMesh.swift).
        package static let maximum = 64
    }

    /// `workers`: how many serving processes share the listeners and the ROUTER endpoint.
    package var workers: Workers = .auto
    package var workersLine = 0
    /// `max-instances`: most `NAME#INSTANCE` processes per node (a vhost may set its own).
    package var maxInstances: Int = 64
    /// `uid` / `gid`: a name or number, nil when not set (the server then uses nobody/nogroup when root).
    /// A name that does not resolve must be a startup error in the server, never uid 0 (the original fell back
    /// to 0).
    package var uid: String?
    package var gid: String?
    /// `[blastbeat]` `certificate` / `key`: the default TLS certificate. Already copied into every vhost that
    /// has none of its own; the server needs it directly only for a TLS listener that serves no vhost.
    package var certificate: String?
    package var key: String?
    /// Lines of `[blastbeat]`'s `certificate` and `key` (0 when not set), for errors about their files.
    package var certificateLine = 0
    package var keyLine = 0
    package var limits: HTTPLimits
    package var timeouts: Timeouts
    /// `max-connections`: open client connections across all listeners.
    package var maxConnections: Int = 10000
    /// `max-client-connections`: open connections from one client address; nil = a tenth of `maxConnections`
    /// (at least 16), see `clientConnectionLimit`.
    package var maxClientConnections: Int?

    /// Connections one client address may hold: enough for a building behind one NAT address, never the whole
    /// gateway.
    package var clientConnectionLimit: Int { maxClientConnections ?? max(16, maxConnections / 10) }
    /// `refusal-pause`, seconds: after a refusal by a vhost's limit the connection's next request is read after
    /// between half of this and all of it, and a new connection over its address's share at `max-connections`
    /// is held that long before its reset (README "Under a flood"); 0 (`off`): at once.
    package var refusalPause: Double = 1
    /// `http2`: HTTP/2 on every listener (ALPN `h2` with TLS, prior-knowledge h2c without); the default
    /// of each vhost's own `http2`.
    package var http2 = true
    /// `http2-max-streams`: concurrent streams one HTTP/2 connection may open (SETTINGS_MAX_CONCURRENT_STREAMS).
    package var http2MaxStreams = 100
    /// `max-in-flight`: the default for every vhost's own limit (`VhostLimits.maxInFlight`); nil = none.
    package var maxInFlight: Int?
    /// `client-rate` and `client-burst`: the default for every vhost's own (`VhostLimits.clientRate`).
    package var clientRate: Double?
    package var clientBurst: Int?
    /// `max-retry-buffer`: request body bytes kept for replay on retry.
    package var maxRetryBuffer: Int = 64 << 10
    /// `max-node-queue`: request body bytes handed to ZeroMQ for one node and not yet sent to it;
    /// past it the gateway stops reading request bodies bound for that node until it catches up.
    package var maxNodeQueue: Int = 64 << 20
    /// `max-output-buffer`: per-connection pending response bytes before the backend is no longer read for it.
    package var maxOutputBuffer: Int = 64 << 20
    /// `max-buffered`: the memory budget, bytes the gateway holds for clients (response bytes queued for client
    /// connections and HTTP/2 streams) and for nodes (client data not yet written to them) together. The
    /// default keeps a gateway with the default `max-output-buffer` at a few hundred MiB whatever its clients
    /// and backends do, while one fast session still gets a full `max-output-buffer` (README, "Memory budget").
    package var maxBuffered: Int = 256 << 20
    /// Below this a budget could not hold one session's minimum share (`BufferBudget.minimumShare`) for more
    /// than a handful of sessions.
    package static let minimumMaxBuffered = 1 << 20
    /// `access-log`: a path, `-` for stdout; nil when `off`.
    package var accessLog: String? = "-"
    /// `error-log`: the leveled log's file, `-` for standard error.
    package var errorLog: String = "-"
    /// `log-level`.
    package var logLevel: LogLevel = .info
    /// `daemon`: accepted so the original's sample file loads, and ignored (the gateway never daemonizes; run it
    /// under a service manager).
    package var daemon: Bool = false
    /// WebSocket limits and features shared by every vhost.
    package var webSocket = WebSocketSettings()
    /// `admin`: where the admin listener (`GET /metrics`, `GET /healthz`) binds; nil = none. Never the address
    /// (or, through a wildcard, the port) of a public listener.
    package var admin: ListenAddress?
    package var adminLine = 0

    package init(
        file: String,
        listeners: [ListenerConfig] = [],
        vhosts: [VirtualHost] = [],
        zmqEndpoint: String,
        limits: HTTPLimits = HTTPLimits(),
        timeouts: Timeouts = Timeouts()
    ) {
        self.file = file
        self.listeners = listeners
        self.vhosts = vhosts
        self.zmqEndpoint = zmqEndpoint
        self.limits = limits
        self.timeouts = timeouts
    }

    /// A `ConfigError` about the key stored at `position` (a `…Line` property), in the file that holds it.
    package func error(at position: Int, key: String?, _ message: String) -> ConfigError {
        sources.segments.isEmpty
            ? ConfigError(file: file, line: position, key: key, message: message)
            : sources.error(at: position, key: key, message)
    }

    /// The largest `max-body-size` of any vhost: what the request head parser admits before the Host is known
    /// (each vhost's own limit is checked once the request is routed).
    package var largestBodySize: Int {
        vhosts.reduce(limits.maxBodySize) { max($0, $1.limits.maxBodySize) }
    }

    /// The largest `websocket-max-message` and `max-output-buffer` of any vhost, for sizing what a backend
    /// message may be.
    package var largestBackendMessage: Int {
        vhosts.reduce(max(maxOutputBuffer, webSocket.maxMessageSize)) {
            max($0, $1.limits.maxOutputBuffer, $1.limits.webSocketMaxMessage)
        }
    }

    /// Indices of the vhosts served on listener `i` (dedicated ones, or every vhost not attached to any dedicated
    /// listener when shared), ascending, i.e. in configuration order. Retired vhosts (see
    /// `VirtualHost.isRetired`) are served nowhere.
    package func vhostIndices(forListener i: Int) -> [Int] {
        if let dedicated = listeners[i].dedicatedVhosts {
            return dedicated.filter { !vhosts[$0].isRetired }
        }
        var hasDedicated = [Bool](repeating: false, count: vhosts.count)
        for listener in listeners {
            for index in listener.dedicatedVhosts ?? [] {
                hasDedicated[index] = true
            }
        }
        return vhosts.indices.filter { !hasDedicated[$0] && !vhosts[$0].isRetired }
    }
}

/// One listening socket.
package struct ListenerConfig: Sendable, Equatable {
    package var address: ListenAddress
    /// Declared with `bind-ssl`.
    package var tls: Bool
    /// Line of its first `bind` / `bind-ssl`.
    package var line: Int
    /// nil = shared listener (declared in [blastbeat]); otherwise indices into Configuration.vhosts it is
    /// dedicated to, ascending. Several vhosts may dedicate the same address; one vhost may have several.
    package var dedicatedVhosts: [Int]?

    package init(address: ListenAddress, tls: Bool, line: Int, dedicatedVhosts: [Int]? = nil) {
        self.address = address
        self.tls = tls
        self.line = line
        self.dedicatedVhosts = dedicatedVhosts
    }
}

/// Server-side timeouts, in seconds; each is greater than 0 (the original had none).
package struct Timeouts: Sendable, Equatable {
    /// `header-timeout`: from the first byte of a request (or accept) to the end of its head.
    package var header = 10.0
    /// `keepalive-timeout`: idle time between requests on a kept-alive connection.
    package var keepAlive = 60.0
    /// `body-timeout`: max idle gap while reading a request body.
    package var body = 60.0
    /// `backend-timeout`: wait for the first response byte and gaps between backend messages.
    package var backend = 60.0
    /// `shutdown-timeout`: how long a graceful shutdown waits for open requests.
    package var shutdown = 10.0
    /// `tls-handshake-timeout`.
    package var tlsHandshake = 10.0

    package init() {}
}

/// `log-level`: messages below the configured level are dropped.
package enum LogLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case debug
    case info
    case warning
    case error

    package static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// The spelling used in the ini file.
    package var description: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }
}

/// Who answers a WebSocket upgrade request.
package enum WebSocketHandshakeMode: Sendable, Equatable {
    /// The gateway sends 101 as soon as the request is forwarded (the original's behaviour).
    case gateway
    /// The gateway forwards the request and waits: a `headers` reply with status 101 accepts the
    /// upgrade (its Sec-WebSocket-Protocol is used), any other status refuses it.
    case backend
}

/// WebSocket settings of the `[blastbeat]` section.
package struct WebSocketSettings: Sendable, Equatable {
    /// `websocket-max-message`: largest message (after reassembly and decompression) → close 1009.
    package var maxMessageSize: Int = 16 << 20
    /// `websocket-idle-timeout`: a connection silent this long is pinged, and closed (1001) if
    /// still silent after another half of it.
    package var idleTimeout: Double = 60
    /// `websocket-compression`: offer permessage-deflate (RFC 7692).
    package var compression: Bool = true

    package init() {}
}
