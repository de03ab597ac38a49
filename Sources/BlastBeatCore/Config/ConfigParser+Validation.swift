/// Checks that need the whole file: listener distribution (README.md, "Configuration"), certificates, defaults,
/// ranges.
extension ConfigParser.Builder {
    /// Turns what was read into a `Configuration`, or reports the first problem.
    ///
    /// Listener rules (the original crashed at startup on a vhost with two dedicated listeners, and silently
    /// kept the first kind of an address given with both `bind` and `bind-ssl`):
    /// * listeners are identified by socket address (`*:80` and `0.0.0.0:80` are one); repeating an address
    ///   with the same kind in the same role just refers to the existing listener;
    /// * an address used with both `bind` and `bind-ssl` is an error (the original silently kept the first);
    /// * an address both in `[blastbeat]` and in a vhost is an error, reported at the vhost's line. The original
    ///   ignored such a vhost `bind` (the vhost was served on the shared listeners anyway), unless the vhost also
    ///   had a dedicated listener, in which case it silently vanished from the shared one;
    /// * several vhosts may dedicate the same address, and one vhost may have several dedicated listeners;
    /// * a vhost served on no listener (no bind of its own, and no shared listener) is an error.
    ///
    /// Vhost rules: at least one `node`; `certificate` and `key` set together; a vhost with neither gets the
    /// `[blastbeat]` pair; every vhost on a TLS listener has one; per listener at most one `default = true`
    /// and no two vhosts with the same host and port (the later one could never match: Host ignores case).
    mutating func finish() throws(ConfigError) -> Configuration {
        if config.zmqEndpoint.isEmpty {
            throw error(
                0, "zmq",
                "expected zmq = ENDPOINT in [blastbeat], the ROUTER address backends connect to "
                    + "(like tcp://127.0.0.1:5000)")
        }
        if config.zmqEngine == .native && ZMTPEndpoint.parse(config.zmqEndpoint) == nil {
            throw error(
                mainKeyLines["zmq"] ?? 0, "zmq",
                "expected tcp://ADDRESS:PORT (ADDRESS being *, an IP address or localhost) or ipc://PATH for the "
                    + "built-in ZMTP engine, got \(config.zmqEndpoint.debugDescription); add zmq-engine = libzmq "
                    + "for other libzmq endpoints")
        }
        if config.zmqEngine == .libzmq, case .count(let count) = config.workers, count > 1 {
            throw error(
                config.workersLine, "workers",
                "expected 1 (or auto) with zmq-engine = libzmq: libzmq's ROUTER socket cannot be shared by worker "
                    + "processes; use the native engine for several workers")
        }
        config.listeners = try listeners()
        if config.listeners.isEmpty {
            throw error(
                0, "bind",
                "expected at least one bind or bind-ssl (in [blastbeat] for a listener shared by all vhosts, or in "
                    + "a vhost section for a dedicated one)")
        }
        for draft in vhosts where draft.host.nodes.isEmpty {
            throw error(
                draft.host.line, nil,
                "vhost \(draft.host.name) has no node; expected at least one node = IDENTITY in its section")
        }
        try checkCertificatePairs()
        try checkNodeKeys()
        config.certificateLine = mainKeyLines["certificate"] ?? 0
        config.keyLine = mainKeyLines["key"] ?? 0
        config.vhosts = vhosts.map { draft in
            var host = draft.host
            host.limits.backendTimeout = draft.backendTimeout ?? config.timeouts.backend
            host.limits.bodyTimeout = draft.bodyTimeout ?? config.timeouts.body
            host.limits.maxBodySize = draft.maxBodySize ?? config.limits.maxBodySize
            host.limits.maxOutputBuffer = draft.maxOutputBuffer ?? config.maxOutputBuffer
            host.limits.webSocketMaxMessage = draft.webSocketMaxMessage ?? config.webSocket.maxMessageSize
            host.limits.maxInFlight = draft.maxInFlight ?? config.maxInFlight
            resolveTenantLimits(draft, into: &host.limits)
            host.http2 = draft.http2 ?? config.http2
            if host.certificate == nil && host.key == nil {
                host.certificate = config.certificate
                host.key = config.key
                host.certificateLine = config.certificateLine
                host.keyLine = config.keyLine
            } else {
                host.certificateLine = draft.certificateLine
                host.keyLine = draft.keyLine
            }
            return host
        }
        var isServed = [Bool](repeating: false, count: vhosts.count)
        for index in config.listeners.indices {
            try checkListener(index)
            for vhost in config.vhostIndices(forListener: index) {
                isServed[vhost] = true
            }
        }
        if let unserved = isServed.firstIndex(of: false) {
            let host = config.vhosts[unserved]
            throw error(
                host.line, nil,
                "vhost \(host.name) is served on no listener: expected a bind or bind-ssl in its section, or a "
                    + "shared one in [blastbeat] (every listener is dedicated to other vhosts)")
        }
        try checkRanges()
        try checkAdminAddress()
        try checkTenantLimits()
        config.sources = sources
        return config
    }

