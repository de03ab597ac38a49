import BlastBeatCore
import BlastBeatServer
import Glibc

/// `blastbeat [--check] CONFIG`: loads the configuration and runs the gateway; nothing else lives here.

let version = "0.1.0"
let usage = """
    usage: blastbeat [--check] CONFIG.ini
           blastbeat --version | --help

    Runs the BlastBeat HTTP → ZeroMQ gateway described by CONFIG.ini.

      --check     validate the configuration, print a summary and exit (0 = valid)
      --version   print the version and exit
      --help      print this help and exit

    Signals: SIGTERM/SIGINT stop accepting and finish requests in flight (shutdown-timeout);
    a second signal stops at once.

    """

func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = Array("blastbeat: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

var checkOnly = false
var configPath: String? = nil
for argument in CommandLine.arguments.dropFirst() {
    switch argument {
    case "--help", "-h":
        print(usage, terminator: "")
        exit(0)
    case "--version", "-V":
        print("blastbeat \(version)")
        exit(0)
    case "--check", "-t":
        checkOnly = true
    default:
        if argument.hasPrefix("-") { fail("unknown option \(argument)\n\(usage)", status: 2) }
        if configPath != nil { fail("only one configuration file may be given\n\(usage)", status: 2) }
        configPath = argument
    }
}
guard let configPath else { fail("no configuration file given\n\(usage)", status: 2) }

func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
        if n < chunk.count { break }
    }
    if ferror(file) != 0 { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

guard let text = readFile(configPath) else {
    fail("\(configPath): cannot read: \(String(cString: strerror(errno)))")
}
let config: Configuration
do {
    config = try ConfigParser.parse(text, file: configPath)
} catch {
    fail("\(error)")
}
if checkOnly {
    print("\(configPath): OK: \(config.listeners.count) listener(s), \(config.vhosts.count) virtual host(s), ROUTER \(config.zmqEndpoint)")
    exit(0)
}
signal(SIGPIPE, SIG_IGN)
do {
    let gateway = try Gateway(config: config)
    try gateway.run()
} catch {
    fail("\(error)")
}
exit(0)
