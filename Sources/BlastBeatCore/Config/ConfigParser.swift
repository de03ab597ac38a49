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
///
/// Errors name the file, line, key and what was expected (`ConfigError`). The first error stops parsing.
package enum ConfigParser {
    package static func parse(_ text: String, file: String) throws(ConfigError) -> Configuration {
        var builder = Builder(file: file)
        var lineNumber = 0
        for rawLine in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = trimmed(rawLine[...])
            if lineNumber == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) {
                line = trimmed(line.dropFirst(3))
            }
            guard let first = line.first, first != UInt8(ascii: ";"), first != UInt8(ascii: "#") else {
                continue
            }
            line = trimmed(withoutInlineComment(line))
            if first == UInt8(ascii: "[") {
                try builder.startSection(line, line: lineNumber)
                continue
            }
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else {
                throw builder.error(lineNumber, nil, "expected key = value, got \(string(line).debugDescription)")
            }
            let key = string(trimmed(line[..<equals]))
            let value = string(trimmed(line[line.index(after: equals)...]))
            if key.isEmpty {
                throw builder.error(lineNumber, nil, "expected a key before '=', got \(string(line).debugDescription)")
            }
            try builder.apply(key: key, value: value, line: lineNumber)
        }
        return try builder.finish()
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

        func error(_ line: Int, _ key: String?, _ message: String) -> ConfigError {
            ConfigError(file: file, line: line, key: key, message: message)
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
