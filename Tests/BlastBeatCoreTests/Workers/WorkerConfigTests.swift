import BlastBeatCore
import Testing

/// `workers = N | auto` (README.md, "Worker processes").
struct WorkerConfigTests {
    static let head = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 127.0.0.1:8080\n"
    static let vhost = "[blastbeat:localhost]\nnode = N\n"

    @Test(arguments: [
        ("", Configuration.Workers.auto), ("workers = 1\n", .count(1)), ("workers = 2\n", .count(2)),
        ("workers = auto\n", .auto), ("workers = AUTO\n", .auto), ("workers = 64\n", .count(64)),
    ])
    func accepted(_ row: (String, Configuration.Workers)) throws {
        let config = try ConfigParser.parse(Self.head + row.0 + Self.vhost, file: "site.ini")
        #expect(config.workers == row.1)
    }

    @Test(arguments: [
        ("workers = 0\n", "expected auto or a whole number from 1 to 64, got \"0\""),
        ("workers = 65\n", "expected auto or a whole number from 1 to 64, got \"65\""),
        ("workers = two\n", "expected auto or a whole number from 1 to 64, got \"two\""),
        ("workers = 2\nzmq-engine = libzmq\n", "expected 1 (or auto) with zmq-engine = libzmq"),
    ])
    func rejectedAtItsLine(_ row: (String, String)) {
        let error = #expect(throws: ConfigError.self) { try ConfigParser.parse(Self.head + row.0 + Self.vhost, file: "site.ini") }
        #expect(error?.line == 4 && error?.key == "workers")
        #expect(error?.message.contains(row.1) == true, "\(error?.message ?? "no error")")
    }
}
