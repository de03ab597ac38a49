import Testing

@testable import BlastBeatCore

@Suite struct SessionIDTests {
    @Test func roundTripsSixteenBytes() {
        let sid = SessionID(high: 0x0102_0304_0506_0708, low: 0x1112_1314_1516_1718)
        let bytes = sid.withBytes { Array($0) }
        #expect(bytes.count == 16)
        #expect(bytes.withUnsafeBytes { SessionID($0) } == sid)
        #expect(sid.hex.count == 32)
    }

    @Test(arguments: [0, 1, 15, 17, 32])
    func rejectsOtherLengths(length: Int) {
        let bytes = [UInt8](repeating: 7, count: length)
        #expect(bytes.withUnsafeBytes { SessionID($0) } == nil)
    }
}
