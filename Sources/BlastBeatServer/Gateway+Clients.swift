import BlastBeatCore
import BlastBeatSystem
import Glibc

/// The client side of the gateway: listeners (and their certificates) and accepting connections.
extension Gateway {
    func openListeners() throws(StartupError) {
        for (index, listenerConfig) in config.listeners.enumerated() {
            var tlsContext: TLSServerContext? = nil
            if listenerConfig.tls {
                do { tlsContext = try TLSFiles.context(config, forListener: index) } catch {
                    closeListeners()
                    throw error
                }
            }
            let addresses: [SocketAddress]
            do { addresses = try SocketAddress.resolve(listenerConfig.address) } catch {
                closeListeners()
                throw StartupError(description: "\(config.file):\(listenerConfig.line): bind: \(error)")
            }
            let served = config.vhostIndices(forListener: index)
            for address in addresses {
                let fd: Int32
                do { fd = try Posix.listen(address: address, backlog: 1024) } catch {
                    closeListeners()
                    throw StartupError(description: "\(config.file):\(listenerConfig.line): bind: \(error)")
                }
                let port = Posix.localPort(fd)
                var entries: [VirtualHostRouter.Entry] = []
                var defaultVhost: Int? = nil
                for v in served {
                    let vhost = config.vhosts[v]
                    entries.append(.init(vhost: v, hostName: vhost.hostName, port: vhost.port))
                    if vhost.isDefault { defaultVhost = v }
                }
                let router = VirtualHostRouter(entries: entries, defaultVhost: defaultVhost, listenerPort: port)
                listeners.append(Listener(gateway: self, fd: fd, address: address, router: router, tls: tlsContext))
                listenerConfigIndex.append(index)
            }
        }
    }

    /// SIGHUP: re-reads every TLS listener's certificates; a listener whose files fail keeps the old ones.
    func reloadCertificates() {
        for (position, listener) in listeners.enumerated() {
            guard let context = listener.tls else { continue }
            let index = listenerConfigIndex[position]
            do {
                let (defaultCertificate, certificates) = try TLSFiles.certificates(config, forListener: index)
                try context.reload(defaultCertificate: defaultCertificate, certificates: certificates)
                logger.info("reloaded \(certificates.count) certificate(s) for https://\(listener.address)")
            } catch {
                logger.error("certificate reload for https://\(listener.address) failed, keeping the old ones: \(error)")
            }
        }
    }

    func closeListeners() {
        for listener in listeners { listener.close() }
    }

    /// Drops root privileges (after binding), then serves until shut down.

    // MARK: accepting

    func acceptConnections(on listener: Listener) {
        for _ in 0..<64 {
            if sessions.count >= config.maxConnections {
                pauseAccepting(reason: "max-connections (\(config.maxConnections)) reached")
                return
            }
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
            var tls: TLSConnection? = nil
            if let context = listener.tls {
                do { tls = try TLSConnection(context: context) } catch {
                    logger.error("TLS setup for a connection failed: \(error)")
                    Posix.close(fd)
                    continue
                }
            }
            let (high, low) = random.next128()
            let sid = SessionID(high: high, low: low)
            let connection = Connection(
                gateway: self, fd: fd, listener: listener, sid: sid, peer: peer, tls: tls)
            sessions[sid] = connection
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
        sessions[connection.sid] = nil
        if acceptingPaused && sessions.count < config.maxConnections && !isShuttingDown {
            // Resumed by the pause timer, which also covers descriptor exhaustion.
        }
    }
}
