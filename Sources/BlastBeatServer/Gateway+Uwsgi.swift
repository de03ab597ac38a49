import BlastBeatCore
import BlastBeatSystem

/// What each request adds to the uwsgi environment of its node (docs/PROTOCOL.md, "The uwsgi environment").
extension Gateway {
    func uwsgiContext(for connection: Connection, vhost: Int) -> UwsgiRequestContext {
        UwsgiRequestContext(
            serverName: vhostServerNames[vhost], serverPort: connection.listener.portBytes,
            remoteAddress: connection.remoteAddress, remotePort: connection.remotePort, isTLS: connection.tls != nil,
            tlsServerName: connection.tlsServerName, tlsVersion: connection.tlsVersion)
    }
}
