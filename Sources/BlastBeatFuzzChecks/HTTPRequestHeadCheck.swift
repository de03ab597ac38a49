import BlastBeatCore

extension FuzzChecks {
    /// Limits small enough that the fuzzer reaches every one of them.
    static let requestLimits: HTTPLimits = {
        var limits = HTTPLimits()
        limits.maxRequestLine = 2048
        limits.maxHeadBytes = 8192
        limits.maxHeaderCount = 32
        limits.maxBodySize = 1 << 20
        return limits
    }()

    /// `HTTPRequestHeadParser` on one buffer:
    /// - fed whole, and fed as growing prefixes of the same buffer (the resume path), it gives the same
    ///   head or the same error, and completes exactly when the prefix reaches `head.length`;
    /// - a head it accepts keeps its limits (header count, request line, head size, body size) and its
    ///   ranges inside the head, and never has Content-Length with chunked;
    /// - the head re-serialised canonically (`method SP target SP version`, `name: value`, CRLF) parses
    ///   to the same method, target, version, header fields and framing facts.
    @Sendable public static func httpRequestHead(_ data: UnsafeRawBufferPointer) {
        let limits = requestLimits
        let whole = parseRequestHead(data, limits: limits)

        // The same buffer, shown one prefix at a time, through one parser and one head.
        var parser = HTTPRequestHeadParser(limits: limits)
        var head = HTTPRequestHead()
        var incremental: Result<HTTPRequestHead, HTTPParseError>? = nil
        var completedAt = 0
        var shownBefore = 0
        for end in splitPoints(count: data.count, seed: fnv1a(data)) {
            do throws(HTTPParseError) {
                if try parser.parse(UnsafeRawBufferPointer(rebasing: data[0..<end]).bytes, into: &head) {
                    incremental = .success(head)
                    completedAt = end
                    break
                }
            } catch {
                incremental = .failure(error)
                break
            }
            shownBefore = end
        }
        switch (whole, incremental) {
        case (nil, nil):
            return
        case (.success(let a)?, .success(let b)?):
            invariant(sameHead(a, data, b, data), "incremental parse gave another head")
            invariant(
                shownBefore < a.length && a.length <= completedAt,
                "incremental parse completed at \(completedAt) (before: \(shownBefore)), head is \(a.length) bytes")
        case (.failure(let a)?, .failure(let b)?):
            invariant(a == b, "whole parse threw \(a), incremental \(b)")
            return
        default:
            fatalError("fuzz invariant: whole parse gave \(String(describing: whole)), incremental \(String(describing: incremental))")
        }
        guard case .success(let parsed)? = whole else { return }
        checkLimits(parsed, data, limits: limits)

        let canonical = serialize(parsed, data)
        var relaxed = limits
        relaxed.maxHeadBytes = Int.max
        let again = canonical.withUnsafeBytes { parseRequestHead($0, limits: relaxed) }
        guard case .success(let reparsed)? = again else {
            fatalError("fuzz invariant: canonical form \(String(decoding: canonical, as: UTF8.self).debugDescription) gave \(String(describing: again))")
        }
        invariant(reparsed.length == canonical.count, "canonical head not consumed whole")
        canonical.withUnsafeBytes { invariant(sameHead(parsed, data, reparsed, $0), "canonical form parsed differently") }
    }

    /// nil when more bytes are needed.
    static func parseRequestHead(
        _ bytes: UnsafeRawBufferPointer, limits: HTTPLimits
    ) -> Result<HTTPRequestHead, HTTPParseError>? {
        var parser = HTTPRequestHeadParser(limits: limits)
        var head = HTTPRequestHead()
        do throws(HTTPParseError) {
            return try parser.parse(bytes.bytes, into: &head) ? .success(head) : nil
        } catch {
            return .failure(error)
        }
    }

    static func checkLimits(_ head: HTTPRequestHead, _ data: UnsafeRawBufferPointer, limits: HTTPLimits) {
        invariant(head.length <= data.count, "head longer than its buffer")
        invariant(head.headers.count <= limits.maxHeaderCount, "\(head.headers.count) headers > max-headers")
        invariant(head.method.lowerBound + limits.maxHeadBytes >= head.length, "head larger than max-header-size")
        let requestLine = head.method.lowerBound..<(head.target.upperBound + 9)
        invariant(requestLine.count <= limits.maxRequestLine, "request line longer than max-request-line")
        invariant(!(head.contentLength != nil && head.isChunked), "Content-Length and chunked together")
        if let length = head.contentLength {
            invariant(length >= 0 && length <= limits.maxBodySize, "Content-Length \(length) > max-body-size")
        }
        invariant(head.version == .http10 || head.host != nil, "HTTP/1.1 head without Host")
        invariant(!head.method.isEmpty && !head.target.isEmpty, "empty method or target")
        var ranges = [head.method, head.target]
        if let host = head.host { ranges.append(host) }
        for field in head.headers { ranges += [field.name, field.value] }
        for range in ranges {
            invariant(range.lowerBound >= 0 && range.upperBound <= head.length, "range \(range) outside the head")
        }
    }

    static func serialize(_ head: HTTPRequestHead, _ data: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out += data[head.method]
        out.append(0x20)
        out += data[head.target]
        out.append(0x20)
        out += head.version == .http11 ? Array("HTTP/1.1".utf8) : Array("HTTP/1.0".utf8)
        out += [0x0D, 0x0A]
        for field in head.headers {
            out += data[field.name]
            out += [0x3A, 0x20]
            out += data[field.value]
            out += [0x0D, 0x0A]
        }
        out += [0x0D, 0x0A]
        return out
    }

    /// Same parse, compared by bytes (the two heads may index different buffers).
    static func sameHead(
        _ a: HTTPRequestHead, _ aBytes: UnsafeRawBufferPointer, _ b: HTTPRequestHead, _ bBytes: UnsafeRawBufferPointer
    ) -> Bool {
        func same(_ x: Range<Int>?, _ y: Range<Int>?) -> Bool {
            switch (x, y) {
            case (nil, nil): return true
            case (let x?, let y?): return aBytes[x].elementsEqual(bBytes[y])
            default: return false
            }
        }
        guard same(a.method, b.method), a.methodKind == b.methodKind, same(a.target, b.target),
            a.version == b.version, a.headers.count == b.headers.count,
            a.contentLength == b.contentLength, a.isChunked == b.isChunked, a.keepAlive == b.keepAlive,
            a.expectContinue == b.expectContinue, same(a.host, b.host), a.isWebSocketUpgrade == b.isWebSocketUpgrade
        else { return false }
        for (x, y) in zip(a.headers, b.headers) {
            guard same(x.name, y.name), same(x.value, y.value), x.known == y.known else { return false }
        }
        return true
    }
}
