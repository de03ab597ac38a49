import Glibc

/// The command line every Swift backend example shares: `--connect ENDPOINT` (repeatable, default
/// `tcp://127.0.0.1:5000`) and `--node NAME` (`NAME#instance` for one more process of a node).
public struct BackendCommandLine: Sendable {
    public var node: String
    public var endpoints: [String]

    /// Reads `CommandLine.arguments`; prints usage and exits (status 0 for `--help`, 2 for a bad
    /// argument), which is what a node's `main` wants.
    public static func parse(program: String, defaultNode: String) -> BackendCommandLine {
        var node = defaultNode
        var endpoints: [String] = []
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--connect", "--node":
                guard let value = arguments.popFirst() else {
                    print("\(program): \(argument) needs a value")
                    exit(2)
                }
                if argument == "--node" { node = value } else { endpoints.append(value) }
            case "-h", "--help":
                print("usage: \(program) [--connect tcp://127.0.0.1:5000]... [--node \(defaultNode)]")
                exit(0)
            default:
                print("\(program): unknown argument \(argument) (try --help)")
                exit(2)
            }
        }
        return BackendCommandLine(node: node, endpoints: endpoints.isEmpty ? ["tcp://127.0.0.1:5000"] : endpoints)
    }
}
