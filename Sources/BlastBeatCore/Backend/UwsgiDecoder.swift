/// Decodes a uwsgi packet into its pairs, for tests and the backend SDK.
///
/// Strict counterpart of `UwsgiEncoder`: modifier1 and modifier2 must be 0, the size field must equal the
/// length of the pairs (the standard convention, see `UwsgiEncoder`), and the pairs must fill exactly
/// that many bytes. Packets in the original gateway's convention (size including the 4-byte header) are
/// therefore rejected. Pairs are returned in packet order with duplicates kept; empty keys are allowed.
package enum UwsgiDecoder {
    /// The packet's pairs in order, or nil when it is malformed.
    package static func decode(_ packet: [UInt8]) -> [(key: [UInt8], value: [UInt8])]? {
        guard packet.count >= 4, packet[0] == 0, packet[3] == 0 else { return nil }
        let size = Int(packet[1]) | Int(packet[2]) << 8
        guard size == packet.count - 4 else { return nil }

        var pairs: [(key: [UInt8], value: [UInt8])] = []
        var position = 4
        while position < packet.count {
            guard let key = self.field(packet, at: &position), let value = self.field(packet, at: &position) else {
                return nil
            }
            pairs.append((key: Array(packet[key]), value: Array(packet[value])))
        }
        return pairs
    }

    /// Reads one length-prefixed field at `position` and moves past it; nil when it overruns the packet.
    private static func field(_ packet: [UInt8], at position: inout Int) -> Range<Int>? {
        guard packet.count - position >= 2 else { return nil }
        let length = Int(packet[position]) | Int(packet[position + 1]) << 8
        let start = position + 2
        guard packet.count - start >= length else { return nil }
        position = start + length
        return start..<position
    }
}
