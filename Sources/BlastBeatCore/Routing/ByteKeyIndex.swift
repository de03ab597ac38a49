/// Byte strings (each with a small tag, such as a port) to values, with lookups that take constant time
/// and allocate nothing: the key bytes are looked up where they lie, in the request or message.
///
/// An open-addressing table (linear probing, at most half full) of positions in `entries`. Keys are
/// hashed with the standard library's `Hasher`, SipHash with a random per-process key, so a client
/// cannot choose Host values or identities that collide and turn lookups into scans. With
/// `caseInsensitive`, ASCII letters are folded to lower case on insert and on lookup. Removal shifts the
/// probe chain back instead of leaving tombstones, so a table whose keys come and go (backend connections)
/// stays as fast as a fresh one.
package struct ByteKeyIndex: Sendable {
    package typealias Value = Int

    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var key: [UInt8]
        @usableFromInline var tag: UInt16
        @usableFromInline var hash: Int
        @usableFromInline var value: Value

        @inlinable
        init(key: [UInt8], tag: UInt16, hash: Int, value: Value) {
            self.key = key
            self.tag = tag
            self.hash = hash
            self.value = value
        }
    }

    @usableFromInline var entries: [Entry] = []
    /// Positions in `entries`; -1 is an empty slot. The count is a power of two.
    @usableFromInline var slots: [Int32] = [Int32](repeating: -1, count: 8)
    @usableFromInline let caseInsensitive: Bool

    /// Up to this many keys a lookup compares them one by one instead of hashing: cheaper than SipHash for
    /// the few vhosts and nodes most gateways have, and it cannot be slowed down by chosen keys either.
    @usableFromInline static var scanLimit: Int { 8 }

    @inlinable
    package init(caseInsensitive: Bool) {
        self.caseInsensitive = caseInsensitive
    }

    @inlinable package var count: Int { entries.count }

    /// Every value, in no particular order.
    package var values: some Collection<Value> { entries.lazy.map(\.value) }

    /// The keys (as stored) that map to `value`.
    package func keys(withValue value: Value) -> [[UInt8]] { entries.filter { $0.value == value }.map(\.key) }

    /// Adds `key`/`tag` → `value`. An existing key keeps its value (the first one added wins) and false
    /// is returned.
    @discardableResult
    package mutating func insert(_ key: [UInt8], tag: UInt16 = 0, value: Value) -> Bool {
        let stored = caseInsensitive ? key.map(Self.lowercased) : key
        let hash = stored.withUnsafeBytes { self.hash($0, tag: tag) }
        if stored.withUnsafeBytes({ find($0, tag: tag, hash: hash) }) != nil { return false }
        if (entries.count + 1) * 2 > slots.count { rebuild(slotCount: slots.count * 2) }
        entries.append(Entry(key: stored, tag: tag, hash: hash, value: value))
        slots[emptySlot(for: hash)] = Int32(entries.count - 1)
        return true
    }

    /// The value for `key`/`tag`, or nil.
    @inlinable
    package func value(for key: RawSpan, tag: UInt16 = 0) -> Value? {
        key.withUnsafeBytes { value(unchecked: $0, tag: tag) }
    }

    /// The lookup itself, on the key's pointer: hashing and comparing run without a bounds check per byte.
    @inlinable
    func value(unchecked key: UnsafeRawBufferPointer, tag: UInt16) -> Value? {
        if entries.count <= Self.scanLimit {
            for i in entries.indices where entries[i].tag == tag && matches(key, entries[i].key) {
                return entries[i].value
            }
            return nil
        }
        guard let (_, position) = find(key, tag: tag, hash: hash(key, tag: tag)) else { return nil }
        return entries[position].value
    }

    @inlinable
    package func value(for key: [UInt8], tag: UInt16 = 0) -> Value? {
        key.withUnsafeBytes { value(unchecked: $0, tag: tag) }
    }

    /// Removes `key`/`tag` if present, and returns its value.
    @discardableResult
    package mutating func remove(_ key: RawSpan, tag: UInt16 = 0) -> Value? {
        key.withUnsafeBytes { remove(unchecked: $0, tag: tag) }
    }

    private mutating func remove(unchecked key: UnsafeRawBufferPointer, tag: UInt16) -> Value? {
        guard let (slot, position) = find(key, tag: tag, hash: hash(key, tag: tag)) else { return nil }
        let removed = entries[position].value
        deleteSlot(slot)
        // The last entry fills the gap; its slot is pointed at its new position.
        let last = entries.count - 1
        if position != last {
            entries.swapAt(position, last)
            let moved = slotHolding(last, hash: entries[position].hash)
            slots[moved] = Int32(position)
        }
        entries.removeLast()
        return removed
    }

    @discardableResult
    package mutating func remove(_ key: [UInt8], tag: UInt16 = 0) -> Value? {
        key.withUnsafeBytes { remove(unchecked: $0, tag: tag) }
    }

    // MARK: table

    @inlinable
    func find(_ key: UnsafeRawBufferPointer, tag: UInt16, hash: Int) -> (slot: Int, position: Int)? {
        let mask = slots.count - 1
        var slot = hash & mask
        while true {
            let position = Int(slots[slot])
            if position < 0 { return nil }
            if entries[position].hash == hash && entries[position].tag == tag && matches(key, entries[position].key) {
                return (slot, position)
            }
            slot = (slot + 1) & mask
        }
    }

    private func emptySlot(for hash: Int) -> Int {
        let mask = slots.count - 1
        var slot = hash & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        return slot
    }

    private func slotHolding(_ position: Int, hash: Int) -> Int {
        let mask = slots.count - 1
        var slot = hash & mask
        while Int(slots[slot]) != position { slot = (slot + 1) & mask }
        return slot
    }

    /// Empties `slot` and moves later members of its probe chain back, so every key stays reachable from
    /// its home slot without a gap (linear probing's backward-shift deletion).
    private mutating func deleteSlot(_ slot: Int) {
        let mask = slots.count - 1
        var hole = slot
        var next = slot
        slots[hole] = -1
        while true {
            next = (next + 1) & mask
            let position = Int(slots[next])
            if position < 0 { return }
            let home = entries[position].hash & mask
            // The entry may move into the hole only if its home is not cyclically in (hole, next].
            let homeBetween = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if homeBetween { continue }
            slots[hole] = slots[next]
            slots[next] = -1
            hole = next
        }
    }

    private mutating func rebuild(slotCount: Int) {
        slots = [Int32](repeating: -1, count: slotCount)
        for position in entries.indices {
            slots[emptySlot(for: entries[position].hash)] = Int32(position)
        }
    }

    @inlinable
    func hash(_ key: UnsafeRawBufferPointer, tag: UInt16) -> Int {
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

    @inlinable
    func matches(_ key: UnsafeRawBufferPointer, _ stored: [UInt8]) -> Bool {
        guard key.count == stored.count else { return false }
        return stored.withUnsafeBytes { stored in
            if !caseInsensitive { return Self.bytesEqual(key, stored) }
            for i in 0..<stored.count where Self.lowercased(key[i]) != stored[i] { return false }
            return true
        }
    }

    /// Equal-length byte compare, eight bytes at a time (identities are compared for every backend message).
    @inlinable
    static func bytesEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
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

    @inlinable @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}


