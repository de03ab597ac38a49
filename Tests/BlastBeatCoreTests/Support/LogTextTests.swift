import BlastBeatCore
import Testing

@Suite struct LogTextTests {
    @Test func controlBytesAndBackslashAreEscaped() {
        let forged = Array("PUB\n2099-01-01 blastbeat INFO x\u{1b}[31m\\x41\r".utf8)
        #expect(LogText.escaped(forged) == "PUB\\x0a2099-01-01 blastbeat INFO x\\x1b[31m\\x5cx41\\x0d")
        #expect(LogText.quoted(Array("beta".utf8)) == "\"beta\"")
        #expect(LogText.escaped([0xC3, 0xA9, 0x00]) == "\\xc3\\xa9\\x00")
    }

    @Test func longTextIsCut() {
        let long = [UInt8](repeating: 0x61, count: 100)
        #expect(LogText.escaped(long) == String(repeating: "a", count: 64) + "...")
        #expect(LogText.escaped(long, limit: 100) == String(repeating: "a", count: 100))
    }
}
