import BlastBeatCore
import BlastBeatSystem

extension FuzzChecks {
    /// `HTTP2ServerSession` (nghttp2 through the System wrapper) fed the client preface then the input, as
    /// the gateway's HTTP/2 connections are; each request stream's fields go through
    /// `HTTP2RequestHeadBuilder` and the HTTP/1.1 head parser, and is answered (`HTTP2ResponseHead` from a
    /// fixed backend head, a body through the deferred data provider).
    /// - callbacks name only streams that were opened, and never after they closed;
    /// - the builder's list size is the RFC 9113 §6.5.2 sum of what it was given;
    /// - a built head ends with its blank line and, when it parses, has the stream's method (GET for a
    ///   WebSocket CONNECT) and a `host` exactly when `:authority` or `host` came;
    /// - sending never fails the session for the gateway's own calls, and the output stays bounded.
    @Sendable public static func http2Server(_ data: UnsafeRawBufferPointer) {
        let harness = HTTP2FuzzHarness()
        guard let session = try? HTTP2ServerSession(
            delegate: harness,
            settings: HTTP2Settings(maxConcurrentStreams: 8, initialWindowSize: 4096, connectionWindowSize: 65535, maxHeaderListSize: 8192))
        else { fatalError("fuzz invariant: nghttp2 session creation failed") }
        harness.session = session
        var output = 0
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        do throws(HTTP2SessionError) {
            let prefaceOutcome = preface.withUnsafeBytes { bytes in
                Result { () throws(HTTP2SessionError) in try session.receive(bytes.bytes) }
            }
            try prefaceOutcome.get()
            // Pieces of at most 97 bytes: frames split across reads, as from a socket.
            var offset = 0
            while offset < data.count {
                let end = min(data.count, offset + 97)
                try session.receive(UnsafeRawBufferPointer(rebasing: data[offset..<end]).bytes)
                harness.answerCompletedStreams()
                try session.send { frame in
                    output += frame.byteCount
                    return true
                }
                offset = end
            }
        } catch {
            // The client broke the protocol: nghttp2 said so; what it queued must still serialise.
            try? session.send { frame in
                output += frame.byteCount
                return true
            }
        }
        invariant(output <= 64 * 1024 + 64 * data.count, "HTTP/2 output \(output) bytes for \(data.count) input bytes")
    }
}

/// The delegate of `http2Server`: keeps each stream's builder and checks the callbacks' order.
final class HTTP2FuzzHarness: HTTP2SessionDelegate {
    var session: HTTP2ServerSession? = nil
    private var open: [Int32: HTTP2RequestHeadBuilder] = [:]
    private var expectedListSize: [Int32: Int] = [:]
    private var closed: Set<Int32> = []
    private var completed: [Int32] = []
    private var bodies: [Int32: Int] = [:]
    private var text: [UInt8] = []

    func http2StreamOpened(_ stream: Int32) {
        invariant(open[stream] == nil && !closed.contains(stream), "stream \(stream) opened twice")
        open[stream] = HTTP2RequestHeadBuilder()
        expectedListSize[stream] = 0
    }

    func http2Header(_ stream: Int32, name: RawSpan, value: RawSpan) -> HTTP2HeaderVerdict {
        invariant(open[stream] != nil, "header for unopened stream \(stream)")
        open[stream]!.add(name: name, value: value, maxListSize: 8192)
        expectedListSize[stream]! += name.byteCount + value.byteCount + 32
        invariant(open[stream]!.listSize == expectedListSize[stream]!, "list size of stream \(stream)")
        return open[stream]!.listSize > 4 * 8192 ? .failConnection : .accept
    }

    func http2RequestHead(_ stream: Int32, endStream: Bool) {
        guard let builder = open[stream] else { return invariant(false, "head for unopened stream \(stream)") }
        let key: [UInt8]? = builder.isWebSocketConnect ? Array("dGhlIHNhbXBsZSBub25jZQ==".utf8) : nil
        builder.build(into: &text, hasBody: !endStream, webSocketKey: key)
        invariant(text.count >= 4 && Array(text.suffix(4)) == Array("\r\n\r\n".utf8), "built head without its end")
        var parser = HTTPRequestHeadParser(limits: FuzzChecks.requestLimits)
        var head = HTTPRequestHead()
        let parsed = (try? parser.parse(text.span.bytes, into: &head)) == true
        if parsed && builder.listSize <= 8192 {
            let method = Array(text[head.method])
            invariant(method == (key != nil ? Array("GET".utf8) : builder.method), "method of stream \(stream)")
        }
        completed.append(stream)
    }

    func http2Data(_ stream: Int32, _ bytes: RawSpan) {
        invariant(open[stream] != nil || closed.contains(stream) == false, "data for a closed stream \(stream)")
        session?.consume(bytes.byteCount, stream: stream)
    }

    func http2RequestEnded(_ stream: Int32) {}

    func http2StreamClosed(_ stream: Int32, errorCode: UInt32) {
        open[stream] = nil
        bodies[stream] = nil
        closed.insert(stream)
    }

    func http2ResponseSent(_ stream: Int32) {}
    func http2Received(_ frame: HTTP2ControlFrame) {}

    func http2ResponseBody(_ stream: Int32, into buffer: inout MutableRawSpan) -> HTTP2BodyRead {
        let left = bodies[stream] ?? 0
        let n = min(left, buffer.byteCount)
        for i in 0..<n { buffer.storeBytes(of: 0x61 as UInt8, toByteOffset: i, as: UInt8.self) }
        bodies[stream] = left - n
        return .bytes(n, end: left - n == 0)
    }

    /// Answers every stream whose head is complete with a fixed backend head converted for HTTP/2 and 5000 bytes.
    func answerCompletedStreams() {
        guard let session else { return }
        for stream in completed where open[stream] != nil {
            var head = HTTP2ResponseHead()
            Array("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: keep-alive\r\nX-A: b\r\n\r\n".utf8).withUnsafeBytes {
                head.convert($0, status: 200)
            }
            invariant(head.fields.count == 3 && head.contentLength == 5000, "converted head \(head.fields.count)")
            bodies[stream] = 5000
            _ = session.submitResponse(stream: stream, head: head, hasBody: true)
        }
        completed.removeAll()
    }
}
