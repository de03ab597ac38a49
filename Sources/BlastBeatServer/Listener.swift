import BlastBeatCore
import BlastBeatSystem

/// A listening socket and the virtual hosts served on it.
final class Listener: IOWatcherDelegate {
    /// The listen queue asked for; the kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
    /// A short queue is what a flood hurts other tenants through: clients refused by one vhost's limits reconnect
    /// at once, in bursts as large as the number refused together, and when such a burst overflows the queue the
    /// kernel drops the handshakes of whoever comes next, another tenant's clients as much as the flood's, who
    /// then wait for a retransmission (0.2 s for the request, 1 s for a SYN). With 1024, 2,500 clients surging
    /// for one vhost gave the other's clients a p99 of 1.3 s (test_tenant_isolation.py).
    static let backlog: Int32 = 65_535

    unowned(unsafe) let gateway: Gateway
    let fd: Int32
    let address: SocketAddress
    /// Which Host is which vhost here; replaced by a reload.
    var router: VirtualHostRouter
    /// The bound port as ASCII, for SERVER_PORT.
    let portBytes: [UInt8]
    /// Set on a `bind-ssl` listener.
    let tls: TLSServerContext?
    private var watcher: IOWatcher! = nil
    private(set) var isOpen = true

    init(gateway: Gateway, fd: Int32, address: SocketAddress, router: VirtualHostRouter, tls: TLSServerContext?) {
        self.gateway = gateway
        self.tls = tls
        self.fd = fd
        self.address = address
        self.router = router
        self.portBytes = Array(String(router.listenerPort).utf8)
        self.watcher = IOWatcher(loop: gateway.loop, fd: fd, delegate: self)
    }

    func setAccepting(_ on: Bool) {
        if isOpen { watcher.watch(read: on, write: false) }
    }

    func ioReady(readable: Bool, writable: Bool) {
        gateway.acceptConnections(on: self)
    }

    func close() {
        if !isOpen { return }
        watcher.stop()
        isOpen = false
        Posix.close(fd)
    }
}
