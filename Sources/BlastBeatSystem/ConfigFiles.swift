package import BlastBeatCore

/// Reads the files of `include = PATTERN` for the configuration parser (ConfigParser.swift in BlastBeatCore,
/// which does no I/O): glob(3) in sorted order, relative to the including file's directory, through `files`
/// (the file system, or what the privileged parent read: FileSource.swift).
package struct ConfigFiles: ConfigIncludeReader {
    let files: FileSource

    package init(_ files: FileSource) { self.files = files }

    package func read(pattern: String, including: String) throws(ConfigIncludeFailure) -> [(path: String, text: String)] {
        let full = pattern.hasPrefix("/") ? pattern : Self.directory(of: including) + "/" + pattern
        // A pattern with wildcards may match nothing (an empty sites.d is a valid setup); a plain path is read
        // as is, so a missing file is reported.
        let isGlob = full.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" })
        var paths = [full]
        if isGlob {
            do { paths = try files.glob(full) } catch {
                throw ConfigIncludeFailure("cannot read the directory of \(full): \(error)")
            }
        }
        var result: [(path: String, text: String)] = []
        for path in paths {
            do { result.append((path, String(decoding: try files.read(path), as: UTF8.self))) } catch {
                throw ConfigIncludeFailure("cannot \(error)")
            }
        }
        return result
    }

    private static func directory(of file: String) -> String {
        guard let slash = file.lastIndex(of: "/") else { return "." }
        return slash == file.startIndex ? "/" : String(file[..<slash])
    }
}
