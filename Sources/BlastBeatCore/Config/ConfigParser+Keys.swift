/// The keys of each section and how their values are read (the original's keys plus the new ones; README.md,
/// "Configuration").
extension ConfigParser.Builder {
    static let mainKeys = [
        "bind", "bind-ssl", "zmq", "zmq-engine", "ping-freq", "ping-timeout", "uid", "gid", "max-hops", "certificate", "key",
        "header-timeout", "keepalive-timeout", "body-timeout", "backend-timeout", "shutdown-timeout",
        "tls-handshake-timeout", "max-request-line", "max-header-size", "max-headers", "max-body-size",
        "max-connections", "max-retry-buffer", "max-node-queue", "max-output-buffer", "access-log", "error-log", "log-level", "daemon",
        "websocket-max-message", "websocket-idle-timeout", "websocket-compression", "curve-key", "max-instances",
        "max-in-flight", "max-client-connections", "include", "admin", "client-rate", "client-burst", "http2",
        "http2-max-streams", "workers", "max-buffered", "refusal-pause",
    ]
    static let vhostKeys = [
        "node", "bind", "bind-ssl", "certificate", "key", "default", "websocket-handshake", "websocket-protocols",
        "node-key", "max-instances",
        // Per-request limits a vhost may set for itself (README "Limits per vhost").
        "backend-timeout", "body-timeout", "max-body-size", "max-output-buffer", "websocket-max-message", "max-in-flight",
        "client-rate", "client-burst", "max-connections", "access-log", "http2",
    ]

    mutating func applyMain(key: String, value: String, line: Int) throws(ConfigError) {
        switch key {
        case "bind", "bind-ssl":
            binds.append(.init(address: try address(value, key, line), tls: key == "bind-ssl", line: line, vhost: nil))
        case "zmq":
            config.zmqEndpoint = try zmqEndpoint(value, key, line)
        case "zmq-engine":
            guard let engine = Configuration.ZMQEngine(rawValue: value.lowercased()) else {
                throw error(line, key, "expected native or libzmq, got \(value.debugDescription)")
            }
            config.zmqEngine = engine
        case "ping-freq":
            config.pingFrequency = try seconds(value, key, line)
        case "ping-timeout":
            config.pingTimeout = try seconds(value, key, line)
        case "uid":
            config.uid = try account(value, key, line, what: "a user name or uid")
        case "gid":
            config.gid = try account(value, key, line, what: "a group name or gid")
        case "max-hops":
            config.maxHops = try integer(value, key, line, minimum: 0, what: "a whole number >= 0")
        case "curve-key":
            config.curveKeyFile = try path(
                value, key, line, what: "the path of the gateway's secret certificate file (blastbeat keygen writes one)")
            config.curveKeyLine = line
        case "max-instances":
            config.maxInstances = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "workers":
            if value.lowercased() == "auto" {
                config.workers = .auto
            } else {
                let count = try integer(value, key, line, minimum: 1, what: "auto or a whole number from 1 to \(Configuration.Workers.maximum)")
                guard count <= Configuration.Workers.maximum else {
                    throw error(line, key, "expected auto or a whole number from 1 to \(Configuration.Workers.maximum), got \(value.debugDescription)")
                }
                config.workers = .count(count)
            }
            config.workersLine = line
        case "certificate":
            config.certificate = try path(value, key, line, what: "the path of a PEM certificate (chain) file")
        case "key":
            config.key = try path(value, key, line, what: "the path of a PEM private key file")
        case "header-timeout":
            config.timeouts.header = try seconds(value, key, line)
        case "keepalive-timeout":
            config.timeouts.keepAlive = try seconds(value, key, line)
        case "body-timeout":
            config.timeouts.body = try seconds(value, key, line)
        case "backend-timeout":
            config.timeouts.backend = try seconds(value, key, line)
        case "shutdown-timeout":
            config.timeouts.shutdown = try seconds(value, key, line)
        case "tls-handshake-timeout":
            config.timeouts.tlsHandshake = try seconds(value, key, line)
        case "max-request-line":
            config.limits.maxRequestLine = try byteSize(value, key, line, minimum: 1)
        case "max-header-size":
            config.limits.maxHeadBytes = try byteSize(value, key, line, minimum: 1)
        case "max-headers":
            config.limits.maxHeaderCount = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "max-body-size":
            config.limits.maxBodySize = try byteSize(value, key, line, minimum: 0)
        case "max-connections":
            config.maxConnections = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "max-retry-buffer":
            config.maxRetryBuffer = try byteSize(value, key, line, minimum: 0)
        case "max-node-queue":
            config.maxNodeQueue = try byteSize(value, key, line, minimum: 1)
        case "max-output-buffer":
            config.maxOutputBuffer = try byteSize(value, key, line, minimum: 1)
        case "max-buffered":
            config.maxBuffered = try byteSize(value, key, line, minimum: Configuration.minimumMaxBuffered)
        case "access-log":
            config.accessLog = value == "off" ? nil : try path(value, key, line, what: "a file path, - (stdout) or off")
        case "error-log":
            config.errorLog = try path(value, key, line, what: "a file path or - (standard error)")
        case "log-level":
            guard let level = Self.logLevels.first(where: { $0.description == value.lowercased() }) else {
                throw error(line, key, "expected debug, info, warning or error, got \(value.debugDescription)")
            }
            config.logLevel = level
        case "daemon":
            config.daemon = try boolean(value, key, line)
        case "websocket-max-message":
            config.webSocket.maxMessageSize = try byteSize(value, key, line, minimum: 1)
        case "websocket-idle-timeout":
            config.webSocket.idleTimeout = try seconds(value, key, line)
        case "websocket-compression":
            config.webSocket.compression = try boolean(value, key, line)
        case "max-in-flight":
            config.maxInFlight = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "max-client-connections":
            config.maxClientConnections = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "refusal-pause":
            if value.lowercased() == "off" {
                config.refusalPause = 0
            } else {
                config.refusalPause = try seconds(value, key, line)
                // Longer would hold back clients that wait the Retry-After they were told (at least 1 s) and more.
                if config.refusalPause > 10 { throw error(line, key, "expected at most 10 seconds or off, got \(value)") }
            }
        case "admin":
            config.admin = try address(value, key, line)
            config.adminLine = line
        case "http2":
            config.http2 = try boolean(value, key, line)
        case "http2-max-streams":
            config.http2MaxStreams = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
            if config.http2MaxStreams > 10_000 {
                throw error(line, key, "expected at most 10000 streams per connection, got \(value)")
            }
        default:
            if try applyMainTenantLimit(key: key, value: value, line: line) { return }
            if Self.vhostKeys.contains(key) {
                throw error(line, key, "expected in a [blastbeat:HOST] section, not in [blastbeat]")
            }
            throw error(
                line, key, "unknown key in [blastbeat], expected one of \(Self.mainKeys.joined(separator: ", "))")
        }
    }

