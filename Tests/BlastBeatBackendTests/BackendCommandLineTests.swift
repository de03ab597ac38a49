import Testing

@testable import BlastBeatBackend

@Suite struct BackendCommandLineTests {
    private func parse(_ arguments: String...) throws(BackendError) -> BackendCommandLine? {
        try BackendCommandLine.parse(arguments: arguments, defaultNode: "hello")
    }

    @Test func defaults() throws {
        let options = try #require(try parse())
        #expect(options.node == "hello")
        #expect(options.instance == .unique)
        #expect(options.endpoints == ["tcp://127.0.0.1:5000"])
        #expect(options.curve == nil)
    }

    @Test func instanceChoices() throws {
        let options = try #require(try parse("--connect", "tcp://a:1", "--node", "app", "--connect", "ipc:///b"))
        #expect(options.node == "app" && options.instance == .unique)
        #expect(options.endpoints == ["tcp://a:1", "ipc:///b"])
        #expect(try parse("--instance", "3")?.instance == .named("3"))
        #expect(try parse("--plain-identity")?.instance == .plain)
        // NAME#ID still works, and means the same as --instance ID.
        let hashed = try #require(try parse("--node", "app#4"))
        #expect(hashed.node == "app" && hashed.instance == .named("4"))
        #expect(try parse("--node", "app#4#5")?.instance == .named("4#5"))
        #expect(try parse("--node", "x", "--help") == nil)
        #expect(try parse("-h") == nil)
    }

    @Test(arguments: [
        (["--node"], "--node needs a value"),
        (["--connect"], "--connect needs a value"),
        (["--bogus"], "unknown argument --bogus"),
        (["--node", "a", "--node", "b"], "--node given twice"),
        (["--instance", "1", "--plain-identity"], "--instance and --plain-identity both choose the instance"),
        (["--node", "a#1", "--instance", "2"], "--node NAME#ID and --instance both choose the instance"),
        (["--node", "a#1", "--plain-identity"], "--node NAME#ID and --plain-identity both choose the instance"),
        (["--curve-key", "node.key_secret"], "--curve-key needs --server-key"),
        (["--server-key", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"], "--server-key needs --curve-key"),
    ])
    func refusesBadArguments(arguments: [String], message: String) {
        #expect {
            try BackendCommandLine.parse(arguments: arguments, defaultNode: "hello")
        } throws: { error in
            (error as? BackendError) == .invalidArgument && "\(error)".contains(message)
        }
    }

    @Test func curveKeysAreLoadedWhileParsing() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let node = TestKeyPair()
        let server = TestKeyPair()
        let keyFile = directory.write("node.key_secret", node.certificates.secret)
        let options = try #require(try parse("--curve-key", keyFile, "--server-key", server.publicZ85))
        #expect(options.curve?.publicKey == node.publicZ85)
        #expect(options.curve?.serverKey == server.publicZ85)

        #expect(throws: BackendError.curveKeyUnreadable) {
            try parse("--curve-key", "\(directory.path)/missing", "--server-key", server.publicZ85)
        }
        #expect(throws: BackendError.invalidCurveKey) { try parse("--curve-key", keyFile, "--server-key", "short") }
    }

    @Test func usageNamesEveryOption() {
        let usage = BackendCommandLine.usage(program: "swift-hello", defaultNode: "hello")
        for option in ["--connect", "--node", "--instance", "--plain-identity", "--curve-key", "--server-key"] {
            #expect(usage.contains(option), "\(option)")
        }
    }
}
