import BlastBeatCore
import BlastBeatServer
import Glibc

/// `blastbeat [--check] CONFIG`: loads the configuration and runs the gateway; nothing else lives here.

let version = "0.1.0"
let usage = """
    usage: blastbeat [--check] CONFIG.ini
           blastbeat keygen NAME
           blastbeat --version | --help

    Runs the BlastBeat HTTP → ZeroMQ gateway described by CONFIG.ini.

      --check     validate the configuration and load every file startup loads (CURVE keys, TLS certificates
                  and keys, each key against its certificate), check that the log files can be opened and,
                  as root, that uid/gid exist; print a summary and exit (0 = valid)
      keygen NAME write a CURVE key pair: NAME.key (public) and NAME.key_secret (secret, mode 600), in the
                  ZeroMQ certificate format (for curve-key, node-key and the backends' --curve-key)
      --version   print the version and exit
      --help      print this help and exit

    Signals:
      SIGTERM, SIGINT, SIGQUIT  stop accepting, finish requests in flight (shutdown-timeout), exit 0;
                                a second one stops at once
      SIGHUP                    reload the configuration, its included files, keys and certificates
                                (nothing changes if that fails; the log says why)
      SIGUSR1                   reopen error-log and access-log (after log rotation)
      SIGUSR2                   upgrade: start the binary again on the same sockets; this one stops once
                                the new one serves (requests in flight finish)
      SIGPIPE                   ignored

    With NOTIFY_SOCKET set (systemd Type=notify), the gateway sends READY=1, RELOADING=1, STOPPING=1.

    """

func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = Array("blastbeat: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

var checkOnly = false
var configPath: String? = nil
var arguments = CommandLine.arguments.dropFirst()
if arguments.first == "keygen" {
    guard arguments.count == 2, let name = arguments.last, !name.isEmpty, !name.hasPrefix("-") else {
        fail("keygen needs one NAME (it writes NAME.key and NAME.key_secret)\n\(usage)", status: 2)
    }
    do {
        let publicKey = try CommandLineTasks.generateKeyPair(name: name, version: version)
        print("wrote \(name).key (public: \(publicKey.z85)) and \(name).key_secret (secret, mode 600)")
        exit(0)
    } catch {
        fail("\(error)")
    }
}
for argument in arguments {
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

let config: Configuration
do {
    config = try CommandLineTasks.loadConfiguration(configPath)
    if checkOnly { try CommandLineTasks.check(config) }
} catch {
    fail("\(error)")
}
if checkOnly {
    let security = config.curveKeyFile == nil ? "backends not authenticated" : "backends authenticated with CURVE"
    print("\(configPath): OK: \(config.listeners.count) listener(s), \(config.vhosts.count) virtual host(s), ROUTER \(config.zmqEndpoint) (\(security))")
    exit(0)
}
// Writes to closed sockets report EPIPE; the gateway's own signals are watched by Gateway (and by the
// privileged parent).
signal(SIGPIPE, SIG_IGN)
do {
    let gateway = try Gateway.start(config: config, path: configPath, arguments: CommandLine.arguments)
    try gateway.run()
} catch {
    fail("\(error)")
}
exit(0)
