/// Reads a BlastBeat ini file into a validated `Configuration`.
///
/// Syntax (compatible with the original's files, with its defects fixed; README.md, "Configuration"):
///
/// * Lines are split on `\n` and trimmed of space, tab and `\r`; blank lines are skipped; a UTF-8 BOM is ignored.
/// * A line whose first character is `;` or `#` is a comment. So is everything from a `;` or `#` that follows a
///   space or tab (`bind = 0.0.0.0:80 ; public`). The original kept such text in the value; no valid value
///   contains " ;" or " #", so files that worked before read the same. A value cannot contain them.
/// * `[blastbeat]` is the main section and `[blastbeat:NAME]` a vhost; both may repeat and are merged (a vhost
///   by its exact NAME). The closing `]` is required and any other section is an error (the original ignored
///   keys in unknown sections and never checked the bracket).
/// * `key = value`, split at the first `=`, both trimmed; keys are case-sensitive. A line without `=`, a key
///   before the first section and an unknown key are errors (the original ignored them, so typos went unseen).
/// * `bind`, `bind-ssl` and `node` accumulate; for every other key the last occurrence wins.
/// * There is no ordering constraint: a vhost section may come before the first `bind`.
/// * `include = PATTERN` in `[blastbeat]` reads the files a glob names (relative to the including file's
///   directory, in sorted order) at that point, each starting outside any section; they may include others,
///   up to `maxIncludeDepth` deep, never themselves. File reading is the caller's `ConfigIncludeReader`.
///
/// Errors name the file (an included one where the line is there), line, key and what was expected (`ConfigError`). The first error stops parsing.
package enum ConfigParser {
    /// How deep `include` may nest: deep enough for a tree of sites, shallow enough to stop a loop at once.
    package static let maxIncludeDepth = 8

    package static func parse(
        _ text: String, file: String, includes: some ConfigIncludeReader = NoIncludes()
    ) throws(ConfigError) -> Configuration {
        var builder = Builder(file: file)
        try parseFile(text, file: file, includes: includes, chain: [], into: &builder)
        return try builder.finish()
    }

    /// Reads one file's lines into `builder`; `chain` holds the files that include this one (to refuse loops).
    private static func parseFile(
        _ text: String, file: String, includes: some ConfigIncludeReader, chain: [String], into builder: inout Builder
    ) throws(ConfigError) {
        let lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let base = builder.sources.add(file: file, lineCount: lines.count)
        var lineNumber = 0
        for rawLine in lines {
            lineNumber += 1
            // Positions, not line numbers, from here on: unique across files (see ConfigSources).
            let position = base + lineNumber
            var line = trimmed(rawLine[...])
            if lineNumber == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) {
                line = trimmed(line.dropFirst(3))
            }
            guard let first = line.first, first != UInt8(ascii: ";"), first != UInt8(ascii: "#") else {
                continue
            }
            line = trimmed(withoutInlineComment(line))
            if first == UInt8(ascii: "[") {
                try builder.startSection(line, line: position)
                continue
            }
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else {
                throw builder.error(position, nil, "expected key = value, got \(string(line).debugDescription)")
            }
            let key = string(trimmed(line[..<equals]))
            let value = string(trimmed(line[line.index(after: equals)...]))
            if key.isEmpty {
                throw builder.error(position, nil, "expected a key before '=', got \(string(line).debugDescription)")
            }
            if key == "include" {
                try include(value, at: position, from: file, includes: includes, chain: chain + [file], into: &builder)
                continue
            }
            try builder.apply(key: key, value: value, line: position)
        }
    }

    /// `include = PATTERN` in `[blastbeat]`: the files it names are read here, in order, each starting outside
    /// any section (so a tenant's file begins with its own `[blastbeat:HOST]`); `[blastbeat]` is the section
    /// again after them.
    private static func include(
        _ pattern: String, at position: Int, from file: String, includes: some ConfigIncludeReader,
        chain: [String], into builder: inout Builder
    ) throws(ConfigError) {
        guard case .main = builder.section else {
            throw builder.error(position, "include", "include belongs in [blastbeat], not in a vhost section")
        }
        if pattern.isEmpty {
            throw builder.error(position, "include", "expected a file or a pattern like sites.d/*.ini")
        }
        if chain.count > maxIncludeDepth {
            throw builder.error(position, "include", "includes nest deeper than \(maxIncludeDepth) files")
        }
        let files: [(path: String, text: String)]
        do { files = try includes.read(pattern: pattern, including: file) } catch {
            throw builder.error(position, "include", error.message)
        }
        for included in files {
            if chain.contains(included.path) {
                throw builder.error(position, "include", "\(included.path) includes itself (through \(chain.joined(separator: " -> ")))")
            }
            builder.section = .none
            try parseFile(included.text, file: included.path, includes: includes, chain: chain, into: &builder)
        }
        builder.section = .main
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    private static func trimmed<C: BidirectionalCollection<UInt8>>(_ bytes: C) -> C.SubSequence {
        let start = bytes.firstIndex(where: { !isBlank($0) }) ?? bytes.endIndex
        let end = bytes.lastIndex(where: { !isBlank($0) }).map { bytes.index(after: $0) } ?? start
        return bytes[start..<end]
    }

    /// Cuts the line at the first `;` or `#` preceded by a space or tab.
    private static func withoutInlineComment(_ line: Substring.UTF8View) -> Substring.UTF8View {
        var previous: UInt8 = 0
        for index in line.indices {
            let byte = line[index]
            if (byte == UInt8(ascii: ";") || byte == UInt8(ascii: "#"))
                && (previous == UInt8(ascii: " ") || previous == UInt8(ascii: "\t"))
            {
                return line[..<index]
            }
            previous = byte
        }
        return line
    }

    static func string(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}

extension ConfigParser {
    /// Which section the following keys belong to.
    enum Section {
        case none
        case main
        case vhost(Int)
    }

    /// One `bind` / `bind-ssl` line, before listeners are merged by address.
    struct BindLine {
        var address: ListenAddress
        var tls: Bool
        var line: Int
        /// nil in `[blastbeat]`.
        var vhost: Int?
        var key: String { tls ? "bind-ssl" : "bind" }
    }

    /// A vhost section as read, with the lines of its keys for later errors.
    struct VhostDraft {
        var host: VirtualHost
        var defaultLine = 0
        var certificateLine = 0
        var keyLine = 0
        /// The line of each `node` (same order as `host.nodes`).
        var nodeLines: [Int] = []
        /// The limits the section sets itself (the rest come from `[blastbeat]` in `finish()`).
        var backendTimeout: Double?
        var bodyTimeout: Double?
        var maxBodySize: Int?
        var maxOutputBuffer: Int?
        var webSocketMaxMessage: Int?
        var maxInFlight: Int?
        /// `client-rate` (0: `off`, the section turns an inherited rate off) and `client-burst`, with lines.
        var clientRate: Double?
        var clientBurst: Int?
        var clientBurstLine = 0
        /// `max-connections` of the vhost's own, with its line (checked against `[blastbeat]`'s in `finish()`).
        var maxConnections: Int?
        var maxConnectionsLine = 0
        var http2: Bool?
    }

    /// Accumulates the file, key by key; `finish()` checks what needs the whole file.
    struct Builder {
        let file: String
        var config: Configuration
        var section = Section.none
        var binds: [BindLine] = []
        var vhosts: [VhostDraft] = []
        var vhostIndexByName: [String: Int] = [:]
        /// Line of the last occurrence of each `[blastbeat]` key, for errors found in `finish()`.
        var mainKeyLines: [String: Int] = [:]

        init(file: String) {
            self.file = file
            self.config = Configuration(file: file, zmqEndpoint: "")
        }

        /// Which file each position belongs to.
        var sources = ConfigSources()

        /// An error at a position (see ConfigSources), named by its file and line there.
        func error(_ line: Int, _ key: String?, _ message: String) -> ConfigError {
            sources.error(at: line, key: key, message)
        }

        /// Another line named in a message: "line 12", or "sites.d/a.ini:3" when it is in another file.
        func place(_ position: Int) -> String {
            let (file, line) = sources.location(of: position)
            return file == sources.mainFile ? "line \(line)" : "\(file):\(line)"
        }

        /// `line` is trimmed, comment-free and starts with `[`.
        mutating func startSection(_ text: Substring.UTF8View, line: Int) throws(ConfigError) {
            guard text.count >= 2, text.last == UInt8(ascii: "]") else {
                throw error(
                    line, nil,
                    "expected a section header ending in ']' like [blastbeat] or [blastbeat:HOST[:PORT]], "
                        + "got \(ConfigParser.string(text).debugDescription)")
            }
            let name = ConfigParser.string(text.dropFirst().dropLast())
            if name == "blastbeat" {
                section = .main
                return
            }
            guard name.hasPrefix("blastbeat:") else {
                throw error(
                    line, nil, "unknown section [\(name)], expected [blastbeat] or [blastbeat:HOST[:PORT]]")
            }
            let vhostName = String(name.dropFirst("blastbeat:".count))
            if let index = vhostIndexByName[vhostName] {
                section = .vhost(index)
                return
            }
            guard let (host, port) = VirtualHost.splitName(vhostName) else {
                throw error(
                    line, nil,
                    "expected a vhost section [blastbeat:HOST], [blastbeat:HOST:PORT], [blastbeat:[IPV6]:PORT] "
                        + "or [blastbeat:IPV6] with a port in 1-65535, got [\(name)]")
            }
            vhostIndexByName[vhostName] = vhosts.count
            section = .vhost(vhosts.count)
            vhosts.append(VhostDraft(host: VirtualHost(name: vhostName, hostName: host, port: port, line: line)))
        }

        mutating func apply(key: String, value: String, line: Int) throws(ConfigError) {
            switch section {
            case .none:
                throw error(
                    line, key, "expected a [blastbeat] or [blastbeat:HOST] section header before the first key")
            case .main:
                try applyMain(key: key, value: value, line: line)
                mainKeyLines[key] = line
            case .vhost(let index):
                try applyVhost(index, key: key, value: value, line: line)
            }
        }
    }
}
