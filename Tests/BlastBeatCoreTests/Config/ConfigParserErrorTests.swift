import BlastBeatCore
import Testing

/// Rejected files: each row is a file, the exact line and key of the error, and a piece of its message.
struct ConfigParserErrorTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var ini: String
        var line: Int
        var key: String?
        var message: String
        var testDescription: String { "\(line):\(key ?? "-"): \(message)" }
        init(_ ini: String, _ line: Int, _ key: String?, _ message: String) {
            (self.ini, self.line, self.key, self.message) = (ini, line, key, message)
        }
    }

    /// Lines 1-3.
    static let base = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\n"
    static let tlsBase = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind-ssl = 0.0.0.0:8443\n"

    static let syntax: [Case] = [
        Case("bind = 0.0.0.0:8080\n[blastbeat]\n", 1, "bind", "section header before the first key"),
        Case("\n; c\n[blastbeat\nzmq = tcp://a:1\n", 3, nil, "expected a section header ending in ']'"),
        Case("[blastbeat]x\n", 1, nil, "ending in ']'"),
        Case("[\n", 1, nil, "ending in ']'"),
        Case(base + "[blastbeat:h ; note]\n", 4, nil, "ending in ']'"),
        Case(base + "[server]\n", 4, nil, "unknown section [server], expected [blastbeat] or [blastbeat:HOST[:PORT]]"),
        Case(base + "[ blastbeat ]\n", 4, nil, "unknown section [ blastbeat ]"),
        Case(base + "[BlastBeat]\n", 4, nil, "unknown section [BlastBeat]"),
        Case(base + "[]\n", 4, nil, "unknown section []"),
        Case(base + "[blastbeat:]\n", 4, nil, "expected a vhost section [blastbeat:HOST]"),
        Case(base + "[blastbeat:host:http]\n", 4, nil, "got [blastbeat:host:http]"),
        Case(base + "[blastbeat:host:0]\n", 4, nil, "with a port in 1-65535"),
        Case(base + "[blastbeat:host:]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat::80]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:[::1]x]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:[::1]:]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:[1.2.3.4]:80]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:[fe80::1%eth0]:80]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:fe80::1::2]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:a b]\n", 4, nil, "expected a vhost section"),
        Case(base + "[blastbeat:host/path]\n", 4, nil, "expected a vhost section"),
        Case(base + "daemon\n", 4, nil, "expected key = value, got \"daemon\""),
        Case(base + "= 1\n", 4, nil, "expected a key before '='"),
        Case(
            base + "bindd = 0.0.0.0:80\n", 4, "bindd", "unknown key in [blastbeat], expected one of bind, bind-ssl, zmq"
        ),
        Case(base + "Bind = 0.0.0.0:81\n", 4, "Bind", "unknown key in [blastbeat]"),
        Case(base + "node = x\n", 4, "node", "expected in a [blastbeat:HOST] section, not in [blastbeat]"),
        Case(base + "default = true\n", 4, "default", "expected in a [blastbeat:HOST] section"),
        Case(
            base + "[blastbeat:h]\nnode = a\nzmq = tcp://a:1\n", 6, "zmq",
            "expected in the [blastbeat] section, not in a vhost section"),
        Case(base + "[blastbeat:h]\nnode = a\nmax-in-flight = 0\n", 6, "max-in-flight", "expected a whole number >= 1"),
        Case(base + "[blastbeat:h]\nnode = a\nmax-body-size = big\n", 6, "max-body-size", "expected"),
        Case(base + "[blastbeat:h]\nnode = a\nheader-timeout = 3\n", 6, "header-timeout",
            "expected in the [blastbeat] section, not in a vhost section"),
        Case(
            base + "[blastbeat:h]\nnodes = a\n", 5, "nodes",
            "unknown key in [blastbeat:h], expected one of node, bind, bind-ssl, certificate, key, default"),
    ]

    static let values: [Case] = [
        Case(
            base + "bind = 0.0.0.0:http\n", 4, "bind",
            "expected ADDRESS:PORT with a port in 1-65535, got \"0.0.0.0:http\""),
        Case(base + "bind-ssl = 0.0.0.0:0\n", 4, "bind-ssl", "got \"0.0.0.0:0\""),
        Case(base + "bind =\n", 4, "bind", "got \"\""),
        Case(base + "[blastbeat:h]\nnode = a\nbind = ::1\n", 6, "bind", "expected ADDRESS:PORT"),
        Case(base + "zmq = 127.0.0.1:5000\n", 4, "zmq", "expected tcp://HOST:PORT with a port in 1-65535, ipc://PATH"),
        Case(base + "zmq = tcp://127.0.0.1\n", 4, "zmq", "got \"tcp://127.0.0.1\""),
        Case(base + "zmq = tcp://:5000\n", 4, "zmq", "expected tcp://"),
        Case(base + "zmq = tcp://host:0\n", 4, "zmq", "expected tcp://"),
        Case(base + "zmq = tcp://host:*\n", 4, "zmq", "expected tcp://"),
        Case(base + "zmq = ipc://\n", 4, "zmq", "expected tcp://"),
        Case(base + "zmq = inproc://\n", 4, "zmq", "expected tcp://"),
        Case(base + "zmq = udp://host:1\n", 4, "zmq", "expected tcp://"),
        Case(base + "zmq-engine = zeromq\n", 4, "zmq-engine", "expected native or libzmq, got \"zeromq\""),
        Case(base + "ping-freq = 0\n", 4, "ping-freq", "expected a number of seconds greater than 0"),
        Case(base + "ping-freq = -1\n", 4, "ping-freq", "got \"-1\""),
        Case(base + "ping-freq = abc\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-freq = 1e3\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-freq = inf\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-freq = nan\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-freq = 3.\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-freq = 1.2.3\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-freq = 3s\n", 4, "ping-freq", "seconds"),
        Case(base + "ping-timeout = 0.0\n", 4, "ping-timeout", "seconds"),
        Case(base + "header-timeout = 0\n", 4, "header-timeout", "greater than 0"),
        Case(base + "keepalive-timeout = x\n", 4, "keepalive-timeout", "seconds"),
        Case(base + "body-timeout =\n", 4, "body-timeout", "seconds"),
        Case(base + "backend-timeout = -5\n", 4, "backend-timeout", "seconds"),
        Case(base + "shutdown-timeout = 0\n", 4, "shutdown-timeout", "seconds"),
        Case(base + "tls-handshake-timeout = 0\n", 4, "tls-handshake-timeout", "seconds"),
        Case(base + "max-hops = -1\n", 4, "max-hops", "expected a whole number >= 0, got \"-1\""),
        Case(base + "max-hops = 1.5\n", 4, "max-hops", "whole number"),
        Case(base + "max-hops = 99999999999999999999\n", 4, "max-hops", "whole number"),
        Case(base + "max-headers = 0\n", 4, "max-headers", "expected a whole number >= 1"),
        Case(base + "max-connections = 0\n", 4, "max-connections", "expected a whole number >= 1"),
        Case(base + "max-connections = 1k\n", 4, "max-connections", "whole number"),
        Case(
            base + "max-body-size = 10x\n", 4, "max-body-size",
            "expected a size in bytes >= 0, optionally with k, m or g"),
        Case(base + "max-body-size = k\n", 4, "max-body-size", "size in bytes"),
        Case(base + "max-body-size = 1kb\n", 4, "max-body-size", "size in bytes"),
        Case(base + "max-body-size = -1\n", 4, "max-body-size", "size in bytes"),
        Case(base + "max-body-size = 9999999999g\n", 4, "max-body-size", "fits in 63 bits"),
        Case(base + "max-output-buffer = 0\n", 4, "max-output-buffer", ">= 1"),
        Case(base + "max-buffered = 512k\n", 4, "max-buffered", "expected a size in bytes >= 1048576"),
        Case(base + "max-buffered = 1t\n", 4, "max-buffered", "optionally with k, m or g"),
        Case(base + "max-buffered = 9999999999g\n", 4, "max-buffered", "fits in 63 bits"),
        Case(base + "max-request-line = 0\n", 4, "max-request-line", ">= 1"),
        Case(base + "max-header-size = 0k\n", 4, "max-header-size", ">= 1"),
        Case(base + "log-level = verbose\n", 4, "log-level", "expected debug, info, warning or error, got \"verbose\""),
        Case(base + "daemon = maybe\n", 4, "daemon", "expected true, false, yes, no, on, off, 1 or 0"),
        Case(base + "[blastbeat:h]\nnode = a\ndefault = 2\n", 6, "default", "expected true, false"),
        Case(base + "uid =\n", 4, "uid", "expected a user name or uid"),
        Case(base + "uid = 4294967296\n", 4, "uid", "expected a user name or uid"),
        Case(base + "gid = wheel staff\n", 4, "gid", "expected a group name or gid"),
        Case(base + "certificate =\n", 4, "certificate", "got an empty value"),
        Case(base + "access-log =\n", 4, "access-log", "expected a file path, - (stdout) or off"),
        Case(base + "[blastbeat:h]\nnode =\n", 5, "node", "expected a ZeroMQ identity of 1-255 bytes"),
        Case(base + "[blastbeat:h]\nnode = \(String(repeating: "x", count: 256))\n", 5, "node", "got 256 bytes"),
        Case(base + "[blastbeat:h]\nnode = \u{0}abc\n", 5, "node", "not starting with a NUL byte"),
    ]

    static let whole: [Case] = [
        Case("[blastbeat]\nbind = 0.0.0.0:8080\n", 0, "zmq", "expected zmq = ENDPOINT in [blastbeat]"),
        Case("[blastbeat]\nzmq = tcp://127.0.0.1:5000\n[blastbeat:h]\nnode = a\n", 0, "bind", "at least one bind"),
        Case(base + "\n[blastbeat:h]\n", 5, nil, "vhost h has no node; expected at least one node = IDENTITY"),
        Case(base + "[blastbeat:h]\ncertificate = h.crt\n", 4, nil, "vhost h has no node"),
        Case(
            base + "certificate = a.crt\n", 4, "key", "expected key = PATH in [blastbeat] to go with this certificate"),
        Case(base + "key = a.key\n\n", 4, "certificate", "expected certificate = PATH in [blastbeat]"),
        Case(base + "[blastbeat:h]\nnode = a\nkey = h.key\n", 6, "certificate", "in [blastbeat:h] to go with this key"),
        Case(base + "[blastbeat:h]\ncertificate = h.crt\nnode = a\n", 5, "key", "in [blastbeat:h] to go with"),
        // One address, two kinds (the original silently kept the first).
        Case(base + "bind-ssl = 0.0.0.0:8080\n", 4, "bind-ssl", "0.0.0.0:8080 is already declared with bind at line 3"),
        Case(base + "bind-ssl = *:8080\n", 4, "bind-ssl", "*:8080 is already declared with bind at line 3"),
        Case(
            base + "[blastbeat:h]\nnode = a\nbind-ssl = 0.0.0.0:8080\n", 6, "bind-ssl", "declared with bind at line 3"),
        Case(
            "[blastbeat:h]\nnode = a\nbind-ssl = [::1]:8443\ncertificate = c\nkey = k\n[blastbeat]\n"
                + "zmq = tcp://127.0.0.1:5000\nbind = ::1:8443\n",
            8, "bind", "[::1]:8443 is already declared with bind-ssl at line 3"),
        // A vhost naming a shared listener's address.
        Case(
            base + "[blastbeat:h]\nnode = a\nbind = 0.0.0.0:8080\n", 6, "bind",
            "0.0.0.0:8080 is a shared listener ([blastbeat] line 3)"),
        Case(
            "[blastbeat:h]\nnode = a\nbind = 0.0.0.0:8080\n[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = *:8080\n",
            3, "bind", "is a shared listener ([blastbeat] line 6)"),
        Case(
            tlsBase + "certificate = c\nkey = k\n[blastbeat:h]\nnode = a\nbind-ssl = 0.0.0.0:8443\n", 8, "bind-ssl",
            "shared listener"),
        // Defaults, TLS material, duplicate Hosts, unreachable vhosts.
        Case(
            base + "[blastbeat:a]\nnode = x\ndefault = true\n[blastbeat:b]\nnode = y\ndefault = yes\n", 9, "default",
            "expected at most one default vhost per listener, but a (line 6) is already the default on 0.0.0.0:8080"),
        Case(
            tlsBase + "[blastbeat:h]\nnode = a\n", 4, "certificate",
            "expected certificate and key for vhost h, which is served on TLS listener 0.0.0.0:8443 (line 3)"),
        Case(tlsBase, 3, "bind-ssl", "TLS listener 0.0.0.0:8443 serves no vhost"),
        Case(
            base + "[blastbeat:Foo]\nnode = a\n[blastbeat:foo]\nnode = b\n", 6, nil,
            "vhost foo matches the same Host as vhost Foo (line 4) on 0.0.0.0:8080"),
        Case(
            "[blastbeat]\nzmq = tcp://127.0.0.1:5000\n[blastbeat:a]\nnode = x\nbind = 0.0.0.0:8080\n"
                + "[blastbeat:b]\nnode = y\n",
            6, nil, "vhost b is served on no listener"),
        // Relations between keys.
        Case(
            base + "ping-freq = 3\nping-timeout = 2\n", 5, "ping-timeout",
            "expected more than ping-freq (3.0 s), got 2.0 s"),
        Case(base + "ping-timeout = 3\nping-freq = 3\n", 4, "ping-timeout", "expected more than ping-freq"),
        Case(base + "ping-freq = 10\n", 4, "ping-freq", "expected less than ping-timeout (10.0 s, the default)"),
        Case(base + "max-header-size = 4k\n", 4, "max-header-size", "expected at least max-request-line (8192 bytes)"),
        Case(
            base + "max-request-line = 128k\n", 4, "max-request-line", "expected at most max-header-size (65536 bytes"),
    ]

    /// CURVE keys and instances (lines 1-3 are `base`).
    static let curve: [Case] = [
        Case(base + "[blastbeat:a]\nnode = alpha\nnode-key = alpha a.key\n", 6, "node-key", "node-key needs curve-key"),
        Case(base + "curve-key = gw.key_secret\n[blastbeat:a]\nnode = alpha\n", 6, "node", "node \"alpha\" has no node-key"),
        Case(base + "curve-key = gw.key_secret\n[blastbeat:a]\nnode = alpha\nnode-key = beta b.key\n", 7, "node-key", "vhost a has no node \"beta\""),
        Case(base + "curve-key = gw.key_secret\n[blastbeat:a]\nnode = alpha\nnode-key = alpha\n", 7, "node-key", "expected NODE KEY"),
        Case(base + "curve-key = gw.key_secret\n[blastbeat:a]\nnode = alpha\nnode-key = alpha#1 a.key\n", 7, "node-key", "without #INSTANCE"),
        Case(base + "curve-key = gw.key_secret\n[blastbeat:a]\nnode = alpha\nnode-key = alpha Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI\"\n", 7, "node-key", "not a valid Z85 key"),
        Case(base + "max-instances = 0\n[blastbeat:a]\nnode = alpha\n", 4, "max-instances", "a whole number >= 1"),
        Case(base + "[blastbeat:a]\nnode = alpha\nmax-instances = x\n", 6, "max-instances", "a whole number >= 1"),
        Case(base + "[blastbeat:a]\nnode = alpha\ncurve-key = gw.key_secret\n", 6, "curve-key", "in the [blastbeat] section"),
    ]

    /// The admin listener (lines 1-3 are `base`, whose listener is 0.0.0.0:8080).
    static let admin: [Case] = [
        Case(base + "admin = 127.0.0.1\n[blastbeat:a]\nnode = x\n", 4, "admin", "expected ADDRESS:PORT"),
        Case(base + "admin = 127.0.0.1:0\n[blastbeat:a]\nnode = x\n", 4, "admin", "expected ADDRESS:PORT"),
        Case(base + "admin = 0.0.0.0:8080\n[blastbeat:a]\nnode = x\n", 4, "admin", "no public listener uses, but 0.0.0.0:8080 is the bind at line 3"),
        Case(base + "admin = 127.0.0.1:8080\n[blastbeat:a]\nnode = x\n", 4, "admin", "no public listener uses"),
        Case(base + "[blastbeat:a]\nnode = x\nbind-ssl = 127.0.0.1:9443\ncertificate = c\nkey = k\n[blastbeat]\nadmin = *:9443\n", 10, "admin", "is the bind-ssl at line 6"),
        Case(base + "[blastbeat:a]\nnode = x\nadmin = 127.0.0.1:9100\n", 6, "admin", "in the [blastbeat] section"),
    ]

    @Test(arguments: syntax + values + whole + curve + admin)
    func rejects(_ row: Case) {
        let error = #expect(throws: ConfigError.self) { try ConfigParser.parse(row.ini, file: "site.ini") }
        #expect(error?.file == "site.ini")
        #expect(error?.line == row.line)
        #expect(error?.key == row.key)
        #expect(error?.message.contains(row.message) == true, "\(error?.message ?? "no error")")
    }

    @Test func descriptionNamesFileLineAndKey() {
        let error = #expect(throws: ConfigError.self) {
            try ConfigParser.parse("[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:http\n", file: "site.ini")
        }
        #expect(
            error?.description == "site.ini:3: bind: expected ADDRESS:PORT with a port in 1-65535, got \"0.0.0.0:http\""
        )
    }

    @Test(arguments: [
        (ConfigError(file: "a.ini", line: 12, key: "bind", message: "m"), "a.ini:12: bind: m"),
        (ConfigError(file: "a.ini", line: 12, message: "m"), "a.ini:12: m"),
        (ConfigError(file: "a.ini", line: 0, key: "zmq", message: "m"), "a.ini: zmq: m"),
        (ConfigError(file: "a.ini", line: 0, message: "m"), "a.ini: m"),
    ])
    func descriptionForms(_ error: ConfigError, _ text: String) {
        #expect(error.description == text)
    }

    @Test func noNodeDescription() {
        let error = #expect(throws: ConfigError.self) {
            try ConfigParser.parse(Self.base + "[blastbeat:localhost]\n", file: "site.ini")
        }
        #expect(
            error?.description
                == "site.ini:4: vhost localhost has no node; expected at least one node = IDENTITY in its section")
    }
}
