import BlastBeatCore

extension FuzzChecks {
    static let responseMaxLength = 2048

    /// `HTTPResponseHeadParser` (a backend's `headers` message):
    /// - an accepted head ends within `maxLength`, its blank line lies inside it, its status is 100–999,
    ///   and it never has Content-Length together with Transfer-Encoding (chunked implies Transfer-Encoding);
    /// - bytes after the head are not looked at: the head alone, and the head followed by other bytes,
    ///   parse to the same result; a `maxLength` of exactly its length still accepts it;
    /// - the body framing it implies is consistent with those facts.
    @Sendable public static func httpResponseHead(_ data: UnsafeRawBufferPointer) {
        let result = parseResponseHead(data, maxLength: responseMaxLength)
        guard case .success(let head) = result else {
            if case .failure(.tooLarge(let limit)) = result {
                invariant(limit == responseMaxLength, "tooLarge names another limit")
                invariant(data.count > responseMaxLength, "tooLarge for a message within the limit")
            }
            return
        }
        invariant(head.length <= data.count && head.length <= responseMaxLength, "head longer than allowed")
        invariant(head.blankLineStart < head.length && head.length - head.blankLineStart <= 2, "blank line misplaced")
        invariant((100...999).contains(head.status), "status \(head.status)")
        invariant(!(head.contentLength != nil && head.hasTransferEncoding), "Content-Length with Transfer-Encoding")
        invariant(!head.isChunked || head.hasTransferEncoding, "chunked without Transfer-Encoding")
        if let length = head.contentLength { invariant(length >= 0, "negative Content-Length") }

        let alone = parseResponseHead(UnsafeRawBufferPointer(rebasing: data[0..<head.length]), maxLength: responseMaxLength)
        invariant(alone == .success(head), "the head alone parsed as \(alone)")
        let exact = parseResponseHead(data, maxLength: head.length)
        invariant(exact == .success(head), "maxLength = length parsed as \(exact)")
        let followed = (Array(data[0..<head.length]) + Array("\r\n\0garbage\r\r".utf8)).withUnsafeBytes {
            parseResponseHead($0, maxLength: responseMaxLength)
        }
        invariant(followed == .success(head), "the head followed by other bytes parsed as \(followed)")

        switch head.bodyFraming(requestIsHEAD: false) {
        case .none: invariant(head.status < 200 || head.status == 204 || head.status == 304, "no body for \(head.status)")
        case .contentLength(let length): invariant(length == head.contentLength, "framing length differs")
        case .chunked: invariant(head.isChunked, "chunked framing without chunked")
        case .untilClose: invariant(!head.isChunked, "chunked response read until close")
        }
        invariant(head.bodyFraming(requestIsHEAD: true) == .none, "a HEAD response has a body")
    }

    static func parseResponseHead(_ bytes: UnsafeRawBufferPointer, maxLength: Int) -> Result<HTTPResponseHead, BackendHeadError> {
        do throws(BackendHeadError) {
            return .success(try HTTPResponseHeadParser.parse(bytes.bytes, maxLength: maxLength))
        } catch {
            return .failure(error)
        }
    }
}
