import BlastBeatCore

/// What the access log needs from a request, copied at request start because the request bytes
/// are gone by the time the response completes. The arrays keep their capacity between requests.
struct AccessLogRecord {
    var requestLine: [UInt8] = []
    var referer: [UInt8] = []
    var userAgent: [UInt8] = []
    var status = 0
    var bytesSent = 0
    /// The vhost the request was routed to, -1 before (or without) routing.
    var vhost = -1

    mutating func capture(head: HTTPRequestHead, bytes: RawSpan) {
        requestLine.removeAll(keepingCapacity: true)
        requestLine.appendBytes(bytes.extracting(head.method))
        requestLine.append(0x20)
        requestLine.appendBytes(bytes.extracting(head.target))
        requestLine.append(0x20)
        requestLine.appendBytes(head.version.text)
        referer.removeAll(keepingCapacity: true)
        userAgent.removeAll(keepingCapacity: true)
        for field in head.headers where field.known == nil {
            let name = bytes.extracting(field.name)
            if HTTPSyntax.equalsIgnoringCase(name, "referer") {
                referer.appendBytes(bytes.extracting(field.value))
            } else if HTTPSyntax.equalsIgnoringCase(name, "user-agent") {
                userAgent.appendBytes(bytes.extracting(field.value))
            }
        }
        status = 0
        bytesSent = 0
        vhost = -1
    }


    /// Appends one line in combined format plus `node=`, `time=` (seconds) and `vhost=` (the vhost section's
    /// name, `-` for a request no vhost took) to `out`; `vhost=` comes last so parsers of the older lines
    /// keep working. With several worker processes, ` worker=N` follows: which one served the request.
    /// Quotes and control bytes inside quoted fields are escaped so a client cannot forge lines.
    func write(
        into out: inout [UInt8], remote: [UInt8], date: [UInt8], node: [UInt8]?, seconds: Double,
        vhost: String?, worker: Int? = nil
    ) {
        out.append(contentsOf: remote)
        out.append(contentsOf: " - - [".utf8)
        out.append(contentsOf: date)
        out.append(contentsOf: "] \"".utf8)
        Self.appendEscaped(requestLine, to: &out)
        out.append(contentsOf: "\" \(status) \(bytesSent) \"".utf8)
        if referer.isEmpty { out.append(0x2D) } else { Self.appendEscaped(referer, to: &out) }
        out.append(contentsOf: "\" \"".utf8)
        if userAgent.isEmpty { out.append(0x2D) } else { Self.appendEscaped(userAgent, to: &out) }
        out.append(contentsOf: "\" node=".utf8)
        if let node { Self.appendEscaped(node, to: &out) } else { out.append(0x2D) }
        let millis = Int((seconds * 1000).rounded())
        out.append(contentsOf: " time=\(millis / 1000).\(String(millis % 1000 + 1000).dropFirst()) vhost=".utf8)
        if let vhost { Self.appendEscaped(vhost.utf8, to: &out) } else { out.append(0x2D) }
        if let worker { out.append(contentsOf: " worker=\(worker)".utf8) }
        out.append(0x0A)
    }

    private static func appendEscaped(_ bytes: some Sequence<UInt8>, to out: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        for b in bytes {
            if b < 0x20 || b == 0x22 || b == 0x5C || b >= 0x7F {
                out.append(contentsOf: [0x5C, 0x78, hex[Int(b >> 4)], hex[Int(b & 15)]])
            } else {
                out.append(b)
            }
        }
    }
}
