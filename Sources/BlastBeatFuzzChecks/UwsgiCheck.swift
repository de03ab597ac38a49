import BlastBeatCore

extension FuzzChecks {
    /// `UwsgiEncoder`, round trip through `UwsgiDecoder`. Input: a request head (as for
    /// `httpRequestHead`); a head the parser accepts is encoded with a fixed context, and:
    /// - the packet decodes (`UwsgiDecoder`), its size field is the length of its pairs, every key is
    ///   non-empty, and the packet fits `sizeBound`;
    /// - REQUEST_METHOD, REQUEST_URI, SERVER_PROTOCOL are the head's bytes, CONTENT_LENGTH its length,
    ///   every HTTP_* variable comes from a header without `_` in its name, at most once per name;
    /// - when the encoder refuses (`tooLarge`), the packet would indeed exceed 65,535 bytes of pairs.
    @Sendable public static func uwsgi(_ data: UnsafeRawBufferPointer) {
        var limits = requestLimits
        limits.maxHeadBytes = 1 << 20
        limits.maxRequestLine = 1 << 20
        guard case .success(let head)? = parseRequestHead(data, limits: limits) else { return }
        let context = UwsgiRequestContext(
            serverName: Array("example.com".utf8), serverPort: Array("8080".utf8),
            remoteAddress: Array("::1".utf8), remotePort: Array("54321".utf8), isTLS: data.count % 2 == 0,
            tlsServerName: Array("example.com".utf8), tlsVersion: Array("TLSv1.3".utf8))
        var packet: [UInt8] = [0xAA]
        do throws(UwsgiError) {
            try UwsgiEncoder.encode(head: head, request: data.bytes, context: context, into: &packet)
        } catch {
            invariant(packet == [0xAA], "a refused encode left bytes behind")
            invariant(UwsgiEncoder.sizeBound(head: head, context: context) > UwsgiEncoder.maxPairsLength, "refused a small packet: \(error)")
            return
        }
        invariant(packet.first == 0xAA, "encode changed bytes before its packet")
        packet.removeFirst()
        invariant(packet.count <= UwsgiEncoder.sizeBound(head: head, context: context), "packet larger than sizeBound")
        invariant(packet.count - 4 <= UwsgiEncoder.maxPairsLength, "pairs longer than the size field allows")

        guard let pairs = UwsgiDecoder.decode(packet) else {
            fatalError("fuzz invariant: UwsgiDecoder refused the encoder's packet")
        }
        func value(_ key: String) -> [UInt8]? {
            let key = Array(key.utf8)
            return pairs.first { $0.key == key }?.value
        }
        invariant(value("REQUEST_METHOD") == Array(data[head.method]), "REQUEST_METHOD differs")
        invariant(value("REQUEST_URI") == Array(data[head.target]), "REQUEST_URI differs")
        invariant(
            value("SERVER_PROTOCOL") == Array((head.version == .http11 ? "HTTP/1.1" : "HTTP/1.0").utf8),
            "SERVER_PROTOCOL differs")
        invariant(
            value("CONTENT_LENGTH") == head.contentLength.map { Array(String($0).utf8) }, "CONTENT_LENGTH differs")
        invariant(value("SERVER_NAME") == context.serverName, "SERVER_NAME differs")
        let prefix = Array("HTTP_".utf8)
        var seen = Set<[UInt8]>()
        for pair in pairs {
            invariant(!pair.key.isEmpty, "empty key")
            guard pair.key.starts(with: prefix) else { continue }
            invariant(seen.insert(pair.key).inserted, "\(String(decoding: pair.key, as: UTF8.self)) twice")
            let suffix = pair.key.dropFirst(prefix.count)
            let fromHeader = head.headers.contains { field in
                let name = data[field.name]
                return !name.contains(UInt8(ascii: "_")) && name.count == suffix.count
                    && zip(name, suffix).allSatisfy { cgiName($0) == $1 }
            }
            invariant(fromHeader || pair.key == Array("HTTPS".utf8), "\(String(decoding: pair.key, as: UTF8.self)) from no header")
        }
    }

    /// A header name byte as it appears in HTTP_*: uppercase, `-` as `_`.
    private static func cgiName(_ byte: UInt8) -> UInt8 {
        if byte == UInt8(ascii: "-") { return UInt8(ascii: "_") }
        if (0x61...0x7A).contains(byte) { return byte - 0x20 }
        return byte
    }
}
