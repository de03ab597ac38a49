import BlastBeatCore
import BlastBeatSystem
import Glibc

/// The client side of the gateway: listeners (and their certificates) and accepting connections.
extension Gateway {
    func openListeners(inherited: InheritedSockets) throws(StartupError) {
        for index in config.listeners.indices {
            let sockets = inherited.take(FileBundle.listenerKey(config.listeners[index]))
            do { listeners += try openListener(index, of: config, sockets: sockets) } catch {
                closeListeners()
                throw error
            }
            listenerConfigIndex += [Int](repeating: index, count: listeners.count - listenerConfigIndex.count)
        }
    }

    /// Binds `config.listeners[index]` (one socket per address its name resolves to) with its certificates,
    /// or takes `sockets` the privileged parent bound for it. On failure nothing stays open. (`config` is the
    /// running one, or the one a reload is preparing; `files` where a reload reads the certificates.)
    func openListener(
        _ index: Int, of config: Configuration, files: FileSource = .direct, sockets: [Int32]? = nil
    ) throws(StartupError) -> [Listener] {
        let listenerConfig = config.listeners[index]
        var tlsContext: TLSServerContext? = nil
        if listenerConfig.tls { tlsContext = try TLSFiles.context(config, forListener: index, files: files) }
        if let tlsContext, let keys = worker?.ticketKeys {
            do { try tlsContext.setTicketKeys(keys) } catch {
                throw StartupError(description: config.error(at: listenerConfig.line, key: "bind-ssl", "\(error)").description)
            }
        }
        func listener(_ fd: Int32, _ address: SocketAddress) -> Listener {
            let router = vhostRouter(forListener: index, of: config, port: Posix.localPort(fd))
            return Listener(gateway: self, fd: fd, address: address, router: router, tls: tlsContext)
        }
        if let sockets { return sockets.map { listener($0, Posix.localAddress($0)) } }
        let addresses: [SocketAddress]
        do { addresses = try SocketAddress.resolve(listenerConfig.address) } catch {
            throw StartupError(description: config.error(at: listenerConfig.line, key: "bind", "\(error)").description)
        }
        var opened: [Listener] = []
        for address in addresses {
            do { opened.append(listener(try Posix.listen(address: address, backlog: Listener.backlog), address)) } catch {
                for listener in opened { listener.close() }
                throw StartupError(description: config.error(at: listenerConfig.line, key: "bind", "\(error)").description)
            }
        }
        return opened
    }

    /// Host → vhost for the vhosts `config.listeners[index]` serves.
    func vhostRouter(forListener index: Int, of config: Configuration, port: UInt16) -> VirtualHostRouter {
        var entries: [VirtualHostRouter.Entry] = []
        var defaultVhost: Int? = nil
        for v in config.vhostIndices(forListener: index) {
            let vhost = config.vhosts[v]
            entries.append(.init(vhost: v, hostName: vhost.hostName, port: vhost.port))
            if vhost.isDefault { defaultVhost = v }
        }
        return VirtualHostRouter(entries: entries, defaultVhost: defaultVhost, listenerPort: port)
    }

    func closeListeners() {
        for listener in listeners { listener.close() }
    }

    // MARK: accepting

    func acceptConnections(on listener: Listener) {
        for _ in 0..<64 {
            let accepted: (fd: Int32, peer: SocketAddress)?
            do { accepted = try Posix.accept(listener.fd) } catch {
                if error.errno == EMFILE || error.errno == ENFILE || error.errno == ENOBUFS || error.errno == ENOMEM {
                    // Out of descriptors: spinning on accept would burn the CPU (the original did).
                    pauseAccepting(reason: "\(error)")
                } else {
                    logger.warning("accept on \(listener.address): \(error)")
                }
                return
            }
            guard let (fd, peer) = accepted else { return }
            let client = peer.hostBytes
            let held = connectionsByClient[client, default: 0]
            if held >= config.clientConnectionLimit {
                refuse(fd, client: client, tls: listener.tls != nil, reason: .clientConnections)
                continue
            }
            if sessions.count >= config.maxConnections {
                if held >= fairShare {
                    refuse(fd, client: client, tls: listener.tls != nil, reason: .overShare)
                    continue
                }
                if !makeRoom() && sessions.count >= config.maxConnections + Self.roomForNewClients {
                    // Every connection is busy with a request: this one cannot be served, and accepting waits.
                    Posix.close(fd)
                    pauseAccepting(reason: "max-connections (\(config.maxConnections)) reached")
                    return
                }
            }
            var tls: TLSConnection? = nil
            if let context = listener.tls {
                do { tls = try TLSConnection(context: context) } catch {
                    logger.error("TLS setup for a connection failed: \(error)")
                    Posix.close(fd)
                    continue
                }
            }
            let sid = newSessionID()
            let connection = Connection(
                gateway: self, fd: fd, listener: listener, sid: sid, peer: peer, tls: tls)
            sessions[sid] = connection
            connectionsByClient[client, default: 0] += 1
            counters.acceptedConnections += 1
            connection.start()
        }
    }

