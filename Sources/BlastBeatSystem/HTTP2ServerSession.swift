package import BlastBeatCore
internal import CNGHTTP2

/// What an HTTP/2 connection tells its owner, one call per event nghttp2 reports while it reads the
/// client's bytes (`receive`) or writes the gateway's (`send`). Stream ids are the client's (odd, > 0).
package protocol HTTP2SessionDelegate: AnyObject {
    /// A HEADERS frame opened `stream`.
    func http2StreamOpened(_ stream: Int32)
    /// One request header field (pseudo-headers first). nghttp2 has checked it (RFC 9113 §8.2, §8.3).
    func http2Header(_ stream: Int32, name: RawSpan, value: RawSpan) -> HTTP2HeaderVerdict
    /// The request's header block is complete; `endStream`: no body follows.
    func http2RequestHead(_ stream: Int32, endStream: Bool)
    /// Request body bytes. The stream's flow-control window reopens only by `consume(_:stream:)`.
    func http2Data(_ stream: Int32, _ bytes: RawSpan)
    /// The request body ended (END_STREAM on DATA or on trailers, whose fields are dropped).
    func http2RequestEnded(_ stream: Int32)
    /// The stream is gone: answered and ended, reset by either side, or refused. `errorCode` is
    /// RFC 9113 §7's (0 = NO_ERROR).
    func http2StreamClosed(_ stream: Int32, errorCode: UInt32)
    /// The last frame of the response on `stream` (END_STREAM) went out.
    func http2ResponseSent(_ stream: Int32)
    /// A frame the client sent that costs the gateway work without asking for a response.
    func http2Received(_ frame: HTTP2ControlFrame)
    /// Response body bytes for `stream`, written into `buffer` from its start (nghttp2's DATA frame payload).
    func http2ResponseBody(_ stream: Int32, into buffer: inout MutableRawSpan) -> HTTP2BodyRead
}

package enum HTTP2HeaderVerdict {
    case accept
    /// Reset this stream (RST_STREAM INTERNAL_ERROR); the connection goes on.
    case resetStream
    /// The client is misbehaving: the connection ends (the caller has chosen the GOAWAY via `terminate`).
    case failConnection
}

package enum HTTP2ControlFrame {
    case rstStream, ping, settings, emptyData, goaway
}

package enum HTTP2BodyRead {
    /// `count` bytes were written; `end`: they are the last (END_STREAM).
    case bytes(Int, end: Bool)
    /// Nothing yet: the stream's DATA waits for `resumeData(stream:)`.
    case deferred
}

/// RFC 9113 §7 error codes the gateway sends.
package enum HTTP2ErrorCode: UInt32 {
    case noError = 0x0
    case protocolError = 0x1
    case internalError = 0x2
    case refusedStream = 0x7
    case cancel = 0x8
    case enhanceYourCalm = 0xb
}

/// Settings the gateway announces in its first SETTINGS frame.
package struct HTTP2Settings: Sendable {
    package var maxConcurrentStreams: Int
    /// Each stream's receive window (request body bytes in flight before the gateway says more).
    package var initialWindowSize: Int
    /// The connection's receive window, shared by all streams.
    package var connectionWindowSize: Int
    /// Advisory (RFC 9113 §6.5.2); the gateway counts the list size itself.
    package var maxHeaderListSize: Int
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): clients may open WebSockets with an extended CONNECT.
    package var enableConnectProtocol = false

    package init(maxConcurrentStreams: Int, initialWindowSize: Int, connectionWindowSize: Int, maxHeaderListSize: Int) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.initialWindowSize = initialWindowSize
        self.connectionWindowSize = connectionWindowSize
        self.maxHeaderListSize = maxHeaderListSize
    }
}

package struct HTTP2SessionError: Error, CustomStringConvertible {
    package let code: Int32
    package var description: String { String(cString: nghttp2_strerror(code)) }
    /// The client sent more of something than nghttp2 allows (CONTINUATION frames, SETTINGS entries,
    /// frames whose ACKs it does not read), rather than breaking the protocol.
    package var isFlood: Bool {
        code == NGHTTP2_ERR_FLOODED.rawValue || code == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue
            || code == NGHTTP2_ERR_TOO_MANY_SETTINGS.rawValue
    }
}

