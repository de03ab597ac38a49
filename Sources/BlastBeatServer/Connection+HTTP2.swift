import BlastBeatCore
import BlastBeatSystem

/// Switching a connection to HTTP/2: after ALPN `h2`, or on the preface of a plain connection.
extension Connection {
    enum PrefaceCheck {
        case started, needMore, notHTTP2
    }

    /// Prior-knowledge h2c (RFC 9113 §3.3): the first bytes of a plain connection are the preface.
    func startHTTP2IfPreface(_ bytes: RawSpan) -> PrefaceCheck {
        guard gateway.config.http2 else { return .notHTTP2 }
        let preface = HTTP2Connection.preface
        let n = min(bytes.byteCount, preface.count)
        for i in 0..<n where bytes.unsafeLoad(fromByteOffset: i, as: UInt8.self) != preface[i] { return .notHTTP2 }
        if n < preface.count { return .needMore }
        return startHTTP2() ? .started : .notHTTP2
    }

    /// The connection speaks HTTP/2 from now on; the server's SETTINGS go out at once. Returns false
    /// (the connection is closed) when nghttp2 cannot start.
    @discardableResult
    func startHTTP2() -> Bool {
        do { http2 = try HTTP2Connection(connection: self) } catch {
            gateway.logger.error("HTTP/2 session for \(peerDescription) failed: \(error)")
            abort("HTTP/2 setup failed")
            return false
        }
        noDelaySet = true
        Posix.setNoDelay(fd)  // many small frames each way: Nagle would hold them back
        http2!.armTimer()
        scheduleFlush()
        return true
    }
}