    /// The admin listener serves the gateway's own state: it must not be reachable where clients are, so it
    /// may not share a public listener's address, nor its port where either address is a wildcard (the
    /// second bind would fail, or would take the first one's connections).
    private func checkAdminAddress() throws(ConfigError) {
        guard let admin = config.admin?.socketIdentity else { return }
        for listener in config.listeners {
            let address = listener.address.socketIdentity
            guard address.port == admin.port else { continue }
            if address == admin || address.isWildcard || admin.isWildcard {
                throw error(
                    config.adminLine, "admin",
                    "expected an address no public listener uses, but \(listener.address) is the "
                        + "\(listener.tls ? "bind-ssl" : "bind") at line \(listener.line); give the admin listener a port of "
                        + "its own (like 127.0.0.1:9100)")
            }
        }
    }

    /// `node-key` lines name nodes of their vhost and need `curve-key`; with `curve-key` every node needs a
    /// key in some vhost that lists it (else no backend could ever serve it).
    private func checkNodeKeys() throws(ConfigError) {
        var keyed = Set<[UInt8]>()
        for draft in vhosts {
            for nodeKey in draft.host.nodeKeys {
                if config.curveKeyFile == nil {
                    throw error(nodeKey.line, "node-key", "node-key needs curve-key in [blastbeat] (the gateway's own key pair): without it backends are not authenticated")
                }
                guard draft.host.nodes.contains(nodeKey.node) else {
                    throw error(nodeKey.line, "node-key", "vhost \(draft.host.name) has no node \(ConfigParser.string(nodeKey.node).debugDescription); expected one of its node lines")
                }
                keyed.insert(nodeKey.node)
            }
        }
        guard config.curveKeyFile != nil else { return }
        for draft in vhosts {
            for (node, line) in zip(draft.host.nodes, draft.nodeLines) where !keyed.contains(node) {
                throw error(line, "node", "node \(ConfigParser.string(node).debugDescription) has no node-key; with curve-key set every node needs one (node-key = \(ConfigParser.string(node)) KEY), or no backend can serve it")
            }
        }
    }

    /// Merges the bind lines into listeners by socket address, in order of first appearance.
    private func listeners() throws(ConfigError) -> [ListenerConfig] {
        var listeners: [ListenerConfig] = []
        var indexByAddress: [ListenAddress: Int] = [:]
        for bind in binds {
            let identity = bind.address.socketIdentity
            guard let existing = indexByAddress[identity] else {
                indexByAddress[identity] = listeners.count
                listeners.append(
                    ListenerConfig(
                        address: bind.address, tls: bind.tls, line: bind.line,
                        dedicatedVhosts: bind.vhost.map { [$0] }))
                continue
            }
            let listener = listeners[existing]
            if listener.tls != bind.tls {
                let other = listener.tls ? "bind-ssl" : "bind"
                throw error(
                    bind.line, bind.key,
                    "expected an address used either for plain HTTP or for TLS, but \(bind.address) is already "
                        + "declared with \(other) at \(place(listener.line))")
            }
            switch (listener.dedicatedVhosts, bind.vhost) {
            case (nil, nil):
                break
            case (var dedicated?, let vhost?):
                if !dedicated.contains(vhost) {
                    dedicated.append(vhost)
                    dedicated.sort()
                    listeners[existing].dedicatedVhosts = dedicated
                }
            case (nil, let vhost?):
                throw sharedAndDedicated(bind.address, vhost: vhost, vhostLine: bind.line, sharedLine: listener.line)
            case (let dedicated?, nil):
                let firstLine = binds.first { $0.vhost == dedicated[0] && $0.address.socketIdentity == identity }
                throw sharedAndDedicated(
                    bind.address, vhost: dedicated[0], vhostLine: firstLine?.line ?? listener.line,
                    sharedLine: bind.line)
            }
        }
        return listeners
    }