    private static let logLevels: [LogLevel] = [.debug, .info, .warning, .error]

    mutating func applyVhost(_ index: Int, key: String, value: String, line: Int) throws(ConfigError) {
        switch key {
        case "node":
            let identity = Array(value.utf8)
            guard (1...255).contains(identity.count), identity.first != 0 else {
                throw error(
                    line, key,
                    "expected a ZeroMQ identity of 1-255 bytes not starting with a NUL byte, got \(identity.count) "
                        + "bytes \(value.debugDescription)")
            }
            if !vhosts[index].host.nodes.contains(identity) {
                vhosts[index].host.nodes.append(identity)
                vhosts[index].nodeLines.append(line)
            }
        case "node-key":
            vhosts[index].host.nodeKeys.append(try nodeKey(value, key, line))
        case "max-instances":
            vhosts[index].host.maxInstances = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "backend-timeout":
            vhosts[index].backendTimeout = try seconds(value, key, line)
        case "body-timeout":
            vhosts[index].bodyTimeout = try seconds(value, key, line)
        case "max-body-size":
            vhosts[index].maxBodySize = try byteSize(value, key, line, minimum: 0)
        case "max-output-buffer":
            vhosts[index].maxOutputBuffer = try byteSize(value, key, line, minimum: 1)
        case "websocket-max-message":
            vhosts[index].webSocketMaxMessage = try byteSize(value, key, line, minimum: 1)
        case "max-in-flight":
            vhosts[index].maxInFlight = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
        case "http2":
            vhosts[index].http2 = try boolean(value, key, line)
        case "bind", "bind-ssl":
            binds.append(
                .init(address: try address(value, key, line), tls: key == "bind-ssl", line: line, vhost: index))
        case "certificate":
            vhosts[index].host.certificate = try path(
                value, key, line, what: "the path of a PEM certificate (chain) file")
            vhosts[index].certificateLine = line
        case "key":
            vhosts[index].host.key = try path(value, key, line, what: "the path of a PEM private key file")
            vhosts[index].keyLine = line
        case "default":
            vhosts[index].host.isDefault = try boolean(value, key, line)
            vhosts[index].defaultLine = line
        case "websocket-handshake":
            switch value.lowercased() {
            case "gateway": vhosts[index].host.webSocketHandshake = .gateway
            case "backend": vhosts[index].host.webSocketHandshake = .backend
            default: throw error(line, key, "expected gateway or backend, got \(value.debugDescription)")
            }
        case "websocket-protocols":
            let names = value.split(separator: ",", omittingEmptySubsequences: false).map {
                String($0.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
            }
            guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(HTTPSyntax.isTokenByte) }) else {
                throw error(line, key, "expected a comma-separated list of subprotocol tokens, got \(value.debugDescription)")
            }
            vhosts[index].host.webSocketProtocols = names
        default:
            if try applyVhostTenantLimit(index, key: key, value: value, line: line) { return }
            if Self.mainKeys.contains(key) {
                throw error(line, key, "expected in the [blastbeat] section, not in a vhost section")
            }
            throw error(
                line, key,
                "unknown key in [blastbeat:\(vhosts[index].host.name)], expected one of "
                    + Self.vhostKeys.joined(separator: ", "))
        }
    }
}

