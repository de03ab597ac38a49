import Testing

@testable import BlastBeatBackend

/// Reading a gateway's `X-BlastBeat-Workers` and deciding which labelled connections to open or close.
@Suite struct WorkerCountTests {
    private func parse(_ text: String?) -> WorkerCount.Advertised {
        guard let text else { return WorkerCount.parse(nil) }
        return Array(text.utf8).withUnsafeBytes { WorkerCount.parse($0) }
    }

    @Test func parsesDecimalCounts() {
        #expect(parse(nil) == .absent)
        #expect(parse("1") == .workers(1))
        #expect(parse("2") == .workers(2))
        #expect(parse("016") == .workers(16))
        #expect(parse("256") == .workers(256))
    }

    @Test func refusesWhatIsNotACount() {
        for text in ["", "0", "000", "257", "999", "1000", "2 ", " 2", "+2", "-1", "2.0", "x", "0x2"] {
            #expect(parse(text) == .malformed, "\(text)")
        }
    }

    @Test func opensTheMissingConnections() {
        #expect(WorkerCount.change(open: 1, advertised: .workers(2)) == .open(1..<2))
        #expect(WorkerCount.change(open: 1, advertised: .workers(4)) == .open(1..<4))
        // After a connection failed to open: only the rest.
        #expect(WorkerCount.change(open: 2, advertised: .workers(4)) == .open(2..<4))
    }

    @Test func closesTheExtraConnections() {
        #expect(WorkerCount.change(open: 4, advertised: .workers(2)) == .close(2..<4))
        #expect(WorkerCount.change(open: 2, advertised: .workers(1)) == .close(1..<2))
        // An old gateway or the libzmq engine: one connection.
        #expect(WorkerCount.change(open: 3, advertised: .absent) == .close(1..<3))
    }

    @Test func keepsTheConnectionsOtherwise() {
        #expect(WorkerCount.change(open: 1, advertised: .absent) == .unchanged)
        #expect(WorkerCount.change(open: 1, advertised: .workers(1)) == .unchanged)
        #expect(WorkerCount.change(open: 2, advertised: .workers(2)) == .unchanged)
        #expect(WorkerCount.change(open: 2, advertised: .malformed) == .ignored)
    }

    @Test func labelsAsZMQMetadataTakesIt() {
        #expect(WorkerCount.label(worker: 0) == "X-BlastBeat-Worker:0")
        #expect(WorkerCount.label(worker: 17) == "X-BlastBeat-Worker:17")
    }

    @Test func linkStatesThatCountAsUp() {
        #expect(GatewayLink.awaitingWorkerCount.isUp && GatewayLink.connected.isUp)
        #expect(!GatewayLink.connecting.isUp)
    }
}
