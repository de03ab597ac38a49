package import BlastBeatCore
import Glibc

/// Reads the files of `include = PATTERN` for the configuration parser (ConfigParser.swift in BlastBeatCore,
/// which does no I/O): glob(3) in sorted order, relative to the including file's directory.
package struct ConfigFiles: ConfigIncludeReader {
    package init() {}

    package func read(pattern: String, including: String) throws(ConfigIncludeFailure) -> [(path: String, text: String)] {
        let full = pattern.hasPrefix("/") ? pattern : Self.directory(of: including) + "/" + pattern
        var files: [(path: String, text: String)] = []
        for path in try Self.paths(matching: full) {
            do {
                let bytes = try Posix.readFile(path)
                files.append((path, String(decoding: bytes, as: UTF8.self)))
            } catch {
                throw ConfigIncludeFailure("cannot read \(path): \(error)")
            }
        }
        return files
    }

    /// A pattern with wildcards may match nothing (an empty sites.d is a valid setup); a plain path is
    /// returned as is, so reading it reports a missing file.
    private static func paths(matching pattern: String) throws(ConfigIncludeFailure) -> [String] {
        guard pattern.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" }) else { return [pattern] }
        var result = glob_t()
        defer { globfree(&result) }
        switch glob(pattern, GLOB_ERR, nil, &result) {
        case 0:
            break
        case GLOB_NOMATCH:
            return []
        case GLOB_ABORTED:
            throw ConfigIncludeFailure("cannot read the directory of \(pattern): \(SystemError(call: "glob", errno: errno))")
        default:
            throw ConfigIncludeFailure("cannot expand \(pattern)")
        }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
        }
        return paths  // glob(3) sorts them
    }

    private static func directory(of file: String) -> String {
        guard let slash = file.lastIndex(of: "/") else { return "." }
        return slash == file.startIndex ? "/" : String(file[..<slash])
    }
}
