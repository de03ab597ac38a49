/// A `node-key = NODE KEY` line of a vhost: a CURVE public key that may claim node NODE (or NODE#anything).
package struct NodeKey: Sendable, Equatable {
    /// The key itself (40 Z85 characters in the file) or the path of a public certificate file.
    package enum Source: Sendable, Equatable {
        case key(CurveKey)
        case file(String)
    }

    package var node: [UInt8]
    package var source: Source
    /// The line, for errors found when a certificate file is read.
    package var line: Int

    /// "#" between a node name and an instance suffix (`NAME#INSTANCE`).
    package static let instanceSeparator = UInt8(ascii: "#")

    package init(node: [UInt8], source: Source, line: Int) {
        self.node = node
        self.source = source
        self.line = line
    }
}
