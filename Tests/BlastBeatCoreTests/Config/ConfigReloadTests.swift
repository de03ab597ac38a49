import BlastBeatCore
import Testing

/// ConfigReload: vhost indices stay put across reloads, listeners are matched by address and kind.
struct ConfigReloadTests {
    static let head = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 127.0.0.1:8080\n"

    static func config(_ vhosts: [String], extra: String = "") throws -> Configuration {
        try ConfigParser.parse(
            head + extra + vhosts.map { "[blastbeat:\($0)]\nnode = \($0.uppercased())\n" }.joined(), file: "site.ini")
    }

    static func plan(_ running: Configuration, _ next: Configuration, idle: Bool = true) throws -> ConfigReload {
        try ConfigReload.plan(running: running, next: next, isIdle: { _ in idle })
    }

    @Test func keptVhostsKeepTheirIndexAndNewOnesGoAtTheEnd() throws {
        let running = try Self.config(["a", "b", "c"])
        let plan = try Self.plan(running, try Self.config(["c", "d", "a"]))
        #expect(plan.indexOfNewVhost == [2, 3, 0])
        #expect(plan.merged.vhosts.map(\.name) == ["a", "b", "c", "d"])
        #expect(plan.merged.vhosts.map(\.isRetired) == [false, true, false, false])
        #expect(plan.addedVhosts == ["d"] && plan.removedVhosts == ["b"] && plan.changedVhosts.isEmpty)
        // b is served nowhere; the shared listener serves the others.
        #expect(plan.merged.vhostIndices(forListener: 0) == [0, 2, 3])
        #expect(plan.summary == "vhosts added: d; vhosts removed: b")
    }

    @Test func aRetiredSlotIsReusedOnlyWhenIdle() throws {
        let first = try Self.plan(try Self.config(["a", "b"]), try Self.config(["a"])).merged
        let busy = try Self.plan(first, try Self.config(["a", "e"]), idle: false)
        #expect(busy.indexOfNewVhost == [0, 2] && busy.merged.vhosts.count == 3)
        let idle = try Self.plan(first, try Self.config(["a", "e"]), idle: true)
        #expect(idle.indexOfNewVhost == [0, 1] && idle.merged.vhosts.map(\.name) == ["a", "e"])
        #expect(idle.merged.vhosts.allSatisfy { !$0.isRetired })
        // Added back, a removed vhost gets its own slot again (its counters continue).
        let back = try Self.plan(first, try Self.config(["b", "a"]))
        #expect(back.indexOfNewVhost == [1, 0] && back.addedVhosts == ["b"])
    }

    @Test func changesOfAVhostAreReportedButNotItsLines() throws {
        let running = try Self.config(["a"])
        let moved = try ConfigParser.parse(Self.head + "\n\n[blastbeat:a]\nnode = A\n", file: "site.ini")
        #expect(try Self.plan(running, moved).summary == "no change in the configuration")
        let changed = try ConfigParser.parse(Self.head + "[blastbeat:a]\nnode = A\nmax-in-flight = 3\n", file: "site.ini")
        #expect(try Self.plan(running, changed).changedVhosts == ["a"])
        let global = try Self.config(["a"], extra: "keepalive-timeout = 5\n")
        #expect(try Self.plan(running, global).summary == "[blastbeat] settings changed")
        // A [blastbeat] limit the vhost inherits changes the vhost too.
        let inherited = try Self.config(["a"], extra: "backend-timeout = 5\n")
        #expect(try Self.plan(running, inherited).summary == "vhosts changed: a; [blastbeat] settings changed")
    }

    @Test func dedicatedListenersFollowTheirVhostsIndices() throws {
        let running = try Self.config(["a", "b"])
        let next = try ConfigParser.parse(
            Self.head + "[blastbeat:c]\nnode = C\nbind = 127.0.0.1:9000\n[blastbeat:a]\nnode = A\n", file: "site.ini")
        let plan = try Self.plan(running, next)
        #expect(plan.indexOfNewVhost == [2, 0])
        #expect(plan.merged.listeners[1].dedicatedVhosts == [2])
        #expect(plan.addedListeners == [1] && plan.removedListeners.isEmpty && plan.runningListener == [0, nil])
        let back = try Self.plan(plan.merged, running)
        #expect(back.removedListeners == [1] && back.runningListener == [0])
    }

    @Test(arguments: [
        ("zmq = tcp://127.0.0.1:5001\n", "zmq"), ("zmq-engine = libzmq\n", "zmq-engine"), ("uid = daemon\n", "uid"),
        ("gid = daemon\n", "gid"), ("workers = 2\n", "workers"),
    ])
    func restartOnlyKeysRefuseTheReload(_ row: (String, String)) throws {
        let running = try Self.config(["a"])
        let next = try Self.config(["a"], extra: row.0)
        let error = #expect(throws: ConfigError.self) { try Self.plan(running, next) }
        #expect(error?.key == row.1 && error?.message.contains("a reload cannot change") == true)
    }
}

/// FileBundle: what the privileged parent sends survives the trip; a damaged bundle is an error.
struct FileBundleTests {
    @Test func roundTrip() throws {
        var bundle = FileBundle()
        bundle.files["/etc/blastbeat/blastbeat.ini"] = .value(Array("[blastbeat]\n".utf8))
        bundle.files["/etc/blastbeat/tls/key.pem"] = .failed(errno: 13)
        bundle.files["/empty"] = .value([])
        bundle.globs["/etc/blastbeat/sites.d/*.ini"] = .value(["/etc/blastbeat/sites.d/a.ini", "/etc/blastbeat/sites.d/b.ini"])
        bundle.globs["/gone/*.ini"] = .failed(errno: 2)
        bundle.listeners = [("bind 0.0.0.0:80", .value(1)), ("bind-ssl [::]:443", .failed(errno: 98)), ("bind x:8", .value(2))]
        let decoded = try FileBundle.decode(bundle.encoded())
        #expect(decoded == bundle)
        #expect(decoded.socketCount == 3)
    }

    @Test func everyTruncationIsAnErrorNotACrash() {
        var bundle = FileBundle()
        bundle.files["a"] = .value([1, 2, 3])
        bundle.globs["g*"] = .value(["g1"])
        bundle.listeners = [("bind 1.2.3.4:5", .value(1))]
        let bytes = bundle.encoded()
        for length in 0..<bytes.count {
            #expect(throws: FileBundle.DecodingError.self) { try FileBundle.decode(Array(bytes[0..<length])) }
        }
        var wrongKind = bytes
        wrongKind[1] = UInt8(ascii: "X")
        #expect(throws: FileBundle.DecodingError.self) { try FileBundle.decode(wrongKind) }
    }
}
