import BlastBeatCore
import Testing

@Suite struct UwsgiDecoderTests {
    struct ValidCase: Sendable, CustomTestStringConvertible {
        var name: String
        var packet: [UInt8]
        var pairs: [([UInt8], [UInt8])]
        var testDescription: String { self.name }
    }

    static let validCases: [ValidCase] = [
        ValidCase(name: "no pairs", packet: [0, 0, 0, 0], pairs: []),
        ValidCase(
            name: "one pair",
            packet: [0, 8, 0, 0, 1, 0, 0x41, 3, 0, 0x62, 0x63, 0x64],
            pairs: [([0x41], [0x62, 0x63, 0x64])]
        ),
        ValidCase(
            name: "empty value and duplicate key kept in order",
            packet: [0, 11, 0, 0, 1, 0, 0x4B, 0, 0, 1, 0, 0x4B, 1, 0, 0x76],
            pairs: [([0x4B], []), ([0x4B], [0x76])]
        ),
        ValidCase(name: "empty key allowed", packet: [0, 4, 0, 0, 0, 0, 0, 0], pairs: [([], [])]),
    ]

    @Test(arguments: Self.validCases)
    func decodesValidPackets(_ row: ValidCase) throws {
        let pairs = try #require(UwsgiDecoder.decode(row.packet))
        #expect(pairs.map(\.key) == row.pairs.map(\.0))
        #expect(pairs.map(\.value) == row.pairs.map(\.1))
    }

    struct MalformedCase: Sendable, CustomTestStringConvertible {
        var name: String
        var packet: [UInt8]
        var testDescription: String { self.name }
    }

    static let malformedCases: [MalformedCase] = [
        MalformedCase(name: "empty", packet: []),
        MalformedCase(name: "short header", packet: [0, 0, 0]),
        MalformedCase(name: "modifier1 not 0", packet: [5, 0, 0, 0]),
        MalformedCase(name: "modifier2 not 0", packet: [0, 0, 0, 1]),
        MalformedCase(name: "size counts the header (original convention)", packet: [0, 8, 0, 0, 1, 0, 0x41, 0, 0]),
        MalformedCase(name: "size too large", packet: [0, 9, 0, 0, 1, 0, 0x41, 0, 0]),
        MalformedCase(name: "size too small", packet: [0, 4, 0, 0, 1, 0, 0x41, 0, 0]),
        MalformedCase(name: "key length runs past the end", packet: [0, 3, 0, 0, 5, 0, 0x41]),
        MalformedCase(name: "half a key length", packet: [0, 1, 0, 0, 1]),
        MalformedCase(name: "missing value length", packet: [0, 3, 0, 0, 1, 0, 0x41]),
        MalformedCase(name: "half a value length", packet: [0, 4, 0, 0, 1, 0, 0x41, 0]),
        MalformedCase(name: "value runs past the end", packet: [0, 6, 0, 0, 1, 0, 0x41, 2, 0, 0x42]),
    ]

    @Test(arguments: Self.malformedCases)
    func rejectsMalformedPackets(_ row: MalformedCase) {
        #expect(UwsgiDecoder.decode(row.packet) == nil)
    }

    @Test func roundTripsEncoderOutput() throws {
        let request = UwsgiTestSupport.request(target: "/x?y", headers: [("Host", "h"), ("X-A", "1")])
        let packet = try UwsgiTestSupport.encode(request)
        let pairs = try #require(UwsgiTestSupport.pairs(packet))
        #expect(pairs.count == 13)
        #expect(pairs.last?.0 == "HTTP_X_A")
        #expect(pairs.last?.1 == "1")
    }
}
