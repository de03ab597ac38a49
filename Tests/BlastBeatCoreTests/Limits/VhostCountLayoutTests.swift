import Testing

@testable import BlastBeatCore

@Suite struct VhostCountLayoutTests {
    @Test(arguments: [(1, 1), (3, 2), (5, 4), (2, 64)])
    func everySlotIsDistinctAndInsideTheRegion(vhosts: Int, workers: Int) {
        let layout = VhostCountLayout(vhostCapacity: vhosts, workers: workers)
        var seen = Set<Int>()
        for worker in 0..<workers {
            for count in VhostCount.allCases {
                for vhost in 0..<vhosts {
                    let slot = layout.slot(count, vhost: vhost, worker: worker)
                    #expect(slot >= 0 && slot < layout.slots)
                    #expect(layout.column(of: worker).contains(slot))
                    seen.insert(slot)
                }
            }
        }
        #expect(seen.count == layout.slots)
    }

    @Test func columnsDoNotOverlapAndCoverTheRegion() {
        let layout = VhostCountLayout(vhostCapacity: 7, workers: 3)
        #expect(layout.column(of: 0) == 0..<14)
        #expect(layout.column(of: 1) == 14..<28)
        #expect(layout.column(of: 2) == 28..<42)
        #expect(layout.slots == 42)
    }

    @Test(arguments: [(0, 1024), (1, 1024), (256, 1024), (257, 1028), (5000, 20000)])
    func capacityLeavesRoomForReloads(vhosts: Int, capacity: Int) {
        #expect(VhostCountLayout.capacity(forVhosts: vhosts) == capacity)
        let layout = VhostCountLayout(vhostCapacity: capacity, workers: 2)
        #expect(layout.fits(vhosts: capacity))
        #expect(!layout.fits(vhosts: capacity + 1))
    }
}
