import BlastBeatCore
import Testing

/// `include = PATTERN`: files read where the line is, errors located in the file that holds them.
struct ConfigIncludeTests {
    /// Files in memory; a pattern ending in `*` names every file under that prefix, in sorted order.
    struct Files: ConfigIncludeReader {
        var files: [String: String]
        func read(pattern: String, including: String) throws(ConfigIncludeFailure) -> [(path: String, text: String)] {
            if pattern.hasSuffix("*") {
                let prefix = String(pattern.dropLast())
                return files.keys.filter { $0.hasPrefix(prefix) }.sorted().map { ($0, files[$0]!) }
            }
            guard let text = files[pattern] else { throw ConfigIncludeFailure("cannot read \(pattern): no such file") }
            return [(pattern, text)]
        }
    }

    static let main = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\ninclude = sites/*\nmax-hops = 3\n"

    func parse(_ main: String = Self.main, _ files: [String: String] = [:]) throws(ConfigError) -> Configuration {
        try ConfigParser.parse(main, file: "site.ini", includes: Files(files: files))
    }

    @Test func vhostsFromIncludedFilesInSortedOrder() throws {
        let config = try parse(Self.main, [
            "sites/b.ini": "[blastbeat:b.test]\nnode = beta\n",
            "sites/a.ini": "; tenant a\n[blastbeat:a.test]\nnode = alpha\nmax-in-flight = 5\n",
        ])
        #expect(config.vhosts.map { $0.name } == ["a.test", "b.test"])
        #expect(config.vhosts[0].limits.maxInFlight == 5)
        // After the includes the main section continues.
        #expect(config.maxHops == 3)
        #expect(config.sources.files == ["site.ini", "sites/a.ini", "sites/b.ini"])
    }

    @Test func aPatternMatchingNothingIsFine() throws {
        let config = try parse(Self.main + "[blastbeat:c.test]\nnode = gamma\n", [:])
        #expect(config.vhosts.map { $0.name } == ["c.test"])
    }

    @Test func errorsNameTheIncludedFileAndItsLine() {
        let error = #expect(throws: ConfigError.self) {
            try parse(Self.main, ["sites/a.ini": "[blastbeat:a.test]\nnode = alpha\n\nmax-in-flight = none\n"])
        }
        #expect(error?.file == "sites/a.ini" && error?.line == 4 && error?.key == "max-in-flight")
    }

    /// Errors found after all files were read point into the file whose line has to change.
    @Test func wholeFileErrorsToo() {
        let error = #expect(throws: ConfigError.self) {
            try parse(Self.main, ["sites/a.ini": "\n[blastbeat:a.test]\nnode = alpha\n", "sites/b.ini": "[blastbeat:b.test]\n"])
        }
        #expect(error?.file == "sites/b.ini" && error?.line == 1, "\(String(describing: error))")
        let inMain = #expect(throws: ConfigError.self) {
            try parse(Self.main, ["sites/a.ini": "[blastbeat:a.test]\nnode = alpha\nbind-ssl = 0.0.0.0:8080\n"])
        }
        // The other line a message names is in the main file: "line 3"; one in another file is FILE:LINE.
        #expect(inMain?.file == "sites/a.ini" && inMain?.line == 3, "\(String(describing: inMain))")
        #expect(inMain?.message.hasSuffix("declared with bind at line 3") == true)
        let inOther = #expect(throws: ConfigError.self) {
            try parse(
                "[blastbeat]\nzmq = tcp://127.0.0.1:5000\ninclude = sites/*\nbind-ssl = 0.0.0.0:8080\n",
                ["sites/a.ini": "[blastbeat:a.test]\nnode = alpha\n\nbind = 0.0.0.0:8080\n"])
        }
        #expect(inOther?.file == "site.ini" && inOther?.line == 4, "\(String(describing: inOther))")
        #expect(inOther?.message.hasSuffix("declared with bind at sites/a.ini:4") == true)
    }

    @Test func keysBeforeASectionInAnIncludedFileAreErrors() {
        let error = #expect(throws: ConfigError.self) { try parse(Self.main, ["sites/a.ini": "node = alpha\n"]) }
        #expect(error?.file == "sites/a.ini" && error?.line == 1)
    }

    @Test func includeOnlyInTheMainSection() {
        let error = #expect(throws: ConfigError.self) {
            try parse(Self.main + "[blastbeat:a.test]\nnode = alpha\ninclude = x.ini\n", [:])
        }
        #expect(error?.file == "site.ini" && error?.line == 8 && error?.key == "include")
    }

    @Test func aMissingFileIsAnErrorAtTheIncludeLine() {
        let error = #expect(throws: ConfigError.self) {
            try parse("[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\ninclude = gone.ini\n", [:])
        }
        #expect(error?.file == "site.ini" && error?.line == 4 && error?.message.contains("gone.ini") == true)
    }

    @Test func loopsAreRefused() {
        let error = #expect(throws: ConfigError.self) {
            try parse(
                "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\ninclude = a.ini\n",
                ["a.ini": "[blastbeat]\ninclude = b.ini\n", "b.ini": "[blastbeat]\ninclude = a.ini\n"])
        }
        #expect(error?.file == "b.ini" && error?.line == 2 && error?.message.contains("includes itself") == true)
    }

    @Test func nestingIsBounded() {
        var files: [String: String] = [:]
        for depth in 0...ConfigParser.maxIncludeDepth + 1 { files["f\(depth).ini"] = "[blastbeat]\ninclude = f\(depth + 1).ini\n" }
        files["f\(ConfigParser.maxIncludeDepth + 2).ini"] = ""
        let error = #expect(throws: ConfigError.self) {
            try parse("[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\ninclude = f0.ini\n", files)
        }
        #expect(error?.message.contains("nest deeper") == true, "\(String(describing: error))")
    }

    @Test func withoutAReaderIncludeIsAnError() {
        let error = #expect(throws: ConfigError.self) { try ConfigParser.parse(Self.main, file: "site.ini") }
        #expect(error?.line == 4 && error?.key == "include")
    }
}
