/// New connections turned away at `max-connections` (their address holds its share already) and held, unread, for
/// a moment before they are reset (README "Under a flood"): a flood that reconnects the instant it is refused would
/// otherwise cycle through the listen queue as fast as the gateway can refuse it, and other tenants' new clients
/// wait behind every one of those attempts. Held, each of the flood's clients costs an `accept` and a reset per
/// hold instead (test_tenant_isolation.py).
///
/// A ring of descriptors in the order they came, with the time each may go; bounded by `capacity` (each one is a
/// descriptor: the owner picks a capacity its descriptor limit can spare, and resets at once when it is full).
/// Only the owner does I/O: this holds numbers.
package struct Tarpit {
    private var fds: [Int32]
    private var until: [Double]
    private var head = 0
    package private(set) var count = 0

    package init(capacity: Int) {
        fds = [Int32](repeating: -1, count: max(0, capacity))
        until = [Double](repeating: 0, count: max(0, capacity))
    }

    package var capacity: Int { fds.count }
    package var isEmpty: Bool { count == 0 }

    /// Holds `fd` until `time`; false when the tarpit is full (the caller resets it now).
    package mutating func hold(_ fd: Int32, until time: Double) -> Bool {
        guard count < fds.count else { return false }
        let slot = (head + count) % fds.count
        fds[slot] = fd
        until[slot] = time
        count += 1
        return true
    }

    /// The oldest descriptor when its time has come (at `now` or before), else nil. Times are not in order (the
    /// owner spreads them), so one held longer can keep the ones behind it for as long as that spread.
    package mutating func release(now: Double) -> Int32? {
        guard count > 0, until[head] <= now else { return nil }
        return take()
    }

    /// The oldest descriptor whatever its time (to empty the tarpit at shutdown), else nil.
    package mutating func releaseAny() -> Int32? {
        count > 0 ? take() : nil
    }

    private mutating func take() -> Int32 {
        let fd = fds[head]
        fds[head] = -1
        head = (head + 1) % fds.count
        count -= 1
        return fd
    }
}
