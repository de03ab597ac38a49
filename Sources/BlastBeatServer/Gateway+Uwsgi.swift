import BlastBeatCore
import BlastBeatSystem

/// Encoding requests as uwsgi packets for the nodes (docs/PROTOCOL.md, "The uwsgi environment"): the scratch
/// memory they are encoded in and what each request adds to the environment.
extension Gateway {
    /// Shared scratch memory of at least `count` bytes for encoding one packet. It grows to the
    /// largest bound seen (bounded by the head size limits) and is reused by every request.
    func uwsgiScratch(atLeast count: Int) -> UnsafeMutableRawBufferPointer {
        if uwsgiScratchBuffer.count < count {
            uwsgiScratchBuffer.deallocate()
            uwsgiScratchBuffer = .allocate(byteCount: count, alignment: 16)
        }
        return uwsgiScratchBuffer
    }

    func uwsgiContext(for connection: Connection, vhost: Int) -> UwsgiRequestContext {
        UwsgiRequestContext(
            serverName: vhostServerNames[vhost], serverPort: connection.listener.portBytes,
            remoteAddress: connection.remoteAddress, remotePort: connection.remotePort, isTLS: connection.tls != nil,
            tlsServerName: connection.tlsServerName, tlsVersion: connection.tlsVersion)
    }
}
