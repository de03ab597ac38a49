package import BlastBeatCore
import Glibc
internal import CSystem

/// The per-vhost counts (`max-in-flight`, `max-connections`) of every worker process, in one anonymous
/// MAP_SHARED mapping that the parent makes before it forks the workers (README.md, "Worker processes"):
/// each worker adds to its own column with atomic adds and reads the others', so a vhost's limit holds for
/// the gateway as a whole. The layout is VhostCountLayout's.
///
/// Owns the mapping: it is unmapped in deinit, in each process separately (a forked worker inherits it and
/// holds it for its whole life). A lone gateway maps one with a single column, so the code path is the same.
package final class SharedVhostCounts {
    package let layout: VhostCountLayout
    private let words: UnsafeMutablePointer<CLong>

    /// Maps zeroed counters for `layout` (anonymous mappings start zeroed).
    package init(_ layout: VhostCountLayout) throws(SystemError) {
        let bytes = layout.slots * MemoryLayout<CLong>.stride
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
            base != UnsafeMutableRawPointer(bitPattern: -1)
        else { throw SystemError(call: "mmap", errno: errno) }
        self.layout = layout
        self.words = base.bindMemory(to: CLong.self, capacity: layout.slots)
    }

    deinit { munmap(words, layout.slots * MemoryLayout<CLong>.stride) }

    /// Adds `delta` to `worker`'s `count` of `vhost`.
    package func add(_ count: VhostCount, vhost: Int, worker: Int, _ delta: Int) {
        _ = CSystem_atomic_add(words + layout.slot(count, vhost: vhost, worker: worker), delta)
    }

    /// Takes one of `limit` places of the vhost's `count` for `worker`: adds first, then reads the sum of every
    /// column, and undoes the add when the sum passes the limit. Two workers taking the last place at once
    /// may both be refused, never both admitted: each add comes before its read (sequentially consistent).
    package func take(_ count: VhostCount, vhost: Int, worker: Int, limit: Int) -> Bool {
        let own = words + layout.slot(count, vhost: vhost, worker: worker)
        _ = CSystem_atomic_add(own, 1)
        if total(count, vhost: vhost) <= limit { return true }
        _ = CSystem_atomic_add(own, -1)
        return false
    }

    /// `worker`'s own count.
    package func value(_ count: VhostCount, vhost: Int, worker: Int) -> Int {
        CSystem_atomic_load(words + layout.slot(count, vhost: vhost, worker: worker))
    }

    /// The gateway's count: the sum of the workers' columns.
    package func total(_ count: VhostCount, vhost: Int) -> Int {
        var sum = 0
        for worker in 0..<layout.workers {
            sum += CSystem_atomic_load(words + layout.slot(count, vhost: vhost, worker: worker))
        }
        return sum
    }

    /// Zeroes the column of a worker that died (the parent's doing, before it starts the worker again): what
    /// it held is no longer held. Returns, per count, the sum it held.
    @discardableResult
    package func clear(worker: Int) -> [VhostCount: Int] {
        var held: [VhostCount: Int] = [:]
        let width = layout.vhostCapacity
        for count in VhostCount.allCases {
            let start = layout.slot(count, vhost: 0, worker: worker)
            var sum = 0
            for slot in start..<start + width { sum += CSystem_atomic_exchange(words + slot, 0) }
            held[count] = sum
        }
        return held
    }
}
