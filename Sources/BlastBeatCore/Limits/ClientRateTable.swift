/// The token buckets of `client-rate`: one per (vhost, client prefix), found in constant time, in a table
/// that cannot grow past `capacity` entries whatever the clients do.
///
/// A scan from many source addresses (or an IPv6 client walking its /64s) would otherwise add a bucket per
/// address forever. Two things bound it:
/// - a bucket that has refilled to full is the same as no bucket (a new one starts full), so the least
///   recently used buckets are dropped as they become full, a couple per lookup;
/// - at `capacity`, the least recently used bucket gives its place to the new one. That bucket's client, if
///   it comes back, starts with a full burst again: with the default capacity that needs 65,536 other
///   prefixes to be busier than it in between, which only a flood over many addresses achieves, and such a
///   flood is spread over those addresses anyway.
///
/// Memory: about 80 bytes per bucket (the entry plus its hash-table slot), so 65,536 buckets take about
/// 5 MiB. No allocation per lookup: the key is two integers, the entries live in one array that grows only
/// until it reaches the largest number of buckets held at once, and the recency list is threaded through
/// it by index.
package struct ClientRateTable {
    package struct Key: Hashable, Sendable {
        package var prefix: ClientPrefix
        package var vhost: Int32

        package init(prefix: ClientPrefix, vhost: Int) {
            self.prefix = prefix
            self.vhost = Int32(truncatingIfNeeded: vhost)
        }
    }

    private struct Entry {
        var key: Key
        var bucket: TokenBucket
        /// Neighbours in the recency list (indices into `entries`, -1 at the ends): `newer` toward `newest`.
        var newer: Int32
        var older: Int32
        /// The bucket's own rate and burst, so the table can tell when it is full without asking the config.
        var rate: Double
        var burst: Int32
        /// When a refusal of this bucket was last logged (-infinity: never).
        var logged: Double
    }

    /// Most buckets held at once.
    package let capacity: Int
    private var slots: [Key: Int32] = [:]
    private var entries: [Entry] = []
    /// Indices of `entries` whose bucket was dropped, reused before the array grows.
    private var free: [Int32] = []
    private var newest: Int32 = -1
    private var oldest: Int32 = -1

    package static let defaultCapacity = 65_536

    package init(capacity: Int = Self.defaultCapacity) {
        precondition(capacity >= 1, "a rate table needs room for one bucket")
        self.capacity = capacity
    }

    /// Buckets held now.
    package var count: Int { slots.count }

    /// A request from `key` under `rate` requests per second with bursts of `burst`: nil when it may go on,
    /// else the whole seconds (at least 1) until it could. `now` is seconds on a monotonic clock.
    package mutating func admit(_ key: Key, rate: Double, burst: Int, now: Double) -> Int? {
        if let slot = slots[key] {
            // One read and one write of the entry (each array mutation checks uniqueness).
            var entry = entries[Int(slot)]
            entry.rate = rate
            entry.burst = Int32(clamping: burst)
            let wait = entry.bucket.take(now: now, rate: rate, burst: burst)
            entries[Int(slot)] = entry
            if slot != newest {
                // A client that keeps sending stays the newest and costs no list work; the others' lookups
                // move them and forget a full bucket at the old end.
                touch(slot)
                dropFullOldest(now: now, most: 1)
            }
            return wait
        }
        dropFullOldest(now: now, most: 2)
        var bucket = TokenBucket(burst: burst, now: now)
        let wait = bucket.take(now: now, rate: rate, burst: burst)
        if slots.count >= capacity { remove(oldest) }
        let entry = Entry(
            key: key, bucket: bucket, newer: -1, older: newest, rate: rate, burst: Int32(clamping: burst), logged: -.infinity)
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
            entries[Int(slot)] = entry
        } else {
            slot = Int32(entries.count)
            entries.append(entry)
        }
        if newest >= 0 { entries[Int(newest)].newer = slot }
        newest = slot
        if oldest < 0 { oldest = slot }
        slots[key] = slot
        return wait
    }

    /// Whether the refusal `admit` just returned should be logged: at most once per `interval` seconds per bucket,
    /// kept in the bucket itself so that a flood of refusals costs no allocation and no second lookup (the bucket
    /// of the last `admit` is always the newest).
    package mutating func shouldLogLastRefusal(now: Double, interval: Double) -> Bool {
        guard newest >= 0, now - entries[Int(newest)].logged >= interval else { return false }
        entries[Int(newest)].logged = now
        return true
    }

    /// Moves `slot` to the newest end of the recency list.
    private mutating func touch(_ slot: Int32) {
        if slot == newest { return }
        unlink(slot)
        entries[Int(slot)].older = newest
        entries[Int(slot)].newer = -1
        if newest >= 0 { entries[Int(newest)].newer = slot }
        newest = slot
        if oldest < 0 { oldest = slot }
    }

    private mutating func unlink(_ slot: Int32) {
        let entry = entries[Int(slot)]
        if entry.newer >= 0 { entries[Int(entry.newer)].older = entry.older } else { newest = entry.older }
        if entry.older >= 0 { entries[Int(entry.older)].newer = entry.newer } else { oldest = entry.newer }
    }

    private mutating func remove(_ slot: Int32) {
        guard slot >= 0 else { return }
        unlink(slot)
        slots[entries[Int(slot)].key] = nil
        free.append(slot)
    }

    /// Forgets up to `most` of the least recently used buckets that are full again (bounded work per call,
    /// so the table shrinks as clients go quiet without a sweep that would stall the loop).
    private mutating func dropFullOldest(now: Double, most: Int) {
        for _ in 0..<most {
            guard oldest >= 0 else { return }
            let entry = entries[Int(oldest)]
            guard entry.bucket.isFull(now: now, rate: entry.rate, burst: Int(entry.burst)) else { return }
            remove(oldest)
        }
    }
}
