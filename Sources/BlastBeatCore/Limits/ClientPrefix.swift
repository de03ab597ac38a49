/// A client address as the unit `client-rate` counts: an IPv4 address whole, an IPv6 address by its /64.
///
/// Why /64 for IPv6: one subscriber line or host is normally given a whole /64 (RFC 6177, SLAAC needs one), so
/// a client that rotates through its interface identifiers (privacy addresses, or deliberately, 2^64 of them)
/// would otherwise get a fresh bucket per address and be unlimited, and could fill the table with buckets.
/// The cost: hosts sharing one /64 (a data-centre subnet) share one allowance. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, from a dual-stack listener) is the IPv4 address it carries.
package struct ClientPrefix: Hashable, Sendable {
    /// The IPv4 address (in the low 32 bits), or the first 64 bits of the IPv6 address, big-endian order.
    package var bits: UInt64
    package var isIPv6: Bool

    package init(ipv4 address: UInt32) {
        self.bits = UInt64(address)
        self.isIPv6 = false
    }

    /// From the 16 bytes of an IPv6 address in network order.
    package init(ipv6 bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == 16, "an IPv6 address has 16 bytes")
        let isMapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
        if isMapped {
            self.bits = bytes[12..<16].reduce(0) { $0 << 8 | UInt64($1) }
            self.isIPv6 = false
        } else {
            self.bits = bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            self.isIPv6 = true
        }
    }

}