    func pauseAccepting(reason: String) {
        if acceptingPaused { return }
        acceptingPaused = true
        logger.warning("not accepting new connections for now: \(reason)")
        for listener in listeners { listener.setAccepting(false) }
        acceptPauseTimer.start(after: 0.1)
    }

    func connectionClosed(_ connection: Connection) {
        countClosed(connection)
        sessions[connection.sid] = nil
        leaveVhost(connection)
        if let count = connectionsByClient[connection.remoteAddress], count > 1 {
            connectionsByClient[connection.remoteAddress] = count - 1
        } else {
            connectionsByClient[connection.remoteAddress] = nil
        }
        if acceptingPaused && sessions.count < config.maxConnections && !isShuttingDown {
            // Resumed by the pause timer, which also covers descriptor exhaustion.
        }
    }

    /// At `max-connections`, how many connections an address may hold and still take another's place: an equal
    /// share of `max-connections` among the addresses connected now. A flood that holds the gateway's
    /// connections from a few dozen addresses and reconnects at once is refused right after `accept`, before
    /// anything is read (a write and a close), while a client of another tenant, whose address holds few
    /// connections, comes in in place of one of the flood's (makeRoom). Making room for each of the flood's own
    /// reconnections instead would close one of its connections per new one, each coming back at once through
    /// the listen queue, where the other tenants' new clients wait behind them (test_tenant_isolation.py: 3,000
    /// slowloris connections against 2,000 gave the other tenant's new clients a p99 of 0.3 s).
    var fairShare: Int { max(1, config.maxConnections / max(1, connectionsByClient.count)) }

    enum ConnectionRefusal {
        /// The address holds `max-client-connections`.
        case clientConnections
        /// At `max-connections`, the address holds its `fairShare`.
        case overShare
    }

    /// A new connection refused before it is read, counted, and logged once per 10 s per address and reason.
    /// Past `max-client-connections` a plain-HTTP client is told 503 (best effort, the socket is new and empty)
    /// and a TLS one is just closed. Over its share at `max-connections` the connection is held unread in the
    /// tarpit for the same pause as a refused request (0.5-1 s, Gateway.nextRefusalPause), then reset,
    /// unanswered: those come in floods that reconnect at once, and every attempt is a place in the listen
    /// queue ahead of other tenants' new clients (perf, 3,000 slowloris connections against 2,000: 85% of the
    /// gateway's CPU in accepting and refusing them, half of it sending a 503 and closing). The tarpit holds at
    /// most half of `max-connections` descriptors; when it is full the reset comes at once.
    private func refuse(_ fd: Int32, client: [UInt8], tls: Bool, reason: ConnectionRefusal) {
        let kind: StaticString
        switch reason {
        case .clientConnections:
            if !tls {
                let (head, body) = errorResponse(status: 503, message: "too many connections from your address", retryAfter: true)
                let response = head + body
                _ = try? Posix.write(fd, response.span.bytes)
            }
            Posix.close(fd)
            counters.clientConnectionRefusals += 1
            kind = "client-connections"
        case .overShare:
            if config.refusalPause > 0, tarpit.hold(fd, until: loop.now + nextRefusalPause()) {
                if tarpitTimer.firesAt == nil { tarpitTimer.start(after: Self.tarpitTick, repeat: Self.tarpitTick) }
            } else {
                Posix.closeWithReset(fd)
            }
            counters.connectionsOverShare += 1
            kind = "over-share"
        }
        guard warnings.allow(kind, client.span.bytes, now: loop.now, interval: 10) else { return }
        let address = String(decoding: client, as: UTF8.self)
        switch reason {
        case .clientConnections:
            logger.warning(
                "client \(address) holds max-client-connections (\(config.clientConnectionLimit)) connections; "
                    + "refusing more (logged once per 10 s)")
        case .overShare:
            logger.warning(
                "max-connections (\(config.maxConnections)) reached and client \(address) holds its share "
                    + "(\(fairShare) connections); refusing its new ones (logged once per 10 s per address)")
        }
    }