    private func sharedAndDedicated(_ address: ListenAddress, vhost: Int, vhostLine: Int, sharedLine: Int)
        -> ConfigError
    {
        let key = binds.first { $0.line == vhostLine }?.key ?? "bind"
        return error(
            vhostLine, key,
            "expected an address of the vhost's own, but \(address) is a shared listener ([blastbeat] line "
                + "\(sharedLine)); vhosts without a bind are served on every shared listener already, so remove "
                + "this line or give the vhost a different address")
    }

    /// `certificate` and `key` go together, in `[blastbeat]` and in each vhost.
    private func checkCertificatePairs() throws(ConfigError) {
        let certificateLine = mainKeyLines["certificate"] ?? 0
        let keyLine = mainKeyLines["key"] ?? 0
        if config.certificate != nil && config.key == nil {
            throw error(certificateLine, "key", "expected key = PATH in [blastbeat] to go with this certificate")
        }
        if config.key != nil && config.certificate == nil {
            throw error(keyLine, "certificate", "expected certificate = PATH in [blastbeat] to go with this key")
        }
        for draft in vhosts {
            if draft.host.certificate != nil && draft.host.key == nil {
                throw error(
                    draft.certificateLine, "key",
                    "expected key = PATH in [blastbeat:\(draft.host.name)] to go with this certificate")
            }
            if draft.host.key != nil && draft.host.certificate == nil {
                throw error(
                    draft.keyLine, "certificate",
                    "expected certificate = PATH in [blastbeat:\(draft.host.name)] to go with this key")
            }
        }
    }

    /// Per listener: TLS material for what it serves, one `default` vhost at most, no Host served twice.
    private func checkListener(_ index: Int) throws(ConfigError) {
        let listener = config.listeners[index]
        let served = config.vhostIndices(forListener: index)
        if listener.tls {
            if served.isEmpty && config.certificate == nil {
                throw error(
                    listener.line, "bind-ssl",
                    "expected certificate and key in [blastbeat]: TLS listener \(listener.address) serves no "
                        + "vhost, so it needs the default certificate")
            }
            for vhost in served where config.vhosts[vhost].certificate == nil {
                let host = config.vhosts[vhost]
                throw error(
                    host.line, "certificate",
                    "expected certificate and key for vhost \(host.name), which is served on TLS listener "
                        + "\(listener.address) (\(place(listener.line))); set them in its section or in [blastbeat]")
            }
        }
        var defaultVhost: Int?
        var seen: [HostKey: Int] = [:]
        for vhost in served {
            let host = config.vhosts[vhost]
            if host.isDefault {
                if let first = defaultVhost {
                    throw error(
                        vhosts[vhost].defaultLine, "default",
                        "expected at most one default vhost per listener, but \(config.vhosts[first].name) "
                            + "(\(place(vhosts[first].defaultLine))) is already the default on \(listener.address)")
                }
                defaultVhost = vhost
            }
            let key = HostKey(host: host.hostName, port: host.port)
            if let first = seen[key] {
                throw error(
                    host.line, nil,
                    "expected each Host once per listener, but vhost \(host.name) matches the same Host as vhost "
                        + "\(config.vhosts[first].name) (\(place(config.vhosts[first].line))) on \(listener.address), "
                        + "and Host matching ignores case, so it would never be used")
            }
            seen[key] = vhost
        }
    }

    private struct HostKey: Hashable {
        var host: [UInt8]
        var port: UInt16?
    }

    /// Relations between keys: the ping timeout must exceed the ping period; the head limit must hold a request line.
    private func checkRanges() throws(ConfigError) {
        if config.pingTimeout <= config.pingFrequency {
            if let line = mainKeyLines["ping-timeout"] {
                throw error(
                    line, "ping-timeout",
                    "expected more than ping-freq (\(config.pingFrequency) s), got \(config.pingTimeout) s")
            }
            throw error(
                mainKeyLines["ping-freq"] ?? 0, "ping-freq",
                "expected less than ping-timeout (\(config.pingTimeout) s, the default), got "
                    + "\(config.pingFrequency) s; raise ping-timeout too")
        }
        if config.limits.maxHeadBytes < config.limits.maxRequestLine {
            if let line = mainKeyLines["max-header-size"] {
                throw error(
                    line, "max-header-size",
                    "expected at least max-request-line (\(config.limits.maxRequestLine) bytes), since the head "
                        + "includes the request line, got \(config.limits.maxHeadBytes)")
            }
            throw error(
                mainKeyLines["max-request-line"] ?? 0, "max-request-line",
                "expected at most max-header-size (\(config.limits.maxHeadBytes) bytes, the default), since the "
                    + "head includes the request line, got \(config.limits.maxRequestLine); raise max-header-size too")
        }
    }
}
