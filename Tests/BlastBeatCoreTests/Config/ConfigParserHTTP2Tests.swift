import BlastBeatCore
import Testing

/// `http2`, per vhost and in [blastbeat], and `http2-max-streams`.
struct ConfigParserHTTP2Tests {
    static let base = "[blastbeat]\nzmq = tcp://127.0.0.1:5000\nbind = 0.0.0.0:8080\n"

    @Test func defaults() throws {
        let config = try ConfigParser.parse(Self.base + "[blastbeat:a]\nnode = A\n", file: "t.ini")
        #expect(config.http2 && config.http2MaxStreams == 100 && config.vhosts[0].http2)
    }

    @Test func vhostsInheritAndOverride() throws {
        let config = try ConfigParser.parse(
            Self.base + "http2 = false\nhttp2-max-streams = 8\n[blastbeat:a]\nnode = A\n[blastbeat:b]\nnode = B\nhttp2 = true\n",
            file: "t.ini")
        #expect(!config.http2 && config.http2MaxStreams == 8)
        #expect(!config.vhosts[0].http2 && config.vhosts[1].http2)
    }

    @Test(arguments: [
        ("http2 = sometimes\n", 4, "http2"),
        ("http2-max-streams = 0\n", 4, "http2-max-streams"),
        ("http2-max-streams = 10001\n", 4, "http2-max-streams"),
        ("[blastbeat:a]\nnode = A\nhttp2-max-streams = 5\n", 6, "http2-max-streams"),
    ])
    func rejected(text: String, line: Int, key: String) {
        #expect {
            try ConfigParser.parse(Self.base + text, file: "t.ini")
        } throws: { error in
            let text = "\(error)"
            return text.contains("t.ini:\(line):") && text.contains(key)
        }
    }
}
