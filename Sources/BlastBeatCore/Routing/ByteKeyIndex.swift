/// Byte strings (each with a small tag, such as a port) to integers, with lookups that take constant time
/// and allocate nothing: the key bytes are looked up where they lie, in the request or message.
///
/// An open-addressing table (linear probing, at most half full) of positions in `entries`. Keys are
/// hashed with the standard library's `Hasher`, SipHash with a random per-process key, so a client
/// cannot choose Host values or identities that collide and turn lookups into scans. With
/// `caseInsensitive`, ASCII letters are folded to lower case on insert and on lookup.
package struct ByteKeyIndex: Sendable {
    private struct Entry: Sendable {
        var key: [UInt8]
        var tag: UInt16
        var value: Int
    }

    private var entries: [Entry] = []
    /// Positions in `entries`; -1 is an empty slot. The count is a power of two.
    private var slots: [Int32] = [Int32](repeating: -1, count: 8)
    private let caseInsensitive: Bool

    package init(caseInsensitive: Bool) {
        self.caseInsensitive = caseInsensitive
    }

    package var count: Int { entries.count }

    /// Adds `key`/`tag` → `value`. An existing key keeps its value (the first one added wins) and false
    /// is returned.
    @discardableResult
    package mutating func insert(_ key: [UInt8], tag: UInt16 = 0, value: Int) -> Bool {
        let stored = caseInsensitive ? key.map(Self.lowercased) : key
        let found = stored.withUnsafeBytes { find($0, tag: tag) }
        if case .found = found { return false }
        if (entries.count + 1) * 2 > slots.count {
            grow()
        }
        entries.append(Entry(key: stored, tag: tag, value: value))
        let slot = stored.withUnsafeBytes { emptySlot(for: hash($0, tag: tag)) }
        slots[slot] = Int32(entries.count - 1)
        return true
    }

    /// Removes `key`/`tag` if present. Rebuilds the table: for rare changes (a node instance replaced).
    package mutating func remove(_ key: [UInt8], tag: UInt16 = 0) {
        let stored = caseInsensitive ? key.map(Self.lowercased) : key
        guard case .found(let position) = stored.withUnsafeBytes({ find($0, tag: tag) }) else { return }
        entries.remove(at: position)
        rebuild(slotCount: slots.count)
    }

    /// The value for `key`/`tag`, or nil.
    package func value(for key: UnsafeRawBufferPointer, tag: UInt16 = 0) -> Int? {
        if case .found(let position) = find(key, tag: tag) { return entries[position].value }
        return nil
    }

    // MARK: table

    private enum Probe {
        case found(Int)
        case missing
    }

    private func find(_ key: UnsafeRawBufferPointer, tag: UInt16) -> Probe {
        let mask = slots.count - 1
        var slot = hash(key, tag: tag) & mask
        while true {
            let position = Int(slots[slot])
            if position < 0 { return .missing }
            let entry = entries[position]
            if entry.tag == tag && matches(key, entry.key) { return .found(position) }
            slot = (slot + 1) & mask
        }
    }

    private func emptySlot(for hash: Int) -> Int {
        let mask = slots.count - 1
        var slot = hash & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        return slot
    }

    private mutating func grow() {
        rebuild(slotCount: slots.count * 2)
    }

    private mutating func rebuild(slotCount: Int) {
        slots = [Int32](repeating: -1, count: slotCount)
        for position in entries.indices {
            let slot = entries[position].key.withUnsafeBytes { emptySlot(for: hash($0, tag: entries[position].tag)) }
            slots[slot] = Int32(position)
        }
    }

    private func hash(_ key: UnsafeRawBufferPointer, tag: UInt16) -> Int {
        var hasher = Hasher()
        hasher.combine(tag)
        hasher.combine(key.count)
        if caseInsensitive {
            for byte in key { hasher.combine(Self.lowercased(byte)) }
        } else {
            hasher.combine(bytes: key)
        }
        return hasher.finalize()
    }

    private func matches(_ key: UnsafeRawBufferPointer, _ stored: [UInt8]) -> Bool {
        guard key.count == stored.count else { return false }
        return stored.withUnsafeBytes { stored in
            if !caseInsensitive { return Self.bytesEqual(key, stored) }
            for i in 0..<stored.count where Self.lowercased(key[i]) != stored[i] { return false }
            return true
        }
    }

    /// Equal-length byte compare, eight bytes at a time (identities are compared for every backend message).
    private static func bytesEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i + 8 <= a.count {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
                return false
            }
            i += 8
        }
        while i < a.count {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    @inline(__always)
    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}
