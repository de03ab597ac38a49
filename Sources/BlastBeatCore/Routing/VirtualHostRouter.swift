/// Finds the virtual host for a request's Host header among the vhosts served on one listener.
///
/// Matching is ASCII case-insensitive, ignores one trailing dot, and treats the listener's own
/// port as optional: on a listener bound to port 8080, `Host: localhost` and `Host: localhost:8080`
/// both match `[blastbeat:localhost]`, and `[blastbeat:localhost:8000]` matches `localhost:8000`
/// (and plain `localhost` only on a listener bound to 8000).
package struct VirtualHostRouter: Sendable {
    package struct Entry: Sendable {
        package var vhost: Int
        package var hostName: [UInt8]
        package var port: UInt16?

        package init(vhost: Int, hostName: [UInt8], port: UInt16?) {
            self.vhost = vhost
            self.hostName = hostName
            self.port = port
        }
    }

    package private(set) var entries: [Entry]
    package var defaultVhost: Int?
    package let listenerPort: UInt16
    /// Host name and effective port → vhost: one hash lookup per request however many vhosts there are.
    private var index = ByteKeyIndex(caseInsensitive: true)

    package init(entries: [Entry], defaultVhost: Int?, listenerPort: UInt16) {
        self.entries = entries
        self.defaultVhost = defaultVhost
        self.listenerPort = listenerPort
        for entry in entries {
            // The first vhost of a name wins, as it did when entries were scanned in order.
            index.insert(entry.hostName, tag: entry.port ?? listenerPort, value: entry.vhost)
        }
    }

    /// The vhost index for `host` (the raw Host value), or the default vhost, or nil.
    package func route(host: RawSpan?) -> Int? {
        guard let host else { return defaultVhost }
        return host.withUnsafeBytes { host in
            guard let (name, port) = Self.split(host) else { return defaultVhost }
            return index.value(unchecked: name, tag: port ?? listenerPort) ?? defaultVhost
        }
    }

    /// The vhost for a request head's Host value (`host`, a range of `head`; nil without a Host).
    package func route(host: Range<Int>?, in head: RawSpan) -> Int? {
        guard let host else { return defaultVhost }
        return route(host: head.extracting(host))
    }

    /// Splits `host[:port]` or `[v6][:port]`; nil when the port is not a number in 1–65535.
    static func split(_ host: UnsafeRawBufferPointer) -> (UnsafeRawBufferPointer, UInt16?)? {
        var end = host.count
        var port: UInt16? = nil
        let colon: UInt8 = 0x3A
        // The port follows the last colon, unless that colon is inside an IPv6 literal.
        if let last = host.lastIndex(of: colon), host.first != 0x5B || (last > 0 && host[last - 1] == 0x5D) {
            if host.first != 0x5B, host[..<last].contains(colon) {
                // A bare IPv6 literal without brackets: no port.
            } else {
                var value = 0
                let digits = host[(last + 1)...]
                if digits.isEmpty || digits.count > 5 { return nil }
                for d in digits {
                    guard d >= 0x30 && d <= 0x39 else { return nil }
                    value = value * 10 + Int(d - 0x30)
                }
                guard value >= 1 && value <= 65535 else { return nil }
                port = UInt16(value)
                end = last
            }
        }
        var start = 0
        if end >= 2 && host[0] == 0x5B && host[end - 1] == 0x5D {
            start = 1
            end -= 1
        }
        if end > start && host[end - 1] == 0x2E { end -= 1 }  // trailing dot
        return (UnsafeRawBufferPointer(rebasing: host[start..<end]), port)
    }
}
