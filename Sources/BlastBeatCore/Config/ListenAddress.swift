/// The socket address of a listener, as written after `bind` / `bind-ssl`.
///
/// Accepted forms (a superset of the original's, which counted colons to detect IPv6 and so rejected `::1`,
/// and had no brackets or host names):
///
/// | Text | Host |
/// |---|---|
/// | `0.0.0.0:8080` | `.ipv4("0.0.0.0")` (strict dotted quad, no leading zeros) |
/// | `*:8080` | `.any`: the IPv4 wildcard 0.0.0.0 |
/// | `[::1]:8080`, `[fe80::1%eth0]:8085` | `.ipv6` |
/// | `::1:8080`, `fe80::1%eth0:8085` | `.ipv6`: the original's unbracketed form, split at the **last** colon |
/// | `localhost:8080` | `.name("localhost")`, lowercased; the server resolves it |
///
/// The port is 1-5 ASCII digits with a value in 1-65535 (the original's `atoi` turned `http` into port 0).
/// An empty host (`:8080`) is rejected as in the original; write `*:8080`. IPv6 addresses are stored in RFC 5952
/// canonical form, so `0::1` and `::1` compare equal; the scope is a name or an index, resolved by the server.
package struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    package enum Host: Sendable, Hashable {
        /// `*`: every IPv4 address (0.0.0.0).
        case any
        /// A numeric IPv4 address, e.g. `127.0.0.1`.
        case ipv4(String)
        /// A canonical IPv6 address without brackets, plus the interface scope after `%` if any.
        case ipv6(String, scope: String?)
        /// A host name to resolve at startup, lowercased.
        case name(String)
    }

    package var host: Host
    package var port: UInt16

    package init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses one `bind` value; nil when it is not one of the forms above.
    package static func parse(_ text: String) -> ListenAddress? {
        let bytes = Array(text.utf8)
        guard let colon = bytes.lastIndex(of: UInt8(ascii: ":")),
            let port = IPAddressText.parsePort(bytes[(colon + 1)...])
        else { return nil }
        var hostBytes = bytes[..<colon]
        if hostBytes.first == UInt8(ascii: "[") {
            guard hostBytes.last == UInt8(ascii: "]"), hostBytes.count > 2 else { return nil }
            hostBytes = hostBytes.dropFirst().dropLast()
            guard let host = parseIPv6Host(hostBytes) else { return nil }
            return ListenAddress(host: host, port: port)
        }
        if hostBytes.elementsEqual("*".utf8) {
            return ListenAddress(host: .any, port: port)
        }
        if hostBytes.contains(UInt8(ascii: ":")) {
            guard let host = parseIPv6Host(hostBytes) else { return nil }
            return ListenAddress(host: host, port: port)
        }
        if IPAddressText.parseIPv4(hostBytes) != nil {
            return ListenAddress(host: .ipv4(String(decoding: hostBytes, as: UTF8.self)), port: port)
        }
        if IPAddressText.isValidHostName(hostBytes) {
            let name = String(decoding: IPAddressText.lowercased(hostBytes), as: UTF8.self)
            return ListenAddress(host: .name(name), port: port)
        }
        return nil
    }

    /// `ADDRESS%SCOPE` or `ADDRESS` (no brackets) → `.ipv6` in canonical form.
    private static func parseIPv6Host(_ text: ArraySlice<UInt8>) -> Host? {
        var address = text
        var scope: String?
        if let percent = text.firstIndex(of: UInt8(ascii: "%")) {
            address = text[..<percent]
            let scopeBytes = text[(percent + 1)...]
            guard IPAddressText.isValidScope(scopeBytes) else { return nil }
            scope = String(decoding: scopeBytes, as: UTF8.self)
        }
        guard let raw = IPAddressText.parseIPv6(address) else { return nil }
        return .ipv6(IPAddressText.formatIPv6(raw), scope: scope)
    }

    /// The canonical text: `127.0.0.1:80`, `*:80`, `[::1]:80`, `[fe80::1%eth0]:80`, `localhost:80`.
    /// `parse(description)` gives back an equal value.
    package var description: String {
        switch host {
        case .any:
            return "*:\(port)"
        case .ipv4(let address), .name(let address):
            return "\(address):\(port)"
        case .ipv6(let address, let scope?):
            return "[\(address)%\(scope)]:\(port)"
        case .ipv6(let address, nil):
            return "[\(address)]:\(port)"
        }
    }

    /// `*`, `0.0.0.0` or `[::]`: every address of the machine.
    var isWildcard: Bool {
        switch host {
        case .any: return true
        case .ipv4(let address): return address == "0.0.0.0"
        case .ipv6(let address, _): return address == "::"
        case .name: return false
        }
    }

    /// The address as the kernel sees it, for "same listener" checks: `*` and `0.0.0.0` are one socket.
    var socketIdentity: ListenAddress {
        if case .any = host {
            return ListenAddress(host: .ipv4("0.0.0.0"), port: port)
        }
        return self
    }
}
