package import BlastBeatCore
import Glibc
internal import CSystem

/// An IPv4 or IPv6 socket address, resolved from configuration or read from an accepted socket.
package struct SocketAddress: CustomStringConvertible, @unchecked Sendable {
    var storage: sockaddr_storage

    init(storage: sockaddr_storage) {
        self.storage = storage
    }

    var family: sa_family_t { storage.ss_family }

    package var port: UInt16 {
        withUnsafePointer(to: storage) { p in
            switch Int32(storage.ss_family) {
            case AF_INET: return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            case AF_INET6: return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            default: return 0
            }
        }
    }

    /// The numeric host as ASCII bytes ("127.0.0.1", "::1"), for REMOTE_ADDR and the access log.
    package var hostBytes: [UInt8] {
        if Int32(storage.ss_family) == AF_INET {
            // Every accepted connection needs this; glibc's inet_ntop formats IPv4 with sprintf
            // (3,000 instructions, a tenth of a Connection: close request in callgrind).
            let address = withUnsafePointer(to: storage) { p in
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
            }
            var text: [UInt8] = []
            text.reserveCapacity(15)
            for shift in stride(from: 24, through: 0, by: -8) {
                if shift != 24 { text.append(UInt8(ascii: ".")) }
                withDecimalDigits(Int((address >> UInt32(shift)) & 0xFF)) { text.appendBytes($0) }
            }
            return text
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafePointer(to: storage) { p in
            switch Int32(storage.ss_family) {
            case AF_INET:
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
                }
            case AF_INET6:
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    _ = inet_ntop(AF_INET6, &a, &text, socklen_t(text.count))
                }
            default: break
            }
        }
        return text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    }

    /// The port as ASCII digits, for REMOTE_PORT.
    package var portBytes: [UInt8] {
        withDecimalDigits(Int(port)) { Array($0) }
    }

    package var description: String {
        let host = String(decoding: hostBytes, as: UTF8.self)
        return Int32(family) == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let length = Int32(family) == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        return withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
        }
    }

    /// Resolves a configured listen address: numeric literals directly, names with getaddrinfo.
    package static func resolve(_ address: ListenAddress) throws(SystemError) -> [SocketAddress] {
        let node: String
        var scope: String? = nil
        switch address.host {
        case .any: node = "0.0.0.0"
        case .ipv4(let text): node = text
        case .ipv6(let text, let s): node = text; scope = s
        case .name(let text): node = text
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let full = scope.map { "\(node)%\($0)" } ?? node
        let rc = getaddrinfo(full, String(address.port), &hints, &result)
        if rc != 0 {
            let reason = String(cString: gai_strerror(rc))
            throw SystemError(call: "resolve \(address) (\(reason))", errno: EINVAL)
        }
        defer { freeaddrinfo(result) }
        var addresses: [SocketAddress] = []
        var cursor = result
        while let info = cursor {
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen)))
            }
            let candidate = SocketAddress(storage: storage)
            if !addresses.contains(where: { $0.description == candidate.description }) {
                addresses.append(candidate)
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}
