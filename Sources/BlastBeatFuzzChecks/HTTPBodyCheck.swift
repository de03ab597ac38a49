import BlastBeatCore

extension FuzzChecks {
    static let bodyLimits: HTTPLimits = {
        var limits = HTTPLimits()
        limits.maxBodySize = 4096
        limits.maxChunkLine = 64
        limits.maxTrailerBytes = 256
        return limits
    }()

    /// `HTTPBodyDecoder`. Input: one mode byte (bit 0: chunked, else Content-Length = the next two
    /// bytes), then the body bytes.
    /// - decoded whole and decoded in pieces (one byte at a time for short inputs), it yields the same
    ///   payload, consumes the same bytes and ends (or fails with the same error) at the same point;
    /// - a chunked payload never exceeds max-body-size; a Content-Length payload never exceeds the
    ///   declared length and is exactly that long when finished; bytes after the body are not consumed;
    /// - a finished chunked body re-encoded as one chunk decodes to the same payload.
    @Sendable public static func httpBody(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let chunked = reader.byte() & 1 == 1
        let contentLength = chunked ? 0 : reader.uint16()
        let body = reader.rest()
        let limits = bodyLimits
        func decoder() -> HTTPBodyDecoder {
            chunked ? .chunked(limits: limits) : .contentLength(contentLength)
        }

        let whole = body.withUnsafeBytes { decodeBody(decoder(), $0, pieces: [$0.count]) }
        let pieces = body.withUnsafeBytes {
            decodeBody(decoder(), $0, pieces: splitPoints(count: $0.count, seed: fnv1a($0)))
        }
        invariant(whole.payload == pieces.payload, "payload differs when fed in pieces")
        // A throwing call reports nothing consumed, so only a body without error has a comparable count.
        invariant(
            whole.error != nil || whole.consumed == pieces.consumed,
            "consumed \(whole.consumed) whole, \(pieces.consumed) in pieces")
        invariant(whole.error == pieces.error, "whole: \(String(describing: whole.error)), pieces: \(String(describing: pieces.error))")
        invariant(whole.finished == pieces.finished, "finished differs when fed in pieces")
        invariant(whole.consumed <= body.count, "consumed more than the input")

        if chunked {
            invariant(whole.payload.count <= limits.maxBodySize, "chunked payload \(whole.payload.count) > max-body-size")
            if whole.finished {
                var encoded = Array(String(whole.payload.count, radix: 16).utf8) + [0x0D, 0x0A]
                encoded += whole.payload
                encoded += whole.payload.isEmpty ? [] : Array("\r\n0\r\n".utf8)
                encoded += [0x0D, 0x0A]
                let again = encoded.withUnsafeBytes { decodeBody(decoder(), $0, pieces: [$0.count]) }
                invariant(again.finished && again.error == nil, "re-encoded chunked body did not decode")
                invariant(again.payload == whole.payload, "re-encoded chunked body decoded differently")
                invariant(again.consumed == encoded.count, "re-encoded chunked body not consumed whole")
            }
        } else {
            invariant(whole.error == nil, "a Content-Length body cannot fail")
            invariant(whole.payload.count == min(contentLength, body.count), "Content-Length payload has the wrong size")
            invariant(whole.finished == (body.count >= contentLength), "Content-Length body finished at the wrong point")
            invariant(whole.payload[...] == body.prefix(contentLength), "Content-Length payload is not the body")
        }
    }

    struct BodyOutcome {
        var payload: [UInt8] = []
        var consumed = 0
        var finished = false
        var error: HTTPParseError? = nil
    }

    /// Feeds `body` cut at `pieces` (cumulative ends), each piece together with what the decoder left of
    /// the previous ones, as a connection does; stops at the end of the body or the first error.
    static func decodeBody(
        _ start: HTTPBodyDecoder, _ body: UnsafeRawBufferPointer, pieces: [Int]
    ) -> BodyOutcome {
        var decoder = start
        var outcome = BodyOutcome()
        var available = 0
        for end in pieces + [body.count] {
            available = max(available, end)
            while outcome.consumed < available && !decoder.isFinished {
                let input = UnsafeRawBufferPointer(rebasing: body[outcome.consumed..<available])
                let step: (consumed: Int, payload: Range<Int>?)
                do throws(HTTPParseError) {
                    step = try decoder.decode(input.bytes)
                } catch {
                    outcome.error = error
                    return outcome
                }
                invariant(step.consumed <= input.count, "consumed more than given")
                if let payload = step.payload {
                    invariant(payload.lowerBound >= 0 && payload.upperBound <= step.consumed, "payload outside the consumed part")
                    outcome.payload += input[payload]
                }
                outcome.consumed += step.consumed
                invariant(decoder.payloadBytes == outcome.payload.count, "payloadBytes disagrees with the payload")
                if step.consumed == 0 { break }
            }
            if decoder.isFinished { break }
        }
        outcome.finished = decoder.isFinished
        if outcome.finished {
            // Bytes after the end belong to the next message.
            let rest = UnsafeRawBufferPointer(rebasing: body[outcome.consumed...])
            switch Result(catching: { () throws(HTTPParseError) in try decoder.decode(rest.bytes) }) {
            case .success(let step):
                invariant(step.consumed == 0 && step.payload == nil, "a finished decoder consumed more bytes")
            case .failure(let error):
                fatalError("fuzz invariant: a finished decoder threw \(error)")
            }
        }
        return outcome
    }
}