// MARK: - Values

extension ConfigParser.Builder {
    func address(_ value: String, _ key: String, _ line: Int) throws(ConfigError) -> ListenAddress {
        guard let address = ListenAddress.parse(value) else {
            throw error(line, key, "expected ADDRESS:PORT with a port in 1-65535, got \(value.debugDescription)")
        }
        return address
    }

    /// `tcp://HOST:PORT` (HOST may be `*`, an interface or `[IPV6]`), `ipc://PATH` or `inproc://NAME`: the
    /// transports a ROUTER can bind and a backend can connect to. The host itself is left to libzmq.
    func zmqEndpoint(_ value: String, _ key: String, _ line: Int) throws(ConfigError) -> String {
        let expected = "expected tcp://HOST:PORT with a port in 1-65535, ipc://PATH or inproc://NAME"
        if value.hasPrefix("tcp://") {
            let rest = value.utf8.dropFirst("tcp://".count)
            if let colon = rest.lastIndex(of: UInt8(ascii: ":")), colon != rest.startIndex,
                IPAddressText.parsePort(rest[rest.index(after: colon)...]) != nil
            {
                return value
            }
        } else if value.hasPrefix("ipc://") || value.hasPrefix("inproc://") {
            let rest = value.drop(while: { $0 != "/" }).dropFirst(2)
            if !rest.isEmpty && !rest.contains(" ") {
                return value
            }
        }
        throw error(line, key, "\(expected), got \(value.debugDescription)")
    }

    /// A decimal number of seconds greater than 0: `3`, `0.5`, `2.25`. No exponent, sign, `inf` or `nan`
    /// (the original's `atof` turned garbage into 0, which disabled pinging).
    func seconds(_ value: String, _ key: String, _ line: Int) throws(ConfigError) -> Double {
        let parts = value.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        let wellFormed =
            (1...2).contains(parts.count) && value.utf8.count <= 20
            && parts.allSatisfy { $0.allSatisfy(IPAddressText.isDigit) } && !parts.allSatisfy(\.isEmpty)
            && !(parts.count == 2 && parts[1].isEmpty)
        guard wellFormed, let seconds = Double(value), seconds > 0 else {
            throw error(
                line, key, "expected a number of seconds greater than 0 (like 3 or 0.5), got \(value.debugDescription)")
        }
        return seconds
    }

    /// ASCII digits only, no sign; `what` describes the range for the message.
    func integer(_ value: String, _ key: String, _ line: Int, minimum: Int, what: String) throws(ConfigError) -> Int {
        guard let number = Self.digits(value.utf8[...]), number >= minimum else {
            throw error(line, key, "expected \(what), got \(value.debugDescription)")
        }
        return number
    }

