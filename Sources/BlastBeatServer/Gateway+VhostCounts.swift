import BlastBeatCore
import BlastBeatSystem

/// The per-vhost counts whose limits hold for the gateway as a whole, across worker processes (README.md,
/// "Worker processes"): `max-in-flight` and `max-connections`. This worker changes only its own column; a
/// limit is checked against the sum of every column (SharedVhostCounts).
extension Gateway {
    /// Reserves one of the vhost's `max-in-flight` places across the workers; false when they are all held.
    func takeInFlight(_ vhost: Int, limit: Int) -> Bool {
        vhostCounts.take(.inFlight, vhost: vhost, worker: countColumn, limit: limit)
    }

    func addInFlight(_ vhost: Int, _ delta: Int) {
        vhostCounts.add(.inFlight, vhost: vhost, worker: countColumn, delta)
    }

    /// What this worker's connections hold at the vhost's nodes (a reload's idleness test; the metrics, which
    /// add the workers' values up).
    func vhostInFlight(_ vhost: Int) -> Int {
        vhostCounts.value(.inFlight, vhost: vhost, worker: countColumn)
    }

    /// Takes one of the vhost's `max-connections` places across the workers; false when they are all held.
    func takeConnection(_ vhost: Int, limit: Int) -> Bool {
        vhostCounts.take(.connections, vhost: vhost, worker: countColumn, limit: limit)
    }
}
