/// What the privileged parent read for a reload, sent to the serving process (README.md, "Reload"): every file
/// the configuration names (or why it could not be read), what each `include` glob matched, and for each
/// listener the parent bound, how many of the descriptors that travel with the bundle are its sockets.
///
/// Wire format (all integers little-endian u32): a version byte, then records, each a kind byte and fields:
/// `F path errno length bytes` (errno 0 when read), `G pattern errno count path…` and
/// `L key errno count`, and `E` last; a string is a u32 length and its bytes. Decoding checks every length
/// against what is left and requires the end record, so a truncated or corrupt bundle is an error, never a crash.
package struct FileBundle: Equatable, Sendable {
    package enum Entry<Value: Equatable & Sendable>: Equatable, Sendable {
        case value(Value)
        case failed(errno: Int32)
    }

    package var files: [String: Entry<[UInt8]>] = [:]
    package var globs: [String: Entry<[String]>] = [:]
    /// Listener key (`Self.listenerKey`) → the number of sockets, in the order the descriptors arrive.
    package var listeners: [(key: String, sockets: Entry<Int>)] = []

    package init() {}

    package static func listenerKey(_ listener: ListenerConfig) -> String {
        "\(listener.tls ? "bind-ssl" : "bind") \(listener.address)"
    }

    package static func == (a: FileBundle, b: FileBundle) -> Bool {
        a.files == b.files && a.globs == b.globs && a.listeners.map(\.key) == b.listeners.map(\.key)
            && a.listeners.map(\.sockets) == b.listeners.map(\.sockets)
    }

    /// Descriptors the bundle says travel with it.
    package var socketCount: Int {
        listeners.reduce(0) { total, listener in
            if case .value(let count) = listener.sockets { return total + count }
            return total
        }
    }

    private static let version: UInt8 = 1

    package func encoded() -> [UInt8] {
        var out: [UInt8] = [Self.version]
        func u32(_ value: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: value).littleEndian) { out += $0 } }
        func string(_ text: String) {
            u32(text.utf8.count)
            out += text.utf8
        }
        for (path, entry) in files.sorted(by: { $0.key < $1.key }) {
            out.append(UInt8(ascii: "F"))
            string(path)
            switch entry {
            case .value(let bytes): u32(0); u32(bytes.count); out += bytes
            case .failed(let errno): u32(Int(errno)); u32(0)
            }
        }
        for (pattern, entry) in globs.sorted(by: { $0.key < $1.key }) {
            out.append(UInt8(ascii: "G"))
            string(pattern)
            switch entry {
            case .value(let paths): u32(0); u32(paths.count); paths.forEach(string)
            case .failed(let errno): u32(Int(errno)); u32(0)
            }
        }
        for (key, sockets) in listeners {
            out.append(UInt8(ascii: "L"))
            string(key)
            switch sockets {
            case .value(let count): u32(0); u32(count)
            case .failed(let errno): u32(Int(errno)); u32(0)
            }
        }
        out.append(UInt8(ascii: "E"))
        return out
    }

    package struct DecodingError: Error, CustomStringConvertible {
        package var description: String
    }

    package static func decode(_ bytes: [UInt8]) throws(DecodingError) -> FileBundle {
        var reader = Reader(bytes: bytes)
        guard try reader.byte() == version else { throw DecodingError(description: "unknown bundle version") }
        var bundle = FileBundle()
        while true {
            let kind = try reader.byte()
            if kind == UInt8(ascii: "E") {
                guard reader.isAtEnd else { throw DecodingError(description: "bytes after the end of the bundle") }
                return bundle
            }
            let name = try reader.string()
            let errno = Int32(truncatingIfNeeded: try reader.u32())
            let count = try reader.u32()
            switch kind {
            case UInt8(ascii: "F"):
                let data = try reader.take(count)
                bundle.files[name] = errno == 0 ? .value(data) : .failed(errno: errno)
            case UInt8(ascii: "G"):
                var paths: [String] = []
                for _ in 0..<count { paths.append(try reader.string()) }
                bundle.globs[name] = errno == 0 ? .value(paths) : .failed(errno: errno)
            case UInt8(ascii: "L"):
                bundle.listeners.append((name, errno == 0 ? .value(count) : .failed(errno: errno)))
            default:
                throw DecodingError(description: "unknown record kind \(kind)")
            }
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0
        var isAtEnd: Bool { offset == bytes.count }

        mutating func byte() throws(DecodingError) -> UInt8 { try take(1)[0] }

        mutating func u32() throws(DecodingError) -> Int {
            let raw = try take(4)
            return Int(raw[0]) | Int(raw[1]) << 8 | Int(raw[2]) << 16 | Int(raw[3]) << 24
        }

        mutating func string() throws(DecodingError) -> String {
            String(decoding: try take(try u32()), as: UTF8.self)
        }

        mutating func take(_ count: Int) throws(DecodingError) -> [UInt8] {
            guard count <= bytes.count - offset else { throw DecodingError(description: "truncated bundle") }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }
    }
}
