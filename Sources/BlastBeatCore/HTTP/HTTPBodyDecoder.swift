/// Incremental decoder for a message body framed by Content-Length or by the chunked transfer
/// coding (RFC 9112 §6.3, §7.1): finds the payload bytes and the exact end of the body.
///
/// Used for request bodies and, by the gateway, to see where a backend's chunked response ends.
/// It holds no buffer: every framing byte it is shown is consumed and remembered in `state`, so the
/// caller may drop consumed bytes at once, and feeding one byte per call works. Payload is not
/// copied; `decode` returns its range inside the caller's input.
///
/// Chunked syntax is strict: 1–16 hex digits, chunk extensions only as RFC 9112 §7.1.1 spells them
/// (`;name`, `;name=token`, `;name="quoted"`, BWS around `;` and `=`), CRLF everywhere (a bare LF or
/// CR is `.invalidChunkFraming`), CRLF right after each chunk's data, and trailer fields that follow
/// the header-line rules. Error offsets count from the first byte of the body (all calls together).
///
/// Limits: the chunk-size line (size and extensions, without CRLF) at most `maxChunkLine` bytes;
/// the trailer field lines (with their CRLFs, without the final empty line) at most
/// `maxTrailerBytes`; the total payload at most `maxBodySize`, checked against each chunk's
/// declared size before its data arrives.
package struct HTTPBodyDecoder: Sendable {
    /// The resume point: what the next input byte is expected to be.
    private enum State: Sendable {
        /// Content-Length mode; `remaining` > 0.
        case contentLength(remaining: Int)
        /// In the hex digits of a chunk size (`digits` of them so far).
        case chunkSize(size: Int, digits: Int)
        /// After the size, in the chunk extensions.
        case chunkExtension(size: Int, ChunkExtensionState)
        /// Saw the CR ending the chunk-size line.
        case chunkSizeLF(size: Int)
        /// In a chunk's data; `remaining` > 0.
        case chunkData(remaining: Int)
        /// Expecting the CRLF that must follow a chunk's data.
        case chunkDataCR
        case chunkDataLF
        /// After the last chunk: at the start of a trailer field line or of the final empty line.
        case trailerLineStart
        case trailerName
        case trailerValue
        /// Saw the CR ending a trailer field line.
        case trailerLF
        /// Saw the CR of the final empty line.
        case finalLF
        case finished
    }

    /// Position inside `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`.
    private enum ChunkExtensionState: Sendable {
        case beforeSemicolon
        case beforeName
        case name
        case afterName
        case beforeValue
        case tokenValue
        case quotedValue
        case quotedPair
        case afterQuotedValue
    }

    private var state: State
    private let limits: HTTPLimits
    /// Bytes of the current chunk-size line so far (without CRLF).
    private var chunkLineBytes = 0
    /// Bytes of trailer field lines so far.
    private var trailerBytes = 0
    /// Bytes consumed by earlier calls; turns an index into `input` into an offset in the body.
    private var consumedBefore = 0
    /// Total payload bytes produced so far.
    package private(set) var payloadBytes = 0

    private init(state: State, limits: HTTPLimits) {
        self.state = state
        self.limits = limits
    }

    /// A body of exactly `n` bytes (`n` ≥ 0; 0 is finished at once). The head parser has already
    /// checked `n` against `maxBodySize`.
    package static func contentLength(_ n: Int) -> HTTPBodyDecoder {
        precondition(n >= 0, "negative Content-Length")
        return HTTPBodyDecoder(state: n == 0 ? .finished : .contentLength(remaining: n), limits: HTTPLimits())
    }

    /// A chunked body, bounded by `limits.maxBodySize`, `maxChunkLine` and `maxTrailerBytes`.
    package static func chunked(limits: HTTPLimits) -> HTTPBodyDecoder {
        HTTPBodyDecoder(state: .chunkSize(size: 0, digits: 0), limits: limits)
    }

    /// Whether the whole body, including the chunked trailer section, has been consumed.
    /// Bytes still expected of a Content-Length body; nil for a chunked body and once finished.
    package var remainingLength: Int? {
        if case .contentLength(let remaining) = state { return remaining }
        return nil
    }

    package var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Consumes framing and at most one run of payload from the front of `input`.
    ///
    /// Returns how many bytes of `input` were consumed and, if any, the payload range (relative to
    /// input's start, inside the consumed part; a run ends the call). Call repeatedly with the
    /// unconsumed rest until `consumed == 0` (more input needed) or `isFinished`. Bytes after the
    /// end of the body are never consumed: they belong to the next message.
    package mutating func decode(_ input: RawSpan) throws(HTTPParseError) -> (consumed: Int, payload: Range<Int>?) {
        try input.withUnsafeBytes { (raw) throws(HTTPParseError) in try decode(buffer: raw) }
    }

    private mutating func decode(
        buffer input: UnsafeRawBufferPointer
    ) throws(HTTPParseError) -> (consumed: Int, payload: Range<Int>?) {
        guard let raw = input.baseAddress, !input.isEmpty else { return (0, nil) }
        let bytes = raw.assumingMemoryBound(to: UInt8.self)
        let count = input.count
        var i = 0
        while i < count {
            switch state {
            case .finished:
                consumedBefore += i
                return (i, nil)
            case .contentLength(let remaining):
                let n = min(remaining, count - i)
                payloadBytes += n
                consumedBefore += i + n
                state = n == remaining ? .finished : .contentLength(remaining: remaining - n)
                return (i + n, i..<(i + n))
            case .chunkData(let remaining):
                let n = min(remaining, count - i)
                payloadBytes += n
                consumedBefore += i + n
                state = n == remaining ? .chunkDataCR : .chunkData(remaining: remaining - n)
                return (i + n, i..<(i + n))
            default:
                try step(bytes[i], at: consumedBefore + i)
                i += 1
            }
        }
        consumedBefore += i
        return (i, nil)
    }

    /// Consumes one framing byte; `offset` is its position in the body, for errors.
    private mutating func step(_ b: UInt8, at offset: Int) throws(HTTPParseError) {
        typealias S = HTTPSyntax
        switch state {
        case .chunkSize(let size, let digits):
            if b != S.cr { try countChunkLineByte() }
            if let value = Self.hexValue(b) {
                guard digits < 16, size <= Int.max >> 4 else { throw .invalidChunkSize }
                state = .chunkSize(size: size << 4 | value, digits: digits + 1)
                return
            }
            guard digits > 0 else { throw .invalidChunkSize }
            guard size <= limits.maxBodySize - payloadBytes else { throw .bodyTooLarge(limit: limits.maxBodySize) }
            switch b {
            case S.cr: state = .chunkSizeLF(size: size)
            case UInt8(ascii: ";"): state = .chunkExtension(size: size, .beforeName)
            case S.sp, S.htab: state = .chunkExtension(size: size, .beforeSemicolon)
            case S.lf: throw .invalidChunkFraming
            default: throw .invalidChunkSize
            }

        case .chunkExtension(let size, let position):
            if b == S.cr {
                switch position {
                case .name, .tokenValue, .afterQuotedValue: state = .chunkSizeLF(size: size)
                case .beforeSemicolon, .beforeName, .afterName, .beforeValue, .quotedValue, .quotedPair:
                    throw .invalidChunkFraming
                }
                return
            }
            try countChunkLineByte()
            state = .chunkExtension(size: size, try Self.extensionStep(position, b))

        case .chunkSizeLF(let size):
            guard b == S.lf else { throw .invalidChunkFraming }
            state = size == 0 ? .trailerLineStart : .chunkData(remaining: size)

        case .chunkDataCR:
            guard b == S.cr else { throw .invalidChunkFraming }
            state = .chunkDataLF

        case .chunkDataLF:
            guard b == S.lf else { throw .invalidChunkFraming }
            chunkLineBytes = 0
            state = .chunkSize(size: 0, digits: 0)

        case .trailerLineStart:
            if b == S.cr {
                state = .finalLF
                return
            }
            try countTrailerByte()
            if S.isTokenByte(b) {
                state = .trailerName
            } else if S.isWhitespace(b) {
                throw .obsoleteLineFolding(offset: offset)
            } else if b == S.lf {
                throw .invalidChunkFraming
            } else {
                throw .invalidHeaderName(offset: offset)
            }

        case .trailerName:
            try countTrailerByte()
            if b == S.colon {
                state = .trailerValue
            } else if b == S.lf {
                throw .invalidChunkFraming
            } else if !S.isTokenByte(b) {
                throw .invalidHeaderName(offset: offset)
            }

        case .trailerValue:
            try countTrailerByte()
            if b == S.cr {
                state = .trailerLF
            } else if b == S.lf {
                throw .invalidChunkFraming
            } else if !S.isFieldVisible(b) && !S.isWhitespace(b) {
                throw .invalidHeaderValue(offset: offset)
            }

        case .trailerLF:
            try countTrailerByte()
            guard b == S.lf else { throw .invalidChunkFraming }
            state = .trailerLineStart

        case .finalLF:
            guard b == S.lf else { throw .invalidChunkFraming }
            state = .finished

        case .contentLength, .chunkData, .finished:
            preconditionFailure("decode(_:) handles payload and finished states itself")
        }
    }

    private mutating func countChunkLineByte() throws(HTTPParseError) {
        chunkLineBytes += 1
        if chunkLineBytes > limits.maxChunkLine { throw .chunkLineTooLong(limit: limits.maxChunkLine) }
    }

    private mutating func countTrailerByte() throws(HTTPParseError) {
        trailerBytes += 1
        if trailerBytes > limits.maxTrailerBytes { throw .trailerTooLarge(limit: limits.maxTrailerBytes) }
    }

    /// One byte of chunk extension (CR is handled by the caller); syntax errors are `.invalidChunkFraming`.
    private static func extensionStep(
        _ position: ChunkExtensionState,
        _ b: UInt8
    ) throws(HTTPParseError) -> ChunkExtensionState {
        typealias S = HTTPSyntax
        let semicolon = UInt8(ascii: ";")
        let equals = UInt8(ascii: "=")
        let quote = UInt8(ascii: "\"")
        switch position {
        case .beforeSemicolon:
            if S.isWhitespace(b) { return .beforeSemicolon }
            if b == semicolon { return .beforeName }
        case .beforeName:
            if S.isWhitespace(b) { return .beforeName }
            if S.isTokenByte(b) { return .name }
        case .name:
            if S.isTokenByte(b) { return .name }
            if S.isWhitespace(b) { return .afterName }
            if b == equals { return .beforeValue }
            if b == semicolon { return .beforeName }
        case .afterName:
            if S.isWhitespace(b) { return .afterName }
            if b == equals { return .beforeValue }
            if b == semicolon { return .beforeName }
        case .beforeValue:
            if S.isWhitespace(b) { return .beforeValue }
            if b == quote { return .quotedValue }
            if S.isTokenByte(b) { return .tokenValue }
        case .tokenValue:
            if S.isTokenByte(b) { return .tokenValue }
            if S.isWhitespace(b) { return .beforeSemicolon }
            if b == semicolon { return .beforeName }
        case .quotedValue:
            if b == quote { return .afterQuotedValue }
            if b == UInt8(ascii: "\\") { return .quotedPair }
            if S.isFieldVisible(b) || S.isWhitespace(b) { return .quotedValue }
        case .quotedPair:
            if S.isFieldVisible(b) || S.isWhitespace(b) { return .quotedValue }
        case .afterQuotedValue:
            if S.isWhitespace(b) { return .beforeSemicolon }
            if b == semicolon { return .beforeName }
        }
        throw .invalidChunkFraming
    }

    private static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: return Int(b &- 0x30)
        case 0x41...0x46: return Int(b &- 0x41 &+ 10)
        case 0x61...0x66: return Int(b &- 0x61 &+ 10)
        default: return nil
        }
    }
}
