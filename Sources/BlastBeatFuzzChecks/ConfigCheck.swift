import BlastBeatCore

extension FuzzChecks {
    /// `ConfigParser` (the ini file):
    /// - parsing is deterministic, and the same file with CRLF line ends, or with a comment line and a
    ///   blank line added at the end, reads to the same configuration (or fails too);
    /// - an accepted configuration keeps the documented minimums (max-headers ≥ 1, sizes ≥ their minimum,
    ///   timeouts and ping settings not negative) and has at least one listener.
    @Sendable public static func config(_ data: UnsafeRawBufferPointer) {
        let text = String(decoding: data, as: UTF8.self)
        let first = parseConfig(text)
        let second = parseConfig(text)
        invariant(first == second, "parsing the same text twice differs")
        let crlf = parseConfig(text.replacingNewlines())
        invariant(sameOutcome(first, crlf), "CRLF line ends read differently: \(String(describing: first)) vs \(String(describing: crlf))")
        let commented = parseConfig(text + "\n; a comment\n\n")
        invariant(sameOutcome(first, commented), "a trailing comment changed the configuration")

        guard case .success(let config) = first else { return }
        invariant(!config.listeners.isEmpty, "accepted without a listener")
        invariant(config.limits.maxHeaderCount >= 1 && config.limits.maxRequestLine >= 1 && config.limits.maxHeadBytes >= 1, "limits")
        invariant(config.limits.maxBodySize >= 0 && config.maxRetryBuffer >= 0, "sizes")
        invariant(config.maxConnections >= 1 && config.maxInstances >= 1 && config.maxHops >= 0, "counts")
        invariant(config.webSocket.maxMessageSize >= 1 && config.maxNodeQueue >= 1 && config.maxOutputBuffer >= 1, "buffers")
        invariant(config.pingFrequency >= 0 && config.pingTimeout >= 0, "ping settings")
        for vhost in config.vhosts { invariant((vhost.maxInstances ?? 1) >= 1, "vhost max-instances") }
    }

    static func parseConfig(_ text: String) -> Result<Configuration, ConfigError> {
        do throws(ConfigError) {
            return .success(try ConfigParser.parse(text, file: "fuzz.ini"))
        } catch {
            return .failure(error)
        }
    }

    /// Same configuration, or both refused (the messages may quote the changed line). Which lines the file had
    /// (`sources`, ConfigSources.swift) differs with the text and is not part of what it configures.
    private static func sameOutcome(_ a: Result<Configuration, ConfigError>, _ b: Result<Configuration, ConfigError>) -> Bool {
        switch (a, b) {
        case (.success(var x), .success(let y)):
            x.sources = y.sources
            return x == y
        case (.failure, .failure): return true
        default: return false
        }
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        var bytes: [UInt8] = []
        for byte in utf8 {
            if byte == 0x0A { bytes.append(0x0D) }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
