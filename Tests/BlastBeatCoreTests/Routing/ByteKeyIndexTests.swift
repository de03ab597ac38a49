import Testing

@testable import BlastBeatCore

@Suite struct ByteKeyIndexTests {
    func lookup(_ index: ByteKeyIndex, _ key: String, tag: UInt16 = 0) -> Int? {
        Array(key.utf8).withUnsafeBytes { index.value(for: $0.bytes, tag: tag) }
    }

    @Test func tenThousandKeysAllFound() {
        var index = ByteKeyIndex(caseInsensitive: false)
        for i in 0..<10_000 {
            let added = index.insert(Array("tenant-\(i).example".utf8), value: i)
            #expect(added)
        }
        #expect(index.count == 10_000)
        for i in stride(from: 0, to: 10_000, by: 7) { #expect(lookup(index, "tenant-\(i).example") == i) }
        #expect(lookup(index, "tenant-10000.example") == nil)
        #expect(lookup(index, "") == nil)
    }

    @Test func caseFoldingOnlyWhenAsked() {
        var folded = ByteKeyIndex(caseInsensitive: true)
        folded.insert(Array("Example.COM".utf8), value: 1)
        #expect(lookup(folded, "example.com") == 1)
        #expect(lookup(folded, "EXAMPLE.com") == 1)
        var exact = ByteKeyIndex(caseInsensitive: false)
        exact.insert(Array("Node".utf8), value: 1)
        #expect(lookup(exact, "Node") == 1)
        #expect(lookup(exact, "node") == nil)
    }

    @Test func tagsSeparateEqualKeysAndTheFirstInsertWins() {
        var index = ByteKeyIndex(caseInsensitive: true)
        let first = index.insert(Array("a.test".utf8), tag: 80, value: 1)
        let otherPort = index.insert(Array("a.test".utf8), tag: 8080, value: 2)
        let again = index.insert(Array("A.TEST".utf8), tag: 80, value: 3)
        #expect(first && otherPort && !again)
        #expect(lookup(index, "a.test", tag: 80) == 1)
        #expect(lookup(index, "a.test", tag: 8080) == 2)
        #expect(lookup(index, "a.test", tag: 443) == nil)
    }

    @Test func removedKeysAreGoneAndOthersStay() {
        var index = ByteKeyIndex(caseInsensitive: false)
        for i in 0..<100 { index.insert(Array("n\(i)".utf8), value: i) }
        index.remove(Array("n42".utf8))
        #expect(lookup(index, "n42") == nil)
        for i in 0..<100 where i != 42 { #expect(lookup(index, "n\(i)") == i) }
        index.insert(Array("n42".utf8), value: 420)
        #expect(lookup(index, "n42") == 420)
    }

    /// Long keys (beyond the eight-byte compare steps) and keys that differ only in their last byte.
    @Test func longKeysCompareEveryByte() {
        var index = ByteKeyIndex(caseInsensitive: false)
        let base = String(repeating: "x", count: 61)
        for c in "abc" { index.insert(Array((base + String(c)).utf8), value: Int(c.asciiValue!)) }
        #expect(lookup(index, base + "b") == 98)
        #expect(lookup(index, base + "d") == nil)
        #expect(lookup(index, base) == nil)
    }

    /// Keys that come and go (backend connections): after any mix of inserts and removals the index answers
    /// exactly as a dictionary does (backward-shift deletion keeps every probe chain whole).
    @Test func randomInsertsAndRemovalsMatchADictionary() {
        var index = ByteKeyIndex(caseInsensitive: false)
        var reference: [String: Int] = [:]
        var state: UInt64 = 0x1234_5678
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for step in 0..<20_000 {
            let key = "peer-\(next() % 600)"
            if next() % 3 == 0 {
                #expect(index.remove(Array(key.utf8)) == reference.removeValue(forKey: key), "step \(step)")
            } else if reference[key] == nil {
                index.insert(Array(key.utf8), value: step)
                reference[key] = step
            }
        }
        #expect(index.count == reference.count)
        for i in 0..<600 { #expect(lookup(index, "peer-\(i)") == reference["peer-\(i)"]) }
        #expect(Set(index.values) == Set(reference.values))
    }
}

