/// Validates the response head a backend sends in a `headers` message (docs/PROTOCOL.md, "Response framing").
///
/// The gateway forwards the bytes verbatim, so this parser exists to refuse anything a client could read
/// differently from us (response splitting, ambiguous framing) and to extract the framing facts.
///
/// Grammar accepted (RFC 9112 §4, §5):
/// * optional leading empty lines (CRLF or LF), counted in `length`;
/// * `HTTP/1.0` or `HTTP/1.1`, one SP, three digits 100–999, then either the line end or one SP and a reason
///   phrase of HTAB, SP, VCHAR and obs-text;
/// * header lines `token ":" OWS value OWS`, where the value is HTAB, SP, VCHAR and obs-text only; no
///   whitespace before the colon, no obs-fold;
/// * an empty line.
///
/// Line endings: CRLF, and also a bare LF (lenient, like most clients and RFC 9112 §2.2 allows a recipient
/// to be); the two may be mixed. A CR anywhere but directly before LF, NUL and every other control byte
/// except HTAB are refused: a bare CR is the response-splitting vector, since clients disagree about it.
/// The whole head must be in `bytes`; bytes after it are the start of the body and are not looked at.
package enum HTTPResponseHeadParser {
    /// Parses the head at the start of `bytes` (one `headers` message).
    ///
    /// - Parameter maxLength: the blank line must end within this many bytes, else `.tooLarge`.
    /// - Throws: `.incomplete` when `bytes` ends before the blank line (and is not longer than `maxLength`);
    ///   the other errors at the first offending line.
    package static func parse(_ bytes: RawSpan, maxLength: Int = 64 * 1024) throws(BackendHeadError) -> HTTPResponseHead {
        try bytes.withUnsafeBytes { (raw) throws(BackendHeadError) in try parse(buffer: raw, maxLength: maxLength) }
    }

    private static func parse(
        buffer bytes: UnsafeRawBufferPointer,
        maxLength: Int
    ) throws(BackendHeadError) -> HTTPResponseHead {
        var scanner = Scanner(bytes: bytes, maxLength: maxLength)
        try scanner.skipLeadingEmptyLines()
        let (version, status) = try scanner.statusLine()
        var facts = FramingFacts()
        while true {
            if let blankLineStart = try scanner.blankLine() {
                if facts.contentLength != nil && facts.hasTransferEncoding {
                    throw .contentLengthWithTransferEncoding
                }
                return HTTPResponseHead(
                    version: version,
                    status: status,
                    length: scanner.position,
                    blankLineStart: blankLineStart,
                    contentLength: facts.contentLength,
                    isChunked: facts.isChunked,
                    hasTransferEncoding: facts.hasTransferEncoding,
                    connectionClose: facts.connectionClose,
                    connectionKeepAlive: facts.connectionKeepAlive
                )
            }
            let (name, value) = try scanner.headerLine()
            try facts.record(name: name, value: value, in: bytes)
        }
    }

    /// A cursor over the message that never reads past `limit`.
    private struct Scanner {
        /// Which line is being read, which decides the error for a bad byte.
        enum Line {
            case statusLine
            case header

            func error(at offset: Int) -> BackendHeadError {
                switch self {
                case .statusLine: return .invalidStatusLine
                case .header: return .invalidHeader(offset: offset)
                }
            }
        }

        let bytes: UnsafeRawBufferPointer
        /// `min(bytes.count, maxLength)`: nothing at or beyond it is read.
        let limit: Int
        /// What running into `limit` means: `.tooLarge` if the message goes on beyond `maxLength`.
        let ranOut: BackendHeadError
        var position = 0

        init(bytes: UnsafeRawBufferPointer, maxLength: Int) {
            self.bytes = bytes
            self.limit = min(bytes.count, max(maxLength, 0))
            self.ranOut = bytes.count > maxLength ? .tooLarge(limit: maxLength) : .incomplete
        }

        /// The byte at `position`, or `ranOut` when there is none left.
        func current() throws(BackendHeadError) -> UInt8 {
            guard self.position < self.limit else { throw self.ranOut }
            return self.bytes[self.position]
        }

        /// At CR or LF: consumes CRLF or LF. A CR not followed by LF is an error at the CR.
        mutating func lineEnd(_ line: Line) throws(BackendHeadError) {
            if self.bytes[self.position] == ASCII.cr {
                self.position += 1
                guard try self.current() == ASCII.lf else { throw line.error(at: self.position - 1) }
            }
            self.position += 1
        }

        mutating func skipLeadingEmptyLines() throws(BackendHeadError) {
            while self.position < self.limit {
                let byte = self.bytes[self.position]
                guard byte == ASCII.cr || byte == ASCII.lf else { return }
                try self.lineEnd(.statusLine)
            }
        }

        /// `HTTP/1.x SP 3DIGIT [SP reason] (CR)LF`.
        mutating func statusLine() throws(BackendHeadError) -> (HTTPVersion, Int) {
            let prefix: StaticString = "HTTP/1."
            let expected = UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
            for byte in expected {
                guard try self.current() == byte else { throw .invalidStatusLine }
                self.position += 1
            }
            let version: HTTPVersion
            switch try self.current() {
            case UInt8(ascii: "0"): version = .http10
            case UInt8(ascii: "1"): version = .http11
            default: throw .invalidStatusLine
            }
            self.position += 1
            guard try self.current() == ASCII.space else { throw .invalidStatusLine }
            self.position += 1

            var status = 0
            for _ in 0..<3 {
                let byte = try self.current()
                guard ASCII.isDigit(byte) else { throw .invalidStatusLine }
                status = status * 10 + Int(byte - UInt8(ascii: "0"))
                self.position += 1
            }
            guard status >= 100 else { throw .invalidStatusLine }

            let next = try self.current()
            if next == ASCII.space {
                self.position += 1
                _ = try self.lineContent(.statusLine)
            } else if next == ASCII.cr || next == ASCII.lf {
                try self.lineEnd(.statusLine)
            } else {
                throw .invalidStatusLine
            }
            return (version, status)
        }

        /// Reason-phrase or field-value bytes, then the line end; returns where the content ends (before
        /// the CR or LF). A control byte other than HTAB, or DEL, is an error at that byte.
        mutating func lineContent(_ line: Line) throws(BackendHeadError) -> Int {
            // Eight bytes at a time while none can be a control byte (nearly every value byte).
            while self.position + 8 <= self.limit,
                !HTTPSyntax.mayContainControl(self.bytes.loadUnaligned(fromByteOffset: self.position, as: UInt64.self))
            {
                self.position += 8
            }
            while true {
                let byte = try self.current()
                if byte == ASCII.cr || byte == ASCII.lf {
                    let contentEnd = self.position
                    try self.lineEnd(line)
                    return contentEnd
                }
                guard ASCII.isFieldContent(byte) else { throw line.error(at: self.position) }
                self.position += 1
            }
        }

        /// If the line at `position` is empty, consumes it and returns its start; nil otherwise.
        mutating func blankLine() throws(BackendHeadError) -> Int? {
            let start = self.position
            let byte = try self.current()
            guard byte == ASCII.cr || byte == ASCII.lf else { return nil }
            try self.lineEnd(.header)
            return start
        }

        /// `token ":" OWS value OWS (CR)LF`; returns the name and the value without surrounding OWS.
        mutating func headerLine() throws(BackendHeadError) -> (name: Range<Int>, value: Range<Int>) {
            let nameStart = self.position
            while HTTPSyntax.isTokenByte(try self.current()) {
                self.position += 1
            }
            // Also catches obs-fold (a line starting with SP/HTAB) and whitespace before the colon.
            guard self.position > nameStart, self.bytes[self.position] == UInt8(ascii: ":") else {
                throw .invalidHeader(offset: self.position)
            }
            let name = nameStart..<self.position
            self.position += 1
            while ASCII.isWhitespace(try self.current()) {
                self.position += 1
            }
            let valueStart = self.position
            var valueEnd = try self.lineContent(.header)
            while valueEnd > valueStart, ASCII.isWhitespace(self.bytes[valueEnd - 1]) {
                valueEnd -= 1
            }
            return (name, valueStart..<valueEnd)
        }
    }

    /// The framing headers seen so far.
    private struct FramingFacts {
        var contentLength: Int?
        var hasTransferEncoding = false
        var isChunked = false
        var connectionClose = false
        var connectionKeepAlive = false

        mutating func record(
            name: Range<Int>,
            value: Range<Int>,
            in bytes: UnsafeRawBufferPointer
        ) throws(BackendHeadError) {
            // Non-empty: a header line was found in it.
            let base = bytes.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self)
            if HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[name]), "content-length") {
                // A list of equal values ("5, 5") or repeated equal lines count as one (RFC 9110 §8.6).
                var elements = HTTPListElements(base, value)
                while let element = elements.next() {
                    guard let length = ASCII.decimal(bytes, element) else { throw .invalidContentLength }
                    if let previous = self.contentLength, previous != length {
                        throw .invalidContentLength
                    }
                    self.contentLength = length
                }
            } else if HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[name]), "transfer-encoding") {
                self.hasTransferEncoding = true
                var elements = HTTPListElements(base, value)
                // Empty list elements are ignored (RFC 9110 §5.6.1), so `chunked,` still ends in chunked.
                while let element = elements.next() {
                    if !element.isEmpty {
                        self.isChunked = HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[element]), "chunked")
                    }
                }
            } else if HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[name]), "connection") {
                var elements = HTTPListElements(base, value)
                while let element = elements.next() {
                    if HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[element]), "close") {
                        self.connectionClose = true
                    } else if HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[element]), "keep-alive") {
                        self.connectionKeepAlive = true
                    }
                }
            }
        }
    }

    /// Byte classes of RFC 9110 §5.6.2 and §5.5.
    private enum ASCII {
        static let cr = UInt8(ascii: "\r")
        static let lf = UInt8(ascii: "\n")
        static let space = UInt8(ascii: " ")
        static let tab = UInt8(ascii: "\t")

        static func isDigit(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }

        static func isWhitespace(_ byte: UInt8) -> Bool {
            byte == self.space || byte == self.tab
        }

        /// field-content / reason-phrase bytes: HTAB, SP, VCHAR, obs-text. Excludes NUL, CR, LF, DEL.
        static func isFieldContent(_ byte: UInt8) -> Bool {
            byte == self.tab || (byte >= 0x20 && byte != 0x7F)
        }



        /// 1 to 18 decimal digits (so no overflow); nil otherwise.
        static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
            guard !range.isEmpty, range.count <= 18 else { return nil }
            var value = 0
            for index in range {
                let byte = bytes[index]
                guard self.isDigit(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
    }
}
