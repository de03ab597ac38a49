import BlastBeatCore
import BlastBeatSystem

/// The admin listener (`admin = ADDRESS:PORT`): `GET /metrics` and `GET /healthz` for the operator's
/// monitoring, on the gateway's event loop. Bound before the privilege drop, like the public listeners,
/// and open until the gateway exits, so a scrape sees the drain of a graceful shutdown (healthz: 503).
///
/// Small on purpose: one request per connection (`Connection: close`), a head of at most
/// `maxRequestBytes`, `timeout` seconds per connection, at most `maxConnections` at once (a new one
/// takes the place of the oldest, so clients that connect and say nothing cannot lock the monitoring
/// out). Nothing a client of the public listeners sends reaches it.
final class AdminServer {
    static let maxRequestBytes = 4096
    static let timeout = 10.0
    static let maxConnections = 32

    unowned(unsafe) let gateway: Gateway
    private(set) var listeners: [AdminListener] = []
    /// Oldest first.
    private(set) var connections: [AdminConnection] = []
    let address: ListenAddress

    /// Binds every address `address` resolves to, or uses `inherited` (the parent of several workers bound
    /// them); nothing is accepted until `start()`.
    init(gateway: Gateway, address: ListenAddress, inherited: [Int32]? = nil) throws(SystemError) {
        self.gateway = gateway
        self.address = address
        if let inherited {
            listeners = inherited.map { AdminListener(server: self, fd: $0, address: Posix.localAddress($0)) }
            return
        }
        for resolved in try SocketAddress.resolve(address) {
            let fd: Int32
            do { fd = try Posix.listen(address: resolved, backlog: 64) } catch {
                close()
                throw error
            }
            listeners.append(AdminListener(server: self, fd: fd, address: resolved))
        }
    }

    func start() {
        for listener in listeners { listener.setAccepting(true) }
    }

    /// Where it listens, for the startup log line.
    var description: String { listeners.map { "http://\($0.address)" }.joined(separator: " ") }

    func accept(on listener: AdminListener) {
        for _ in 0..<16 {
            let accepted: (fd: Int32, peer: SocketAddress)?
            do { accepted = try Posix.accept(listener.fd) } catch {
                gateway.logger.warning("admin: accept on \(listener.address): \(error)")
                return
            }
            guard let (fd, _) = accepted else { return }
            if connections.count >= Self.maxConnections {
                let oldest = connections[0]
                oldest.close()
            }
            let connection = AdminConnection(server: self, fd: fd)
            connections.append(connection)
            connection.start()
        }
    }

    func closed(_ connection: AdminConnection) {
        connections.removeAll { $0 === connection }
    }

    func close() {
        for listener in listeners { listener.close() }
        for connection in connections { connection.close() }
    }
}

/// One listening socket of the admin listener.
final class AdminListener: IOWatcherDelegate {
    unowned(unsafe) let server: AdminServer
    let fd: Int32
    let address: SocketAddress
    private var watcher: IOWatcher! = nil
    private var isOpen = true

    init(server: AdminServer, fd: Int32, address: SocketAddress) {
        self.server = server
        self.fd = fd
        self.address = address
        self.watcher = IOWatcher(loop: server.gateway.loop, fd: fd, delegate: self)
    }

    func setAccepting(_ on: Bool) {
        if isOpen { watcher.watch(read: on, write: false) }
    }

    func ioReady(readable: Bool, writable: Bool) {
        server.accept(on: self)
    }

    func close() {
        if !isOpen { return }
        watcher.stop()
        isOpen = false
        Posix.close(fd)
    }
}

extension Gateway {
    /// Binds the admin listener when `admin` is set (before the privilege drop, like `openListeners`).
    func openAdmin(inherited: InheritedSockets) throws(StartupError) {
        guard let address = config.admin else { return }
        let sockets = inherited.take(InheritedSockets.adminKey("\(address)"))
        do { admin = try AdminServer(gateway: self, address: address, inherited: sockets) } catch {
            closeListeners()
            throw StartupError(description: "\(config.file):\(config.adminLine): admin: \(error)")
        }
    }
}
