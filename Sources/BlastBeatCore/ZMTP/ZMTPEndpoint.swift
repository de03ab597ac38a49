/// A `zmq` endpoint the gateway's own ZMTP listener can bind: TCP or a Unix socket (`ipc://`).
package enum ZMTPEndpoint: Equatable, Sendable {
    case tcp(ListenAddress)
    case ipc(path: String)

    /// Parses `tcp://HOST:PORT` (HOST as in `bind`: `*`, an IPv4 address, `[IPV6]`, a name) or
    /// `ipc://PATH`; nil for anything else (`inproc://`, interface names such as `tcp://eth0:5000`),
    /// which only `zmq-engine = libzmq` can bind.
    package static func parse(_ text: String) -> ZMTPEndpoint? {
        if text.hasPrefix("tcp://") {
            let rest = String(text.dropFirst("tcp://".count))
            guard let address = ListenAddress.parse(rest) else { return nil }
            if case .name(let name) = address.host, name != "localhost" { return nil }
            return .tcp(address)
        }
        if text.hasPrefix("ipc://") {
            let path = String(text.dropFirst("ipc://".count))
            // sun_path holds 107 bytes plus the terminating NUL.
            guard !path.isEmpty, path.utf8.count <= 107, !path.utf8.contains(0) else { return nil }
            return .ipc(path: path)
        }
        return nil
    }
}
