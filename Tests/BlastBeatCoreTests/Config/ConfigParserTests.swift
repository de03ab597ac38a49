import BlastBeatCore
import Testing

/// Accepted files: the original's samples, syntax details, every key, listener distribution.
/// Rejected files are in ConfigParserErrorTests.swift.
struct ConfigParserTests {
    static func parse(_ text: String) throws(ConfigError) -> Configuration {
        try ConfigParser.parse(text, file: "t.ini")
    }

    static let base = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\n"

    static func address(_ text: String) -> ListenAddress {
        ListenAddress.parse(text)!
    }

    static func vhost(
        _ name: String, _ host: String, _ port: UInt16?, nodes: [String], certificate: String? = nil,
        key: String? = nil, line: Int
    ) -> VirtualHost {
        VirtualHost(
            name: name, hostName: Array(host.utf8), port: port, nodes: nodes.map { Array($0.utf8) },
            certificate: certificate, key: key, line: line)
    }

    // MARK: - The original's files

    /// The original's `blastbeat.ini` at 552783d, byte for byte.
    static let originalSample = """
        [blastbeat]
        bind = 0.0.0.0:8080
        ;bind = 192.168.173.5:8081
        bind = 0.0.0.0:8082
        bind = 0.0.0.0:8083
        bind = fe80::a00:27ff:fe13:11ac%eth0:8085

        zmq = tcp://192.168.173.5:5000

        ping-freq = 3
        uid = www-data
        gid = 1000
        max-hops = 17

        daemon = 1

        [blastbeat:quantal64.local:8443]
        bind-ssl = 192.168.173.5:8443
        certificate = quantal.crt
        key = quantal.key
        node = FOOBAR1

        [blastbeat:quantal64.local:8080]
        node = FOOBAR1

        [blastbeat:192.168.173.5:8081]
        certificate = quantal.crt
        key = quantal.key
        node = FOOBAR1
        bind-ssl = 192.168.173.5:8081
        ;bind = 0.0.0.0:8084

        [blastbeat:localhost]
        node = FOOBAR1

        """

    @Test func originalSample() throws {
        let config = try Self.parse(Self.originalSample)
        var expected = Configuration(
            file: "t.ini",
            listeners: [
                ListenerConfig(address: Self.address("0.0.0.0:8080"), tls: false, line: 2),
                ListenerConfig(address: Self.address("0.0.0.0:8082"), tls: false, line: 4),
                ListenerConfig(address: Self.address("0.0.0.0:8083"), tls: false, line: 5),
                ListenerConfig(
                    address: ListenAddress(host: .ipv6("fe80::a00:27ff:fe13:11ac", scope: "eth0"), port: 8085),
                    tls: false, line: 6),
                ListenerConfig(address: Self.address("192.168.173.5:8443"), tls: true, line: 18, dedicatedVhosts: [0]),
                ListenerConfig(address: Self.address("192.168.173.5:8081"), tls: true, line: 30, dedicatedVhosts: [2]),
            ],
            vhosts: [
                Self.vhost(
                    "quantal64.local:8443", "quantal64.local", 8443, nodes: ["FOOBAR1"], certificate: "quantal.crt",
                    key: "quantal.key", line: 17),
                Self.vhost("quantal64.local:8080", "quantal64.local", 8080, nodes: ["FOOBAR1"], line: 23),
                Self.vhost(
                    "192.168.173.5:8081", "192.168.173.5", 8081, nodes: ["FOOBAR1"], certificate: "quantal.crt",
                    key: "quantal.key", line: 26),
                Self.vhost("localhost", "localhost", nil, nodes: ["FOOBAR1"], line: 33),
            ],
            zmqEndpoint: "tcp://192.168.173.5:5000")
        expected.pingFrequency = 3
        expected.uid = "www-data"
        expected.gid = "1000"
        expected.maxHops = 17
        expected.daemon = true
        (expected.vhosts[0].certificateLine, expected.vhosts[0].keyLine) = (19, 20)
        (expected.vhosts[2].certificateLine, expected.vhosts[2].keyLine) = (27, 28)
        #expect(config == expected.readFrom(config.sources))
        #expect((0..<4).map(config.vhostIndices(forListener:)) == [[1, 3], [1, 3], [1, 3], [1, 3]])
        #expect(config.vhostIndices(forListener: 4) == [0])
        #expect(config.vhostIndices(forListener: 5) == [2])
    }

