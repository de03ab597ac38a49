/// Where each line of a configuration came from, when `include` spreads it over several files.
///
/// The parser numbers lines across all files as one sequence of positions: the main file's lines are 1…n,
/// an included file's lines get the next free range, and so on. Everything that remembers a line for a later
/// error (a vhost's `key`, a `bind`, `curve-key`) stores such a position; `location(of:)` turns it back into
/// the file and line the operator has to edit. Position 0 means "no line" (a file-wide problem).
package struct ConfigSources: Sendable, Equatable {
    struct Segment: Sendable, Equatable {
        var file: String
        /// Positions `base + 1 … base + lineCount` are this file's lines 1 … lineCount.
        var base: Int
        var lineCount: Int
    }

    private(set) var segments: [Segment] = []
    /// The first file, named in messages about the configuration as a whole.
    package var mainFile: String { segments.first?.file ?? "" }
    /// Every file read, the main one first.
    package var files: [String] { segments.map(\.file) }

    package init() {}

    /// Registers a file of `lineCount` lines; returns the base to add to its line numbers.
    mutating func add(file: String, lineCount: Int) -> Int {
        let base = segments.last.map { $0.base + $0.lineCount } ?? 0
        segments.append(Segment(file: file, base: base, lineCount: lineCount))
        return base
    }

    package func location(of position: Int) -> (file: String, line: Int) {
        if position > 0 {
            for segment in segments where position > segment.base && position <= segment.base + segment.lineCount {
                return (segment.file, position - segment.base)
            }
        }
        return (mainFile, 0)
    }

    /// A `ConfigError` at a position: its file and line within that file.
    package func error(at position: Int, key: String?, _ message: String) -> ConfigError {
        let (file, line) = location(of: position)
        return ConfigError(file: file, line: line, key: key, message: message)
    }
}

/// Reads the files an `include = PATTERN` line names, for `ConfigParser` (which does no I/O itself).
package protocol ConfigIncludeReader {
    /// The files `pattern` names, in the order they are to be read, each with its text; `including` is the file
    /// that holds the `include` line (a relative pattern is relative to its directory). A pattern with
    /// wildcards may match nothing; a plain path must exist. Throws a message saying what went wrong.
    func read(pattern: String, including: String) throws(ConfigIncludeFailure) -> [(path: String, text: String)]
}

package struct ConfigIncludeFailure: Error {
    package var message: String
    package init(_ message: String) { self.message = message }
}

/// The reader for text parsed without a file system (tests, the fuzz checks): every `include` is an error.
package struct NoIncludes: ConfigIncludeReader {
    package init() {}
    package func read(pattern: String, including: String) throws(ConfigIncludeFailure) -> [(path: String, text: String)] {
        throw ConfigIncludeFailure("include is not available when the configuration is not read from a file")
    }
}
