import BlastBeatCore
import Testing

/// `client-rate` / `client-burst` (README "Limits per vhost"): defaults, inheritance, and the lines of bad values.
struct ConfigParserTenantLimitTests {
    static let base = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\n"

    static func parse(_ text: String) throws(ConfigError) -> Configuration {
        try ConfigParser.parse(text, file: "test.ini")
    }

    @Test func clientRateInheritsAndTheBurstDefaultsToOneSecondsWorth() throws {
        let config = try Self.parse(
            Self.base + """
                client-rate = 20
                [blastbeat:a.test]
                node = a
                client-rate = 0.5
                [blastbeat:b.test]
                node = b
                [blastbeat:c.test]
                node = c
                client-rate = off
                [blastbeat:d.test]
                node = d
                client-burst = 100
                """)
        let limits = config.vhosts.map(\.limits)
        #expect(limits[0].clientRate == 0.5 && limits[0].clientBurst == 1)
        #expect(limits[1].clientRate == 20 && limits[1].clientBurst == 20)
        #expect(limits[2].clientRate == nil)
        #expect(limits[3].clientRate == 20 && limits[3].clientBurst == 100)
        let global = try Self.parse(Self.base + "client-rate = 2.5\nclient-burst = 7\n[blastbeat:x]\nnode = x\n")
        #expect(global.vhosts[0].limits.clientRate == 2.5 && global.vhosts[0].limits.clientBurst == 7)
        #expect(try Self.parse(Self.base + "[blastbeat:x]\nnode = x\n").vhosts[0].limits.clientRate == nil)
    }

    @Test func maxConnectionsPerVhostUpToTheTotal() throws {
        let config = try Self.parse(
            Self.base + "max-connections = 100\n[blastbeat:a]\nnode = a\nmax-connections = 100\n[blastbeat:b]\nnode = b\n")
        #expect(config.vhosts[0].limits.maxConnections == 100)
        #expect(config.vhosts[1].limits.maxConnections == nil)
    }

    @Test func refusalPauseDefaultsToASecondAndMayBeOff() throws {
        #expect(try Self.parse(Self.base + "[blastbeat:x]\nnode = x\n").refusalPause == 1)
        #expect(try Self.parse(Self.base + "refusal-pause = 0.25\n[blastbeat:x]\nnode = x\n").refusalPause == 0.25)
        #expect(try Self.parse(Self.base + "refusal-pause = off\n[blastbeat:x]\nnode = x\n").refusalPause == 0)
    }

    @Test(arguments: [
        (base + "refusal-pause = 11\n[blastbeat:h]\nnode = a\n", 4, "refusal-pause", "at most 10 seconds or off"),
        (base + "refusal-pause = 0\n[blastbeat:h]\nnode = a\n", 4, "refusal-pause", "greater than 0"),
        (base + "[blastbeat:h]\nnode = a\nrefusal-pause = 1\n", 6, "refusal-pause", ""),
        (base + "client-rate = 0\n[blastbeat:h]\nnode = a\n", 4, "client-rate", "expected requests per second"),
        (base + "client-rate = -1\n[blastbeat:h]\nnode = a\n", 4, "client-rate", "a number greater than 0"),
        (base + "client-rate = 10/s\n[blastbeat:h]\nnode = a\n", 4, "client-rate", "got \"10/s\""),
        (base + "client-rate = 2000000\n[blastbeat:h]\nnode = a\n", 4, "client-rate", "at most 1000000"),
        (base + "[blastbeat:h]\nnode = a\nclient-rate = 1e3\n", 6, "client-rate", "expected requests per second"),
        (base + "[blastbeat:h]\nnode = a\nclient-burst = 0\n", 6, "client-burst", "a whole number of requests >= 1"),
        (base + "[blastbeat:h]\nnode = a\nclient-burst = 5\n", 6, "client-burst", "client-burst needs a client-rate"),
        (base + "client-rate = 5\n[blastbeat:h]\nnode = a\nclient-rate = off\nclient-burst = 5\n", 8, "client-burst",
         "vhost h has none"),
        (base + "client-burst = 5\n[blastbeat:h]\nnode = a\n", 4, "client-burst", "client-burst needs a client-rate"),
        (base + "max-connections = 100\n[blastbeat:h]\nnode = a\nmax-connections = 101\n", 7, "max-connections",
         "expected at most [blastbeat]'s max-connections (100), the total for all vhosts, got 101 for vhost h"),
        (base + "[blastbeat:h]\nnode = a\nmax-connections = 10001\n", 6, "max-connections", "(10000)"),
        (base + "[blastbeat:h]\nnode = a\nmax-connections = 0\n", 6, "max-connections", "expected a whole number >= 1"),
    ])
    func rejected(ini: String, line: Int, key: String, message: String) {
        do {
            _ = try Self.parse(ini)
            Issue.record("accepted: \(ini)")
        } catch {
            #expect(error.line == line)
            #expect(error.key == key)
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}
