/// A configuration file problem, located precisely enough to fix it without reading the parser.
///
/// `description` is what the operator sees at startup, e.g.
/// `site.ini:12: bind: expected ADDRESS:PORT with a port in 1-65535, got "0.0.0.0:http"`.
/// Problems found after the whole file was read (a vhost without `node`, conflicting listeners) point at the
/// line that has to change; `line` is 0 only when no line is to blame (a missing `zmq`, no listener at all).
package struct ConfigError: Error, Equatable, CustomStringConvertible {
    /// The file name as given to `ConfigParser.parse(_:file:)`.
    package var file: String
    /// 1-based line number, or 0 when the error is not tied to a line.
    package var line: Int
    /// The key the error is about, or nil for section headers and file-wide problems.
    package var key: String?
    /// What was expected and what was found instead.
    package var message: String

    package init(file: String, line: Int, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    package var description: String {
        var text = file
        if line > 0 {
            text += ":\(line)"
        }
        text += ": "
        if let key {
            text += "\(key): "
        }
        return text + message
    }
}