    /// Bytes: digits with an optional suffix `k`, `m` or `g` (either case) for KiB, MiB, GiB.
    func byteSize(_ value: String, _ key: String, _ line: Int, minimum: Int) throws(ConfigError) -> Int {
        var digits = value.utf8[...]
        var multiplier = 1
        switch digits.last {
        case UInt8(ascii: "k"), UInt8(ascii: "K"): multiplier = 1 << 10
        case UInt8(ascii: "m"), UInt8(ascii: "M"): multiplier = 1 << 20
        case UInt8(ascii: "g"), UInt8(ascii: "G"): multiplier = 1 << 30
        default: break
        }
        if multiplier != 1 {
            digits = digits.dropLast()
        }
        // The minimum applies to the size, not to the digits before its unit (`32m` is 33,554,432 bytes).
        guard let number = Self.digits(digits) else {
            throw error(
                line, key,
                "expected a size in bytes >= \(minimum), optionally with k, m or g, got \(value.debugDescription)")
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow else {
            throw error(line, key, "expected a size in bytes that fits in 63 bits, got \(value.debugDescription)")
        }
        guard bytes >= minimum else {
            throw error(
                line, key,
                "expected a size in bytes >= \(minimum), optionally with k, m or g, got \(value.debugDescription)")
        }
        return bytes
    }

    /// 1-18 ASCII digits (so the value cannot overflow).
    private static func digits(_ text: Substring.UTF8View) -> Int? {
        guard (1...18).contains(text.count), text.allSatisfy(IPAddressText.isDigit) else { return nil }
        return text.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }

    /// `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, in any case.
    /// `NODE KEY`: a node name, blanks, then 40 Z85 characters (a key) or anything else (a certificate path).
    func nodeKey(_ value: String, _ key: String, _ line: Int) throws(ConfigError) -> NodeKey {
        let parts = value.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 2 else {
            throw error(line, key, "expected NODE KEY (a node name, then a 40-character Z85 public key or the path of a public certificate file), got \(value.debugDescription)")
        }
        let node = Array(parts[0].utf8)
        guard node.count <= 255, node.first != 0, !node.contains(NodeKey.instanceSeparator) else {
            throw error(line, key, "expected a node name as in a node line (without #INSTANCE: a key for NODE serves NODE#anything), got \(String(parts[0]).debugDescription)")
        }
        let text = parts[1].drop(while: { $0 == " " || $0 == "\t" })
        if let curveKey = CurveKey(z85: text) { return NodeKey(node: node, source: .key(curveKey), line: line) }
        if text.utf8.count == 40 && !text.contains("/") && !text.contains(".") {
            throw error(line, key, "\(String(text).debugDescription) is not a valid Z85 key (40 characters of the Z85 alphabet) nor a file path")
        }
        return NodeKey(node: node, source: .file(try path(String(text), key, line, what: "a certificate file path")), line: line)
    }

    func boolean(_ value: String, _ key: String, _ line: Int) throws(ConfigError) -> Bool {
        switch value.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw error(line, key, "expected true, false, yes, no, on, off, 1 or 0, got \(value.debugDescription)")
        }
    }

    /// A non-empty path; whether it exists is checked by the server when it opens it.
    func path(_ value: String, _ key: String, _ line: Int, what: String) throws(ConfigError) -> String {
        guard !value.isEmpty else {
            throw error(line, key, "expected \(what), got an empty value")
        }
        return value
    }

    /// A user or group: a name, or a number that fits in 32 bits. Resolving it is the server's job.
    func account(_ value: String, _ key: String, _ line: Int, what: String) throws(ConfigError) -> String {
        let valid =
            if value.utf8.allSatisfy(IPAddressText.isDigit) {
                Self.digits(value.utf8[...]).map { $0 <= Int(UInt32.max) } ?? false
            } else {
                !value.utf8.contains(where: { $0 <= 0x20 || $0 == UInt8(ascii: ":") || $0 == 0x7f })
            }
        guard valid, !value.isEmpty else {
            throw error(line, key, "expected \(what), got \(value.debugDescription)")
        }
        return value
    }
}