    /// The original's sample configuration (abridged) with annotations after the values: they are inline comments
    /// now, so the file reads the same as without.
    static let annotatedSample = """
        [blastbeat]
        bind = 0.0.0.0:8080
        ;bind = 192.168.173.5:8081          ; whole line is a comment
        bind = fe80::a00:27ff:fe13:11ac%eth0:8085
        zmq = tcp://192.168.173.5:5000
        ping-freq = 3
        uid = www-data
        gid = 1000
        max-hops = 17
        daemon = 1                           ; ignored by the original

        [blastbeat:quantal64.local:8443]     ; Host must be exactly "quantal64.local:8443"
        bind-ssl = 192.168.173.5:8443        ; dedicated TLS listener: this vhost is served only here
        certificate = quantal.crt
        key = quantal.key
        node = FOOBAR1

        [blastbeat:localhost]                ; served on every shared listener; SERVER_PORT = 80
        node = FOOBAR1
        """

    @Test func annotatedSampleReadsLikeThePlainOne() throws {
        let annotated = try Self.parse(Self.annotatedSample)
        let plainText = Self.annotatedSample.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            guard let semicolon = line.firstIndex(of: ";"), semicolon != line.startIndex else { return String(line) }
            return String(line[..<semicolon])
        }.joined(separator: "\n")
        #expect(!plainText.contains("ignored by") && !plainText.contains("served only here"))
        #expect(try Self.parse(plainText) == annotated)
        #expect(
            annotated.listeners.map(\.address.description) == [
                "0.0.0.0:8080", "[fe80::a00:27ff:fe13:11ac%eth0]:8085", "192.168.173.5:8443",
            ])
        #expect(annotated.listeners.map(\.line) == [2, 4, 13])
        #expect(annotated.vhosts.map(\.name) == ["quantal64.local:8443", "localhost"])
        #expect(annotated.vhosts.map(\.line) == [12, 18])
        #expect(annotated.daemon)
        #expect(annotated.vhostIndices(forListener: 0) == [1])
        #expect(annotated.vhostIndices(forListener: 2) == [0])
    }

    @Test func readmeExample() throws {
        let config = try Self.parse(
            """
            [blastbeat]
            bind = 0.0.0.0:8080
            zmq = tcp://0.0.0.0:5000

            [blastbeat:localhost:8000]
            node = foobar1
            """)
        let expected = Configuration(
            file: "t.ini",
            listeners: [ListenerConfig(address: Self.address("0.0.0.0:8080"), tls: false, line: 2)],
            vhosts: [Self.vhost("localhost:8000", "localhost", 8000, nodes: ["foobar1"], line: 5)],
            zmqEndpoint: "tcp://0.0.0.0:5000")
        #expect(config == expected.readFrom(config.sources))
    }

    @Test func sharedCanvasExample() throws {
        let config = try Self.parse(
            "[blastbeat]\nzmq = tcp://0.0.0.0:5000\nbind = 0.0.0.0:9090\n\n"
                + "[blastbeat:localhost:9090]\nnode = sharedcanvas\n")
        #expect(config.listeners == [ListenerConfig(address: Self.address("0.0.0.0:9090"), tls: false, line: 3)])
        #expect(config.vhosts == [Self.vhost("localhost:9090", "localhost", 9090, nodes: ["sharedcanvas"], line: 5)])
    }

    @Test func defaults() throws {
        let config = try Self.parse(Self.base)
        let expected = Configuration(
            file: "t.ini", listeners: [ListenerConfig(address: Self.address("0.0.0.0:8080"), tls: false, line: 3)],
            zmqEndpoint: "tcp://127.0.0.1:5000")
        #expect(config == expected.readFrom(config.sources))
        #expect(config.pingFrequency == 3 && config.pingTimeout == 10 && config.maxHops == 10)
        #expect(config.uid == nil && config.gid == nil && config.certificate == nil)
        #expect(config.timeouts == Timeouts() && config.timeouts.header == 10 && config.timeouts.backend == 60)
        #expect(config.maxConnections == 10000 && config.maxRetryBuffer == 64 << 10 && config.maxOutputBuffer == 64 << 20)
        #expect(config.accessLog == "-" && config.logLevel == .info && !config.daemon)
    }

    // MARK: - Syntax

    @Test func lineEndingsCommentsAndWhitespace() throws {
        let text =
            "\u{FEFF}# leading comment\r\n[blastbeat]\r\n\tzmq=tcp://127.0.0.1:5000\r\n  bind = 0.0.0.0:8080\t; c\r\n"
            + "; full-line comment\r\n\r\n[blastbeat:h]   # header comment\r\nnode = a;b\r\nnode = c#d\r\n"
            + "node = e=f\r\nnode = g\t# tab comment\r\nnode\t=\th i"
        let config = try Self.parse(text)
        #expect(config.listeners.map(\.line) == [4])
        #expect(config.vhosts.count == 1 && config.vhosts[0].line == 7)
        #expect(config.vhosts[0].nodes == ["a;b", "c#d", "e=f", "g", "h i"].map { Array($0.utf8) })
    }

    @Test func mergedSectionsAndRepeatedKeys() throws {
        let config = try Self.parse(
            """
            [blastbeat:h]
            node = a
            certificate = first.crt
            key = first.key
            [blastbeat]
            zmq = tcp://127.0.0.1:1
            bind = 0.0.0.0:80
            ping-freq = 1
            [blastbeat:other]
            node = z
            [blastbeat:h]
            node = b
            node = a
            certificate = second.crt
            [blastbeat]
            zmq = tcp://127.0.0.1:5000
            bind = 0.0.0.0:81
            bind = *:80
            """)
        #expect(config.zmqEndpoint == "tcp://127.0.0.1:5000")
        #expect(config.pingFrequency == 1)
        #expect(config.listeners.map(\.address) == [Self.address("0.0.0.0:80"), Self.address("0.0.0.0:81")])
        #expect(config.vhosts.map(\.name) == ["h", "other"])
        #expect(config.vhosts[0].line == 1)
        #expect(config.vhosts[0].nodes == [Array("a".utf8), Array("b".utf8)])
        #expect(config.vhosts[0].certificate == "second.crt" && config.vhosts[0].key == "first.key")
    }

    @Test func sectionNamesAreCaseSensitiveButHostNamesLowercased() throws {
        let config = try Self.parse(
            Self.base
                + "[blastbeat:Foo]\nnode = a\nbind = 0.0.0.0:81\n[blastbeat:foo]\nnode = b\n[blastbeat:Foo]\nnode = c\n"
        )
        #expect(config.vhosts.map(\.name) == ["Foo", "foo"])
        #expect(config.vhosts.map(\.hostName) == [Array("foo".utf8), Array("foo".utf8)])
        #expect(config.vhosts[0].nodes == [Array("a".utf8), Array("c".utf8)])
    }

    struct VhostName: Sendable, CustomTestStringConvertible {
        var section: String
        var host: String
        var port: UInt16?
        var testDescription: String { section }
    }

    @Test(arguments: [
        VhostName(section: "localhost", host: "localhost", port: nil),
        VhostName(section: "Example.COM:8080", host: "example.com", port: 8080),
        VhostName(section: "192.168.173.5:8081", host: "192.168.173.5", port: 8081),
        VhostName(section: "[::1]:8080", host: "::1", port: 8080),
        VhostName(section: "[::1]", host: "::1", port: nil),
        VhostName(section: "[FE80::A]:443", host: "fe80::a", port: 443),
        VhostName(section: "fe80::1", host: "fe80::1", port: nil),
        VhostName(section: "under_score.local:1", host: "under_score.local", port: 1),
        VhostName(section: "xn--bcher-kva.example", host: "xn--bcher-kva.example", port: nil),
    ])
    func vhostNameForms(_ row: VhostName) throws {
        let config = try Self.parse(Self.base + "[blastbeat:\(row.section)]\nnode = n\n")
        #expect(config.vhosts[0].name == row.section)
        #expect(config.vhosts[0].hostName == Array(row.host.utf8))
        #expect(config.vhosts[0].port == row.port)
    }

    // MARK: - Values

    @Test(arguments: [
        ("1024", 1024), ("0", 0), ("1k", 1024), ("1K", 1024), ("64k", 65536), ("2m", 2 << 20), ("3M", 3 << 20),
        ("1g", 1 << 30), ("8G", 8 << 30),
    ])
    func sizeSuffixes(_ text: String, _ bytes: Int) throws {
        let config = try Self.parse(Self.base + "max-body-size = \(text)\nmax-retry-buffer = \(text)\n")
        #expect(config.limits.maxBodySize == bytes)
        #expect(config.maxRetryBuffer == bytes)
    }

    @Test(arguments: [("3", 3.0), ("0.5", 0.5), (".25", 0.25), ("2.75", 2.75), ("120", 120.0)])
    func secondsValues(_ text: String, _ seconds: Double) throws {
        let keys = ["header", "keepalive", "body", "backend", "shutdown", "tls-handshake"]
        let config = try Self.parse(Self.base + keys.map { "\($0)-timeout = \(text)\n" }.joined())
        let t = config.timeouts
        #expect(
            [t.header, t.keepAlive, t.body, t.backend, t.shutdown, t.tlsHandshake]
                == Array(repeating: seconds, count: 6))
    }

    @Test func everyMainKey() throws {
        let config = try Self.parse(
            Self.base + """
                bind-ssl = [::1]:8443
                ping-freq = 2.5
                ping-timeout = 7.5
                uid = 33
                gid = www-data
                max-hops = 0
                certificate = /etc/bb/site.pem
                key = /etc/bb/site.key
                header-timeout = 5
                keepalive-timeout = 30
                body-timeout = 20
                backend-timeout = 90
                shutdown-timeout = 15
                tls-handshake-timeout = 3
                max-request-line = 4k
                max-header-size = 32k
                max-headers = 50
                max-body-size = 10m
                max-connections = 500
                max-retry-buffer = 64k
                max-node-queue = 2m
                max-output-buffer = 1m
                access-log = /var/log/blastbeat.log
                log-level = Warning
                daemon = no
                """)
        #expect(config.listeners.map(\.address.description) == ["0.0.0.0:8080", "[::1]:8443"])
        #expect(config.listeners.map(\.tls) == [false, true])
        #expect(config.pingFrequency == 2.5 && config.pingTimeout == 7.5)
        #expect(config.uid == "33" && config.gid == "www-data" && config.maxHops == 0)
        #expect(config.certificate == "/etc/bb/site.pem" && config.key == "/etc/bb/site.key")
        var timeouts = Timeouts()
        (timeouts.header, timeouts.keepAlive, timeouts.body) = (5, 30, 20)
        (timeouts.backend, timeouts.shutdown, timeouts.tlsHandshake) = (90, 15, 3)
        #expect(config.timeouts == timeouts)
        var limits = HTTPLimits()
        (limits.maxRequestLine, limits.maxHeadBytes, limits.maxHeaderCount) = (4096, 32768, 50)
        limits.maxBodySize = 10 << 20
        #expect(config.limits == limits)
        #expect(config.maxConnections == 500 && config.maxRetryBuffer == 65536 && config.maxOutputBuffer == 1 << 20)
        #expect(config.maxNodeQueue == 2 << 20)
        #expect(config.accessLog == "/var/log/blastbeat.log" && config.logLevel == .warning && !config.daemon)
    }

    @Test(arguments: [("", 256 << 20), ("max-buffered = 1m\n", 1 << 20), ("max-buffered = 2G\n", 2 << 30)])
    func maxBuffered(_ line: String, _ expected: Int) throws {
        #expect(try Self.parse(Self.base + line).maxBuffered == expected)
    }

    @Test(arguments: [("-", "-"), ("off", nil), ("/tmp/a.log", "/tmp/a.log")] as [(String, String?)])
    func accessLog(_ text: String, _ expected: String?) throws {
        #expect(try Self.parse(Self.base + "access-log = \(text)\n").accessLog == expected)
    }

    @Test(arguments: [("debug", LogLevel.debug), ("info", .info), ("WARNING", .warning), ("error", .error)])
    func logLevels(_ text: String, _ level: LogLevel) throws {
        #expect(try Self.parse(Self.base + "log-level = \(text)\n").logLevel == level)
        #expect(LogLevel.debug < .info && LogLevel.info < .warning && LogLevel.warning < .error)
    }

    @Test(arguments: [
        ("true", true), ("TRUE", true), ("yes", true), ("on", true), ("1", true),
        ("false", false), ("No", false), ("off", false), ("0", false),
    ])
    func booleans(_ text: String, _ value: Bool) throws {
        let config = try Self.parse(Self.base + "daemon = \(text)\n[blastbeat:h]\nnode = n\ndefault = \(text)\n")
        #expect(config.daemon == value && config.vhosts[0].isDefault == value)
    }

    @Test(arguments: ["tcp://*:5000", "tcp://[::1]:5000", "tcp://localhost:5000", "ipc:///tmp/bb.sock"])
    func zmqEndpointsOfBothEngines(_ endpoint: String) throws {
        let native = try Self.parse("[blastbeat]\nbind = *:80\nzmq = \(endpoint)\n")
        #expect(native.zmqEndpoint == endpoint && native.zmqEngine == .native)
        let libzmq = try Self.parse("[blastbeat]\nbind = *:80\nzmq = \(endpoint)\nzmq-engine = libzmq\n")
        #expect(libzmq.zmqEndpoint == endpoint && libzmq.zmqEngine == .libzmq)
    }

    /// Interface names and other transports are libzmq's: accepted with `zmq-engine = libzmq` (in
    /// either order), refused at the `zmq` line otherwise.
    @Test(arguments: ["tcp://eth0:5000", "inproc://bb", "tcp://example.com:5000"])
    func libzmqOnlyEndpoints(_ endpoint: String) throws {
        for text in ["zmq-engine = LIBZMQ\nzmq = \(endpoint)\n", "zmq = \(endpoint)\nzmq-engine = libzmq\n"] {
            #expect(try Self.parse("[blastbeat]\nbind = *:80\n" + text).zmqEndpoint == endpoint)
        }
        #expect {
            try Self.parse("[blastbeat]\nbind = *:80\nzmq = \(endpoint)\nzmq-engine = native\n")
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("t.ini:3: zmq:") && message.contains("add zmq-engine = libzmq")
        }
    }

    @Test func nodeIdentityLimits() throws {
        let longest = String(repeating: "n", count: 255)
        let config = try Self.parse(Self.base + "[blastbeat:h]\nnode = \(longest)\nnode = ü\n")
        #expect(config.vhosts[0].nodes == [Array(longest.utf8), [0xC3, 0xBC]])
    }

    @Test func curveKeysAndInstances() throws {
        let config = try ConfigParser.parse(
            """
            [blastbeat]
            bind = 0.0.0.0:8080
            zmq = tcp://127.0.0.1:5000
            curve-key = /etc/blastbeat/gw.key_secret
            max-instances = 8
            [blastbeat:a.test]
            node = alpha
            node-key = alpha Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID
            node-key = alpha   keys/alpha-new.key
            max-instances = 2
            """, file: "site.ini")
        #expect(config.curveKeyFile == "/etc/blastbeat/gw.key_secret" && config.curveKeyLine == 4)
        #expect(config.maxInstances == 8)
        let vhost = try #require(config.vhosts.first)
        #expect(vhost.maxInstances == 2)
        #expect(vhost.nodeKeys == [
            NodeKey(node: Array("alpha".utf8), source: .key(CurveKey(z85: "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID")!), line: 8),
            NodeKey(node: Array("alpha".utf8), source: .file("keys/alpha-new.key"), line: 9),
        ])
    }

    /// A vhost's own limits override `[blastbeat]`'s; a silent vhost inherits them.
    @Test func limitsPerVhost() throws {
        let config = try Self.parse(
            Self.base + """
                backend-timeout = 20
                max-body-size = 8k
                max-in-flight = 50
                [blastbeat:a.test]
                node = alpha
                backend-timeout = 2.5
                body-timeout = 3
                max-body-size = 1m
                max-output-buffer = 2m
                websocket-max-message = 64k
                max-in-flight = 10
                [blastbeat:b.test]
                node = beta
                """)
        #expect(config.maxInFlight == 50)
        #expect(config.clientConnectionLimit == 1000)  // a tenth of max-connections by default
        #expect(try Self.parse(Self.base + "max-connections = 50\nmax-client-connections = 7\n[blastbeat:c]\nnode = c\n")
            .clientConnectionLimit == 7)
        #expect(try Self.parse(Self.base + "max-connections = 50\n[blastbeat:c]\nnode = c\n").clientConnectionLimit == 16)
        let a = config.vhosts[0].limits
        #expect(a.backendTimeout == 2.5 && a.bodyTimeout == 3)
        #expect(a.maxBodySize == 1 << 20 && a.maxOutputBuffer == 2 << 20 && a.webSocketMaxMessage == 64 << 10)
        #expect(a.maxInFlight == 10)
        let b = config.vhosts[1].limits
        #expect(b.backendTimeout == 20 && b.bodyTimeout == config.timeouts.body)
        #expect(b.maxBodySize == 8 << 10 && b.maxOutputBuffer == config.maxOutputBuffer)
        #expect(b.webSocketMaxMessage == config.webSocket.maxMessageSize && b.maxInFlight == 50)
        // Before the Host is known the head parser admits the largest body any vhost allows.
        #expect(config.largestBodySize == 1 << 20)
        #expect(try Self.parse(Self.base + "[blastbeat:c.test]\nnode = c\n").vhosts[0].limits.maxInFlight == nil)
    }
}


extension Configuration {
    /// The expected configuration as read from the same files (which file holds which line is checked in
    /// ConfigIncludeTests.swift).
    func readFrom(_ sources: ConfigSources) -> Configuration {
        var copy = self
        copy.sources = sources
        return copy
    }
}
