import BlastBeatCore
import BlastBeatSystem

/// A listening socket and the virtual hosts served on it.
final class Listener: IOWatcherDelegate {
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