/// The server side of one HTTP/2 connection: nghttp2 does the framing, HPACK, stream states and flow
/// control over bytes the caller moves (`receive` the client's plaintext, `send` the frames to write), so
/// the socket and TLS stay with the connection, as for HTTP/1.1. No nghttp2 pointer leaves this file.
///
/// Response bodies use a data provider that asks the delegate for bytes and defers when it has none
/// (`resumeData` wakes it). Request windows are not reopened automatically
/// (`nghttp2_option_set_no_auto_window_update`): the owner calls `consume` as the node takes the bytes.
package final class HTTP2ServerSession {
    /// nghttp2_session*. Owned: deleted in deinit. Its user data is this object, unretained: the
    /// session never outlives it.
    private let session: OpaquePointer
    private unowned(unsafe) let delegate: any HTTP2SessionDelegate

    package init(delegate: any HTTP2SessionDelegate, settings: HTTP2Settings) throws(HTTP2SessionError) {
        self.delegate = delegate
        var callbacks: OpaquePointer? = nil
        var rc = nghttp2_session_callbacks_new(&callbacks)
        guard rc == 0, let callbacks else { throw HTTP2SessionError(code: rc) }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSent)

        var option: OpaquePointer? = nil
        rc = nghttp2_option_new(&option)
        guard rc == 0, let option else { throw HTTP2SessionError(code: rc) }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        // CONTINUATION flood (CVE-2024-27316 class): a header block may span at most 8 of them.
        nghttp2_option_set_max_continuations(option, 8)
        // SETTINGS with many entries, and ACKs the client does not read, are bounded too.
        nghttp2_option_set_max_settings(option, 32)
        nghttp2_option_set_max_outbound_ack(option, 1000)

        var created: OpaquePointer? = nil
        rc = nghttp2_session_server_new2(&created, callbacks, nil, option)
        guard rc == 0, let created else { throw HTTP2SessionError(code: rc) }
        self.session = created
        nghttp2_session_set_user_data(created, Unmanaged.passUnretained(self).toOpaque())

        var entries = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: UInt32(settings.maxConcurrentStreams)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(settings.initialWindowSize)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(settings.maxHeaderListSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        if settings.enableConnectProtocol {
            entries.append(
                nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL.rawValue), value: 1))
        }
        rc = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        if rc == 0 {
            rc = nghttp2_session_set_local_window_size(
                created, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(settings.connectionWindowSize))
        }
        if rc != 0 {
            nghttp2_session_del(created)
            throw HTTP2SessionError(code: rc)
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    // MARK: bytes in and out

    /// Feeds the client's bytes (the connection preface first). An error means the connection must end
    /// once what nghttp2 queued (a GOAWAY, mostly) is sent.
    package func receive(_ bytes: RawSpan) throws(HTTP2SessionError) {
        let n = bytes.withUnsafeBytes { bytes -> Int in
            guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
            return nghttp2_session_mem_recv(session, base, bytes.count)
        }
        if n < 0 { throw HTTP2SessionError(code: Int32(n)) }
    }

    /// Hands the frames nghttp2 has ready to `sink`, until there are none or `sink` returns false (the
    /// connection's output is full). Each slice is valid only during the call.
    package func send(_ sink: (RawSpan) -> Bool) throws(HTTP2SessionError) {
        while true {
            var data: UnsafePointer<UInt8>? = nil
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { throw HTTP2SessionError(code: Int32(n)) }
            guard n > 0, let data else { return }
            if !sink(UnsafeRawBufferPointer(start: data, count: n).bytes) { return }
        }
    }

    package var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    package var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    // MARK: responses

    /// Submits `head` on `stream`; with `hasBody` its DATA comes from `http2ResponseBody` afterwards.
    package func submitResponse(stream: Int32, head: HTTP2ResponseHead, hasBody: Bool) -> Bool {
        head.storage.withUnsafeBufferPointer { storage in
            let base = UnsafeMutablePointer(mutating: storage.baseAddress!)
            var nva = head.fields.map { field in
                nghttp2_nv(
                    name: base + field.name.lowerBound, value: base + field.value.lowerBound,
                    namelen: field.name.count, valuelen: field.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(fd: 0), read_callback: onReadBody)
            let rc = hasBody
                ? nghttp2_submit_response(session, stream, &nva, nva.count, &provider)
                : nghttp2_submit_response(session, stream, &nva, nva.count, nil)
            return rc == 0
        }
    }

    /// A deferred body has bytes (or its end) again.
    package func resumeData(stream: Int32) {
        _ = nghttp2_session_resume_data(session, stream)
    }

    package func reset(stream: Int32, _ code: HTTP2ErrorCode) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, code.rawValue)
    }

    /// `count` request body bytes of `stream` were passed on: the client may send that many more.
    package func consume(_ count: Int, stream: Int32) {
        if count > 0 { _ = nghttp2_session_consume(session, stream, count) }
    }

    /// Reopens the connection window for bytes of a stream that closed before they were consumed.
    package func consumeConnection(_ count: Int) {
        if count > 0 { _ = nghttp2_session_consume_connection(session, count) }
    }

    /// GOAWAY with `code` naming the last stream processed, then nothing more is read; the connection
    /// closes once it is sent (open streams are cut).
    package func terminate(_ code: HTTP2ErrorCode) {
        _ = nghttp2_session_terminate_session(session, code.rawValue)
    }

    /// Graceful GOAWAY (NO_ERROR): streams opened so far finish, no new ones are accepted.
    package func goAway() {
        _ = nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            HTTP2ErrorCode.noError.rawValue, nil, 0)
    }

    // MARK: from the callbacks

    fileprivate func beginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
            frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
        {
            delegate.http2StreamOpened(frame.pointee.hd.stream_id)
        }
        return 0
    }

    fileprivate func header(
        _ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer
    ) -> Int32 {
        // Trailer fields are not forwarded (a uwsgi request has no place for them).
        guard frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
        switch delegate.http2Header(frame.pointee.hd.stream_id, name: name.bytes, value: value.bytes) {
        case .accept: return 0
        case .resetStream: return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        case .failConnection: return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
        }
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch Int(hd.type) {
        case Int(NGHTTP2_HEADERS.rawValue):
            if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                delegate.http2RequestHead(hd.stream_id, endStream: endStream)
            } else if endStream {
                delegate.http2RequestEnded(hd.stream_id)
            }
        case Int(NGHTTP2_DATA.rawValue):
            if hd.length == 0 && !endStream { delegate.http2Received(.emptyData) }
            if endStream { delegate.http2RequestEnded(hd.stream_id) }
        case Int(NGHTTP2_RST_STREAM.rawValue):
            delegate.http2Received(.rstStream)
        case Int(NGHTTP2_PING.rawValue):
            if hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { delegate.http2Received(.ping) }
        case Int(NGHTTP2_SETTINGS.rawValue):
            if hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { delegate.http2Received(.settings) }
        case Int(NGHTTP2_GOAWAY.rawValue):
            delegate.http2Received(.goaway)
        default:
            break
        }
        return 0
    }

    fileprivate func frameSent(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        let type = Int(hd.type)
        if (type == Int(NGHTTP2_DATA.rawValue) || type == Int(NGHTTP2_HEADERS.rawValue)),
            hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        {
            delegate.http2ResponseSent(hd.stream_id)
        }
        return 0
    }

    fileprivate func dataChunk(stream: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
        delegate.http2Data(stream, bytes.bytes)
        return 0
    }

    fileprivate func streamClosed(stream: Int32, errorCode: UInt32) -> Int32 {
        delegate.http2StreamClosed(stream, errorCode: errorCode)
        return 0
    }

    fileprivate func readBody(
        stream: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        // The memory nghttp2 lends for one DATA frame, as a span for the delegate's copy.
        var room = buffer.mutableBytes
        switch delegate.http2ResponseBody(stream, into: &room) {
        case .deferred:
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        case .bytes(let n, let end):
            if end { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
            return n
        }
    }

    fileprivate static func owner(_ userData: UnsafeMutableRawPointer?) -> HTTP2ServerSession {
        Unmanaged<HTTP2ServerSession>.fromOpaque(userData!).takeUnretainedValue()
    }
}

