package import BlastBeatCore
import Glibc
internal import CSystem

extension SocketAddress {
    /// The client's address as `client-rate` counts it (IPv4 whole, IPv6 by /64; see ClientPrefix).
    package var clientPrefix: ClientPrefix {
        withUnsafePointer(to: storage) { p in
            if Int32(storage.ss_family) == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    withUnsafeBytes(of: sin6.pointee.sin6_addr) { ClientPrefix(ipv6: $0) }
                }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                ClientPrefix(ipv4: UInt32(bigEndian: $0.pointee.sin_addr.s_addr))
            }
        }
    }
}
