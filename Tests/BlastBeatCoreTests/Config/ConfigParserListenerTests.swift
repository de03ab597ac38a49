import BlastBeatCore
import Testing

/// Which listeners exist and which vhosts each one serves (README.md, "Configuration"). "D10" in a case name is
/// the original's crash at startup on a vhost with two dedicated listeners; an address used with both `bind`
/// and `bind-ssl`, which the original silently kept as the first kind, is an error (ConfigParserErrorTests).
struct ConfigParserListenerTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var ini: String
        /// Per listener: its address, TLS flag, dedicated vhosts (nil = shared) and the vhost names it serves.
        var listeners: [(address: String, tls: Bool, dedicated: [Int]?, serves: [String])]
        var testDescription: String { name }
    }

    static let zmq = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\ncertificate = d.crt\nkey = d.key\n"

    static let cases: [Case] = [
        Case(
            name: "only shared listeners: every vhost everywhere",
            ini: zmq + "bind = *:80\nbind-ssl = *:443\n[blastbeat:a]\nnode = x\n[blastbeat:b]\nnode = y\n",
            listeners: [("*:80", false, nil, ["a", "b"]), ("*:443", true, nil, ["a", "b"])]),
        Case(
            name: "dedicated vhost leaves the shared listeners",
            ini: zmq + "bind = *:80\n[blastbeat:a]\nnode = x\nbind = *:8001\n[blastbeat:b]\nnode = y\n",
            listeners: [("*:80", false, nil, ["b"]), ("*:8001", false, [0], ["a"])]),
        Case(
            name: "D10 fixed: bind and bind-ssl on one vhost",
            ini: zmq + "bind = *:80\n[blastbeat:a]\nnode = x\nbind = *:8001\nbind-ssl = *:8443\nbind = *:8002\n",
            listeners: [
                ("*:80", false, nil, []), ("*:8001", false, [0], ["a"]), ("*:8443", true, [0], ["a"]),
                ("*:8002", false, [0], ["a"]),
            ]),
        Case(
            name: "two vhosts dedicate one address, in config order whatever the bind order",
            ini: zmq
                + "bind = *:80\n[blastbeat:a]\nnode = x\n[blastbeat:b]\nnode = y\nbind = *:9000\n"
                + "[blastbeat:c]\nnode = z\n[blastbeat:a]\nbind = 0.0.0.0:9000\n",
            listeners: [("*:80", false, nil, ["c"]), ("*:9000", false, [0, 1], ["a", "b"])]),
        Case(
            name: "the same vhost binding one address twice makes one listener",
            ini: zmq + "[blastbeat:a]\nnode = x\nbind = 127.0.0.1:81\nbind = 127.0.0.1:81\n",
            listeners: [("127.0.0.1:81", false, [0], ["a"])]),
        Case(
            name: "repeated shared bind, * and 0.0.0.0 are one socket",
            ini: zmq + "bind = 0.0.0.0:80\nbind = *:80\nbind = 0.0.0.0:80\n[blastbeat:a]\nnode = x\n",
            listeners: [("0.0.0.0:80", false, nil, ["a"])]),
        Case(
            name: "vhost sections before the first bind",
            ini: "[blastbeat:a]\nnode = x\nbind-ssl = [::1]:8443\n[blastbeat:b]\nnode = y\n" + zmq + "bind = ::1:80\n",
            listeners: [("[::1]:8443", true, [0], ["a"]), ("[::1]:80", false, nil, ["b"])]),
        Case(
            name: "a shared listener may serve no vhost",
            ini: zmq + "bind = *:80\nbind-ssl = *:443\n[blastbeat:a]\nnode = x\nbind = *:81\n",
            listeners: [("*:80", false, nil, []), ("*:443", true, nil, []), ("*:81", false, [0], ["a"])]),
        Case(
            name: "no vhost at all",
            ini: zmq + "bind = *:80\n",
            listeners: [("*:80", false, nil, [])]),
    ]

    @Test(arguments: cases)
    func distribution(_ row: Case) throws {
        let config = try ConfigParser.parse(row.ini, file: "t.ini")
        try #require(config.listeners.count == row.listeners.count)
        for (index, expected) in row.listeners.enumerated() {
            let listener = config.listeners[index]
            #expect(listener.address == ListenAddress.parse(expected.address), "listener \(index)")
            #expect(listener.tls == expected.tls, "listener \(index)")
            #expect(listener.dedicatedVhosts == expected.dedicated, "listener \(index)")
            let served = config.vhostIndices(forListener: index).map { config.vhosts[$0].name }
            #expect(served == expected.serves, "listener \(index)")
        }
    }

    @Test func listenerLinesAreTheFirstDeclaration() throws {
        let config = try ConfigParser.parse(
            "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = *:80\n[blastbeat:a]\nnode = n\nbind = *:81\n"
                + "[blastbeat:b]\nnode = n\nbind = *:81\n",
            file: "t.ini")
        #expect(config.listeners.map(\.line) == [3, 6])
    }

    @Test func defaultVhostsOnDifferentListeners() throws {
        let config = try ConfigParser.parse(
            "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = *:80\n[blastbeat:a]\nnode = n\ndefault = true\n"
                + "[blastbeat:b]\nnode = n\ndefault = true\nbind = *:81\n[blastbeat:c]\nnode = n\ndefault = false\n",
            file: "t.ini")
        #expect(config.vhosts.map(\.isDefault) == [true, true, false])
    }

    @Test func sameHostOnDifferentListeners() throws {
        let config = try ConfigParser.parse(
            "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = *:80\n[blastbeat:Foo]\nnode = n\n"
                + "[blastbeat:foo]\nnode = n\nbind = *:81\n[blastbeat:foo:80]\nnode = n\n",
            file: "t.ini")
        #expect(config.vhosts.count == 3)
    }

    @Test func defaultCertificateFillsVhostsWithoutTheirOwn() throws {
        let config = try ConfigParser.parse(
            Self.zmq + "bind-ssl = *:443\n[blastbeat:a]\nnode = n\n[blastbeat:b]\nnode = n\ncertificate = b.crt\n"
                + "key = b.key\n",
            file: "t.ini")
        #expect(config.vhosts.map(\.certificate) == ["d.crt", "b.crt"])
        #expect(config.vhosts.map(\.key) == ["d.key", "b.key"])
    }

    /// An unreadable or mismatched file is reported at the line that names it: a vhost's own, or `[blastbeat]`'s
    /// for a vhost that inherits the default pair.
    @Test func certificateAndKeyLinesFollowTheFileInForce() throws {
        let config = try ConfigParser.parse(
            Self.zmq + "bind-ssl = *:443\n[blastbeat:a]\nnode = n\n[blastbeat:b]\nnode = n\ncertificate = b.crt\n"
                + "key = b.key\n",
            file: "t.ini")
        #expect((config.certificateLine, config.keyLine) == (3, 4))
        #expect(config.vhosts.map(\.certificateLine) == [3, 10])
        #expect(config.vhosts.map(\.keyLine) == [4, 11])
    }

    @Test func tlsVhostWithItsOwnCertificateNeedsNoDefault() throws {
        let config = try ConfigParser.parse(
            "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = *:80\n[blastbeat:a]\nnode = n\nbind-ssl = *:443\n"
                + "certificate = a.crt\nkey = a.key\n[blastbeat:b]\nnode = n\n",
            file: "t.ini")
        #expect(config.certificate == nil)
        #expect(config.vhosts.map(\.certificate) == ["a.crt", nil])
    }
}
