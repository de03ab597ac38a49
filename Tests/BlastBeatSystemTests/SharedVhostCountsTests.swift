import BlastBeatCore
import BlastBeatSystem
import Glibc
import Testing

@Suite struct SharedVhostCountsTests {
    @Test func aTakeThatWouldPassTheLimitIsUndoneWhicheverWorkerTakes() throws {
        let counts = try SharedVhostCounts(VhostCountLayout(vhostCapacity: 4, workers: 2))
        #expect(counts.take(.inFlight, vhost: 1, worker: 0, limit: 3))
        #expect(counts.take(.inFlight, vhost: 1, worker: 1, limit: 3))
        #expect(counts.take(.inFlight, vhost: 1, worker: 0, limit: 3))
        // Full: neither worker gets a fourth, and the refused takes leave nothing behind.
        #expect(!counts.take(.inFlight, vhost: 1, worker: 1, limit: 3))
        #expect(!counts.take(.inFlight, vhost: 1, worker: 0, limit: 3))
        #expect(counts.total(.inFlight, vhost: 1) == 3)
        #expect(counts.value(.inFlight, vhost: 1, worker: 0) == 2)
        #expect(counts.value(.inFlight, vhost: 1, worker: 1) == 1)
        // Other vhosts and the other count are untouched.
        #expect(counts.total(.inFlight, vhost: 0) == 0)
        #expect(counts.total(.connections, vhost: 1) == 0)
        counts.add(.inFlight, vhost: 1, worker: 1, -1)
        #expect(counts.take(.inFlight, vhost: 1, worker: 1, limit: 3))
    }

    @Test func clearingADeadWorkersColumnReleasesWhatItHeld() throws {
        let counts = try SharedVhostCounts(VhostCountLayout(vhostCapacity: 3, workers: 2))
        for vhost in 0..<3 { counts.add(.inFlight, vhost: vhost, worker: 1, 2) }
        counts.add(.connections, vhost: 2, worker: 1, 5)
        counts.add(.connections, vhost: 2, worker: 0, 1)
        let held = counts.clear(worker: 1)
        #expect(held == [.inFlight: 6, .connections: 5])
        #expect(counts.total(.inFlight, vhost: 0) == 0)
        // The surviving worker's count stays.
        #expect(counts.total(.connections, vhost: 2) == 1)
    }

    @Test func aForkedProcessAddsToTheSameCounts() throws {
        let counts = try SharedVhostCounts(VhostCountLayout(vhostCapacity: 2, workers: 2))
        let pid = fork()
        if pid == 0 {
            for _ in 0..<1000 { counts.add(.inFlight, vhost: 0, worker: 1, 1) }
            _exit(0)
        }
        for _ in 0..<1000 { counts.add(.inFlight, vhost: 0, worker: 0, 1) }
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        #expect(counts.value(.inFlight, vhost: 0, worker: 1) == 1000)
        #expect(counts.total(.inFlight, vhost: 0) == 2000)
    }
}
