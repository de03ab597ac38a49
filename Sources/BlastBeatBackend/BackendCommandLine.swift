import Glibc

/// The command line every Swift backend example shares, ready to pass to
/// `BackendNode(node:instance:endpoints:curve:)`.
///
/// ```text
/// --connect ENDPOINT  a gateway's zmq endpoint; repeat for several gateways (default tcp://127.0.0.1:5000)
/// --node NAME         the node name the gateway's vhost lists; NAME#ID is the same as --instance ID
/// --instance ID       connect as NAME#ID instead of NAME#<pid>-<8 random hex digits> (BackendNode.Instance)
/// --plain-identity    connect as exactly NAME: only one process at a time can hold it
/// --curve-key FILE    CURVE: this node's secret certificate (NAME.key_secret); needs --server-key
/// --server-key KEY    CURVE: the gateway's public key, 40 Z85 characters or its public certificate file
/// ```
public struct BackendCommandLine: Sendable {
    public var node: String
    public var instance: BackendNode.Instance
    public var endpoints: [String]
    /// Loaded from `--curve-key` and `--server-key` while parsing, so that a bad key stops the program at once.
    public var curve: CurveCredentials?

    /// Reads `CommandLine.arguments`; prints usage and exits (status 0 for `--help`, 2 for a bad argument or
    /// an unusable key), which is what a node's `main` wants.
    public static func parse(program: String, defaultNode: String) -> BackendCommandLine {
        do {
            if let options = try parse(arguments: CommandLine.arguments.dropFirst(), defaultNode: defaultNode) {
                return options
            }
            print(usage(program: program, defaultNode: defaultNode))
            exit(0)
        } catch {
            var line = "\(program): \(error) (try --help)\n"
            line.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
            exit(2)
        }
    }

    /// Parses `arguments` (without the program name); nil when help was asked for.
    ///
    /// - Throws: `.invalidArgument` for an unknown argument, a missing value, a single-valued option given
    ///   twice, an instance chosen twice (`--instance`, `--plain-identity`, `--node NAME#ID`), or only one of
    ///   `--curve-key` and `--server-key`; what `CurveCredentials(curveKeyFile:serverKey:)` throws.
    static func parse(arguments: some Sequence<String>, defaultNode: String) throws(BackendError)
        -> BackendCommandLine?
    {
        var endpoints: [String] = []
        var single: [String: String] = [:]
        var plainIdentity = false
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--connect":
                endpoints.append(try value(of: argument, &iterator))
            case "--node", "--instance", "--curve-key", "--server-key":
                let value = try value(of: argument, &iterator)
                guard single.updateValue(value, forKey: argument) == nil else {
                    throw BackendError.invalidArgument.with("\(argument) given twice")
                }
            case "--plain-identity":
                plainIdentity = true
            case "-h", "--help":
                return nil
            default:
                throw BackendError.invalidArgument.with("unknown argument \(argument)")
            }
        }

        var node = single["--node"] ?? defaultNode
        // One of three ways to say which instance this is, at most.
        var instances: [(option: String, instance: BackendNode.Instance)] = []
        if let hash = node.firstIndex(of: "#") {
            instances.append(("--node NAME#ID", .named(String(node[node.index(after: hash)...]))))
            node = String(node[..<hash])
        }
        if let name = single["--instance"] { instances.append(("--instance", .named(name))) }
        if plainIdentity { instances.append(("--plain-identity", .plain)) }
        guard instances.count <= 1 else {
            throw BackendError.invalidArgument.with(
                "\(instances.map(\.option).joined(separator: " and ")) both choose the instance; give one")
        }

        let curve: CurveCredentials?
        switch (single["--curve-key"], single["--server-key"]) {
        case (nil, nil):
            curve = nil
        case (let keyFile?, let serverKey?):
            curve = try CurveCredentials(curveKeyFile: keyFile, serverKey: serverKey)
        case (_?, nil):
            throw BackendError.invalidArgument.with("--curve-key needs --server-key (the gateway's public key)")
        case (nil, _?):
            throw BackendError.invalidArgument.with(
                "--server-key needs --curve-key (this node's secret certificate)")
        }
        return BackendCommandLine(
            node: node, instance: instances.first?.instance ?? .unique,
            endpoints: endpoints.isEmpty ? ["tcp://127.0.0.1:5000"] : endpoints, curve: curve)
    }

    private static func value(of option: String, _ iterator: inout some IteratorProtocol<String>)
        throws(BackendError) -> String
    {
        guard let value = iterator.next() else { throw BackendError.invalidArgument.with("\(option) needs a value") }
        return value
    }

    static func usage(program: String, defaultNode: String) -> String {
        """
        usage: \(program) [--connect ENDPOINT]... [--node NAME] [--instance ID | --plain-identity]
               \(String(repeating: " ", count: program.utf8.count)) [--curve-key FILE --server-key KEY]

          --connect ENDPOINT  a gateway's zmq endpoint; repeat for several gateways (default tcp://127.0.0.1:5000)
          --node NAME         the node name the gateway's vhost lists (default \(defaultNode)); NAME#ID = --instance ID
          --instance ID       connect as NAME#ID (default: NAME#<pid>-<8 random hex digits>, unique to this process)
          --plain-identity    connect as exactly NAME (only one process at a time can hold it)
          --curve-key FILE    CURVE: this node's secret certificate (NAME.key_secret, as zmq.auth.create_certificates
                              writes it); needs --server-key
          --server-key KEY    CURVE: the gateway's public key, 40 Z85 characters or its public certificate file
        """
    }
}
