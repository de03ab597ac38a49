/// A per-vhost count the workers keep in shared memory so that its limit holds for the gateway as a whole
/// (README.md, "Limits per vhost").
package enum VhostCount: Int, CaseIterable, Sendable {
    /// Requests and WebSockets the vhost's nodes hold (`max-in-flight`).
    case inFlight
    /// Client connections whose current or last request is for the vhost (`max-connections`).
    case connections
}

/// Where each worker's counts sit in the shared region (BlastBeatSystem's SharedVhostCounts): one column per
/// worker, the global value being the sum of the columns. A column is the worker's alone to change, so when
/// a worker dies the parent zeroes its column and its counts are gone with it; and each column is contiguous
/// (worker, then count, then vhost), so workers adding to the same vhost's count do not write the same cache
/// line.
///
/// The region is mapped before the workers are forked and cannot grow (a restarted worker inherits it), so
/// it is sized for more vhosts than the configuration has: `capacity(forVhosts:)`. A reload whose vhosts (the
/// retired ones included: they keep their index) do not fit is refused; a restart maps a larger region.
package struct VhostCountLayout: Sendable, Equatable {
    package let vhostCapacity: Int
    package let workers: Int

    package init(vhostCapacity: Int, workers: Int) {
        precondition(vhostCapacity > 0 && workers > 0, "a layout needs room for at least one vhost and one worker")
        self.vhostCapacity = vhostCapacity
        self.workers = workers
    }

    /// Room for 4 times the configured vhosts, and at least 1,024: reloads usually add a few. With 2 workers
    /// that is 32 KiB of address space, touched only where vhosts count.
    package static func capacity(forVhosts vhosts: Int) -> Int { max(1024, 4 * vhosts) }

    /// How many counters the region holds (each one a machine word).
    package var slots: Int { workers * VhostCount.allCases.count * vhostCapacity }

    /// Whether `vhosts` vhosts (by index 0..<vhosts) have counters.
    package func fits(vhosts: Int) -> Bool { vhosts <= vhostCapacity }

    /// The slot of `worker`'s `count` of `vhost`.
    package func slot(_ count: VhostCount, vhost: Int, worker: Int) -> Int {
        precondition(vhost >= 0 && vhost < vhostCapacity && worker >= 0 && worker < workers, "vhost or worker out of the layout")
        return (worker * VhostCount.allCases.count + count.rawValue) * vhostCapacity + vhost
    }

    /// The slots of `worker`'s column, contiguous: what the parent zeroes when the worker dies.
    package func column(of worker: Int) -> Range<Int> {
        let width = VhostCount.allCases.count * vhostCapacity
        return worker * width..<(worker + 1) * width
    }
}
