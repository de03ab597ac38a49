import BlastBeatCore
import BlastBeatSystem

/// One connection to the admin listener: reads one request head, answers it, closes.
///
/// Routes: `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` (200 `ok` while serving, 503
/// while shutting down); `HEAD` of either; 404 for other paths, 405 for other methods, 400 for a
/// malformed request line, 431 for a head over `AdminServer.maxRequestBytes`. The query string is ignored.
/// The connection is closed when the response is written or after `AdminServer.timeout` seconds.
final class AdminConnection: IOWatcherDelegate, TimerWatcherDelegate {
    unowned(unsafe) let server: AdminServer
    let fd: Int32
    private var io: IOWatcher! = nil
    private var timer: TimerWatcher! = nil
    /// The request head so far (at most `AdminServer.maxRequestBytes`).
    private var input: [UInt8] = []
    /// Response bytes the socket did not take yet; empty until a write is partial.
    private var output: [UInt8] = []
    private var written = 0

    private enum Phase {
        /// Reading the request head (at most `AdminServer.maxRequestBytes`).
        case readingHead
        /// Several workers: waiting for the others' `/metrics` texts (Gateway+WorkerMetrics.swift).
        case collectingMetrics
        /// The response went to the socket; `output[written...]` is what it did not take yet.
        case writing
        case closed
    }
    private var phase = Phase.readingHead

    init(server: AdminServer, fd: Int32) {
        self.server = server
        self.fd = fd
        self.io = IOWatcher(loop: server.gateway.loop, fd: fd, delegate: self)
        self.timer = TimerWatcher(loop: server.gateway.loop, delegate: self)
    }

    func start() {
        io.watch(read: true, write: false)
        timer.start(after: AdminServer.timeout)
    }

    func timerFired(_ timer: TimerWatcher) {
        close()
    }

    func ioReady(readable: Bool, writable: Bool) {
        switch phase {
        case .readingHead: if readable { readRequest() }
        case .writing: if writable { writePending() }
        case .collectingMetrics, .closed: return
        }
    }

    private func readRequest() {
        let gateway = server.gateway
        while phase == .readingHead {
            let result: IOResult
            do { result = try gateway.readInput(fd) } catch { return close() }
            guard case .processed(let n) = result else { return }
            if n == 0 { return close() }
            let room = AdminServer.maxRequestBytes - input.count
            gateway.input.withBytes { input.appendBytes($0.extracting(first: min(n, room))) }
            if let end = Self.endOfHead(input) {
                return answer(head: input[..<end])
            }
            if input.count >= AdminServer.maxRequestBytes {
                return respond(status: 431, body: "request head too large\n")
            }
        }
    }

    /// Where the head ends (after the blank line), accepting bare LF line ends too.
    private static func endOfHead(_ bytes: [UInt8]) -> Int? {
        var i = 0
        while i + 1 < bytes.count {
            if bytes[i] == 0x0A {
                if bytes[i + 1] == 0x0A { return i + 2 }
                if bytes[i + 1] == 0x0D && i + 2 < bytes.count && bytes[i + 2] == 0x0A { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    private func answer(head: ArraySlice<UInt8>) {
        let line = head.prefix { $0 != 0x0D && $0 != 0x0A }
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[1].first == UInt8(ascii: "/"),
            parts[2].starts(with: "HTTP/1.".utf8)
        else {
            return respond(status: 400, body: "expected a request line like GET /metrics HTTP/1.1\n")
        }
        let method = parts[0]
        let path = parts[1].prefix { $0 != UInt8(ascii: "?") }
        let isHead = method.elementsEqual("HEAD".utf8)
        guard isHead || method.elementsEqual("GET".utf8) else {
            return respond(status: 405, body: "only GET and HEAD\n", extraHeaders: "Allow: GET, HEAD\r\n")
        }
        let gateway = server.gateway
        if path.elementsEqual("/metrics".utf8) {
            if gateway.worker != nil {
                // Several workers: the others' counts are asked for and merged (Gateway+WorkerMetrics.swift).
                phase = .collectingMetrics
                io.stop()  // nothing more to read; `respondMetrics` writes
                return gateway.collectMetrics(for: self, omitBody: isHead)
            }
            gateway.renderMetrics()
            let text = gateway.metrics.text.bytes
            return respond(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: text, omitBody: isHead)
        }
        if path.elementsEqual("/healthz".utf8) {
            if gateway.isShuttingDown {
                return respond(status: 503, body: "shutting down\n", omitBody: isHead)
            }
            return respond(status: 200, body: "ok\n", omitBody: isHead)
        }
        respond(status: 404, body: "not found: the admin listener serves /metrics and /healthz\n", omitBody: isHead)
    }

    /// The merged `/metrics` text of several workers (if the connection is still open).
    func respondMetrics(_ text: [UInt8], omitBody: Bool) {
        guard phase == .collectingMetrics else { return }
        respond(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: text, omitBody: omitBody)
    }

    private func respond(
        status: Int, contentType: String = "text/plain; charset=utf-8", body: String, extraHeaders: String = "",
        omitBody: Bool = false
    ) {
        respond(
            status: status, contentType: contentType, body: Array(body.utf8), extraHeaders: extraHeaders,
            omitBody: omitBody)
    }

    /// Writes head and body in one `sendmsg`, straight from `body` (the metrics text is not copied); only
    /// what the socket does not take is kept, and written as the socket allows.
    private func respond(
        status: Int, contentType: String, body: [UInt8], extraHeaders: String = "", omitBody: Bool = false
    ) {
        phase = .writing
        let head = Array(
            ("HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\nContent-Type: \(contentType)\r\n"
                + "Content-Length: \(body.count)\r\nConnection: close\r\nCache-Control: no-store\r\n"
                + extraHeaders + "\r\n").utf8)
        let result: IOResult? = try? Posix.write(fd, head.span.bytes, omitBody ? RawSpan() : body.span.bytes)
        guard let result else { return close() }
        var sent = 0
        if case .processed(let n) = result { sent = n }
        let total = head.count + (omitBody ? 0 : body.count)
        if sent == total { return close() }
        if sent < head.count {
            output = Array(head[sent...])
            if !omitBody { output += body }
        } else {
            output = Array(body[(sent - head.count)...])
        }
        written = 0
        io.watch(read: false, write: true)
    }

    private func writePending() {
        while written < output.count {
            let pending = output  // a local reference: a span of the stored array would last one access only
            let result: IOResult? = try? Posix.write(fd, pending.span.bytes.extracting(droppingFirst: written))
            guard let result else { return close() }
            guard case .processed(let n) = result else { return }
            written += n
        }
        close()
    }

    func close() {
        if phase == .closed { return }
        phase = .closed
        io.stop()
        timer.stop()
        Posix.close(fd)
        server.closed(self)
    }
}