// C callbacks: each finds its session through the user data and calls one method on it.

private func onBeginHeaders(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    HTTP2ServerSession.owner(userData).beginHeaders(frame!)
}

private func onHeader(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
    _ value: UnsafePointer<UInt8>?, _ valueLength: Int, _ flags: UInt8, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    HTTP2ServerSession.owner(userData).header(
        frame!, UnsafeRawBufferPointer(start: name, count: nameLength),
        UnsafeRawBufferPointer(start: value, count: valueLength))
}

private func onFrameReceived(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    HTTP2ServerSession.owner(userData).frameReceived(frame!)
}

private func onFrameSent(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    HTTP2ServerSession.owner(userData).frameSent(frame!)
}

private func onDataChunk(
    _ session: OpaquePointer?, _ flags: UInt8, _ stream: Int32, _ data: UnsafePointer<UInt8>?, _ length: Int,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    HTTP2ServerSession.owner(userData).dataChunk(stream: stream, UnsafeRawBufferPointer(start: data, count: length))
}

private func onStreamClose(
    _ session: OpaquePointer?, _ stream: Int32, _ errorCode: UInt32, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    HTTP2ServerSession.owner(userData).streamClosed(stream: stream, errorCode: errorCode)
}

private func onReadBody(
    _ session: OpaquePointer?, _ stream: Int32, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: Int,
    _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int {
    HTTP2ServerSession.owner(userData).readBody(
        stream: stream, UnsafeMutableRawBufferPointer(start: buffer, count: length), flags!)
}