    /// A complete error response of the gateway's own (plain text, `Connection: close`): its head and body.
    func errorResponse(status: Int, message: String, retryAfter: Bool, extraHeaders: String = "") -> (head: [UInt8], body: [UInt8]) {
        let reason = HTTPStatus.reasonPhrase(status)
        let body = "\(status) \(reason): \(message)\n"
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\n"
        head += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        if retryAfter { head += "Retry-After: \(retryAfterSeconds)\r\n" }
        head += extraHeaders + "\r\n"
        return (Array(head.utf8), Array(body.utf8))
    }

    /// How far past `max-connections` the connections of addresses under their share may go when every connection
    /// is busy with a request (none can make room). Without it, a client of another tenant arriving while one
    /// tenant's slow requests hold every connection would be the one closed, since the flood's own new
    /// connections are held in the tarpit instead (bench/noisy_neighbour.py without per-vhost limits: 5% of B's
    /// requests failed); with it, the few such clients are served and the flood's are not.
    static let roomForNewClients = 64

    /// How long a connection must have been without a complete request head before it may make room.
    static let slowAfter = 0.1

    /// How often the tarpit lets go of the connections whose time has come.
    static let tarpitTick = 0.05

    /// Resets the tarpit's connections whose time has come (all of them at shutdown); the timer stops with it empty.
    func releaseTarpit(all: Bool) {
        while let fd = all ? tarpit.releaseAny() : tarpit.release(now: loop.now) { Posix.closeWithReset(fd) }
        if tarpit.isEmpty { tarpitTimer.stop() }
    }

    /// At `max-connections`, closes one connection so a new client can come in: the one refused by an
    /// admission check the longest ago (its client was told to come back later, and keeps retrying), else the
    /// oldest idle keep-alive connection, else the one that has been sending its request head (or TLS
    /// handshake) the longest, if that is at least `slowAfter`. A connection with a request at a node, a response
    /// under way or a WebSocket is never chosen. Returns false when there is none to close.
    private func makeRoom() -> Bool {
        let t = config.timeouts
        var refused: (connection: Connection, since: Double)? = nil
        var idle: (connection: Connection, since: Double)? = nil
        var slow: (connection: Connection, since: Double)? = nil
        for connection in sessions.values where connection.teardown == .open && !connection.isExchangeActive {
            if connection.webSocket != nil { continue }
            // When the connection started waiting: its deadline is that moment plus the timeout of the wait.
            switch connection.deadlineReason {
            case .refusalPause:
                // Its pause ends first: its client has waited longest since the refusal (give or take the spread).
                let since = connection.deadline
                if refused == nil || since < refused!.since { refused = (connection, since) }
            case .idle where connection.requestStart > 0:
                let since = connection.deadline - t.keepAlive
                if idle == nil || since < idle!.since { idle = (connection, since) }
            case .idle, .head, .tlsHandshake:
                // Connected without a complete request yet (nothing sent, a partial head, a handshake).
                let timeout = connection.deadlineReason == .idle ? t.keepAlive : connection.deadlineReason == .head ? t.header : t.tlsHandshake
                let since = connection.deadline - timeout
                // One accepted a moment ago is not slow: its head is likely waiting to be read. Closing it would
                // let new clients close each other while a flood's slow requests hold the other connections.
                if loop.now - since >= Self.slowAfter && (slow == nil || since < slow!.since) { slow = (connection, since) }
            case .body, .backend, .write, .linger, .webSocketIdle, .http2:
                continue
            }
        }
        guard let victim = (refused ?? idle ?? slow)?.connection else { return false }
        counters.connectionsClosedForRoom += 1
        if warnings.allow("make-room", RawSpan(), now: loop.now, interval: 10) {
            let kind = refused != nil ? "refused" : idle != nil ? "idle" : "slow"
            logger.warning(
                "max-connections (\(config.maxConnections)) reached: closing \(kind) "
                    + "connections from \(victim.peerDescription) and others to let new clients in (logged once per 10 s)")
        }
        victim.close()
        return true
    }
}
