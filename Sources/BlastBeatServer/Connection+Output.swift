import BlastBeatCore
import BlastBeatSystem

/// Writing to the client: queued output, flushing once per loop iteration, and the graceful close.
extension Connection {
    /// Queues bytes for the client; the gateway flushes once per loop iteration.
    func enqueue(_ bytes: RawSpan) {
        if bytes.isEmpty { return }
        if tls == nil && bytes.byteCount >= Self.writeThroughSize && !closed {
            return writeThrough(bytes)
        }
        // TLS output is encrypted in one batch per loop iteration (fewer, fuller records).
        if tls != nil { plainOutput.append(bytes) } else { output.append(bytes) }
        scheduleFlush()
    }

    /// Payloads at least this big are written at once instead of being copied into `output`.
    static var writeThroughSize: Int { 16 * 1024 }

    /// Writes what is queued and `bytes` in one `sendmsg`; only an unwritten rest is copied into
    /// `output`. For a 64 KiB response body that saves a 64 KiB copy and a large allocation.
    private func writeThrough(_ bytes: RawSpan) {
        prepareToWrite()
        let queued = output.readableCount
        let result: IOResult
        do {
            result = try output.withReadableSpan { queuedBytes throws(SystemError) in
                try Posix.write(fd, queuedBytes, bytes)
            }
        } catch {
            return abort("write: \(error)")
        }
        var written = 0
        if case .processed(let n) = result { written = n }
        meter.bytesOut &+= written
        if written < queued {
            output.consume(written, keepingCapacity: Self.keptOutputCapacity)
            output.append(bytes)
        } else {
            output.consume(queued, keepingCapacity: Self.keptOutputCapacity)
            output.append(bytes.extracting(droppingFirst: written - queued))
        }
        if hasQueuedOutput { scheduleFlush() } else { settleBudget() }
    }

    /// Brings the memory budget's client bytes up to date with this connection's queue (a subtraction and
    /// a compare on the hot path; the budget itself is only looked at when bytes arrive or before blocking).
    func settleBudget() {
        if closed { return }
        let queued = queuedOutputBytes
        if queued != budgetedOutputBytes {
            gateway.budget.clientBytesChanged(by: queued - budgetedOutputBytes)
            budgetedOutputBytes = queued
        }
    }

    /// Before the first write that is not also the last: TCP_NODELAY. Nagle would hold back the
    /// small tail of a response while earlier bytes are unacked, so every connection that writes
    /// more than once gets it (as nginx does for keep-alive). A response written in one go and
    /// followed by close needs none, which saves a system call per `Connection: close` request.
    private func prepareToWrite() {
        if noDelaySet || teardown != .open { return }
        noDelaySet = true
        Posix.setNoDelay(fd)
    }

    /// Bytes written by the gateway and not yet accepted by the kernel.
    var queuedOutputBytes: Int { output.readableCount + plainOutput.readableCount }
    var hasQueuedOutput: Bool { !output.isEmpty || !plainOutput.isEmpty }

    /// Output storage up to this size is kept for the next response; bigger buffers go once written,
    /// so idle connections stay small.
    static var keptOutputCapacity: Int { 16 * 1024 }

    func enqueue(_ bytes: [UInt8]) {
        enqueue(bytes.span.bytes)
    }

    func enqueue(_ text: StaticString) {
        text.withBytes { enqueue($0) }
    }

    func scheduleFlush() {
        if !queuedForFlush {
            queuedForFlush = true
            gateway.connectionsToFlush.append(self)
        }
        settleBudget()
        if queuedOutputBytes > outputLimit {
            // The client reads slower than the backend writes and zmq has no per-sid flow control.
            gateway.logger.warning("client \(peerDescription) too slow: over \(outputLimit) bytes queued, closing")
            gateway.countRejection(self, by: .maxOutputBuffer)
            abort("output buffer limit")
        }
    }

    /// Most response bytes queued for this client: `max-output-buffer`, and for a WebSocket at
    /// least two of the largest messages.
    var outputLimit: Int {
        let limits = self.limits
        return webSocket == nil ? limits.maxOutputBuffer : max(limits.maxOutputBuffer, 2 * limits.webSocketMaxMessage + 1024)
    }

    func flush() {
        defer {
            settleBudget()
            // What the client took leaves room in the session's share: a credited node may send more.
            if let session, session.credit.isCredited { session.grantCredit(afterMessage: false) }
        }
        // HTTP/2 frames join the output first (queuedForFlush still set: no second schedule).
        if let http2, !closed { http2.fillOutput() }
        queuedForFlush = false
        if closed { return }
        if let http2, http2.isDone, teardown == .open { return closeAfterFlush() }
        if let tls { encryptOutput(tls) }
        if !output.isEmpty { prepareToWrite() }
        while !output.isEmpty {
            let result: IOResult
            do {
                result = try output.withReadableSpan { queuedBytes throws(SystemError) in
                    try Posix.write(fd, queuedBytes)
                }
            } catch {
                return abort("write: \(error)")
            }
            switch result {
            case .processed(let n):
                meter.bytesOut &+= n
                output.consume(n, keepingCapacity: Self.keptOutputCapacity)
            case .wouldBlock:
                if deadlineReason != .write && !isExchangeActive {
                    setDeadline(limits.bodyTimeout, .write)
                }
                updateInterest()
                return
            }
        }
        if !plainOutput.isEmpty {
            // Plaintext that can no longer be sent (after close_notify) is dropped; otherwise the
            // TLS handshake is still running and the bytes wait for it.
            if tlsPhase == .closing { plainOutput.clear(keepingCapacity: 0) } else { return updateInterest() }
        }
        if teardown != .open { return finishClosing() }
        if deadlineReason == .write { refreshDeadlineForState() }
        // More HTTP/2 frames than one flush's budget: the rest goes in the next loop iteration.
        if let http2, http2.wantsWrite { scheduleFlush() }
        updateInterest()
    }

    /// Closes once queued output is written (a graceful close: FIN after the last byte).
    func closeAfterFlush() {
        if teardown == .open { teardown = .afterFlush }
        if let tls, tlsPhase == .established {
            // close_notify goes out after the last response bytes.
            encryptOutput(tls)
            tlsPhase = .closing
            tls.shutdown()
            output.appending { tls.takeCiphertext(into: &$0) }
        }
        if !hasQueuedOutput { finishClosing() } else { scheduleFlush() }
    }

    private func finishClosing() {
        // Closing with unread input makes the kernel send RST, which can destroy the response
        // still in flight to the client. So when the client has sent more (pipelined requests,
        // an unread body), half-close and read and discard until it closes too, bounded by a
        // short timeout ("lingering close", as nginx does). Otherwise close at once.
        if teardown >= .lingering { return }
        teardown = .lingering
        session.clientGone()
        if input == .ended || clientIsDone { return close() }
        switch try? Posix.discard(fd, maximum: Gateway.inputCapacity) {
        case .wouldBlock?, .processed(0)?, nil:
            return close()
        case .processed?:
            break
        }
        Posix.shutdownWrite(fd)
        io.watch(read: true, write: false)
        setDeadline(2, .linger)
    }

    /// The client asked to close (`Connection: close`, or HTTP/1.0 without keep-alive) and all of
    /// its request was read: it sends nothing more (RFC 9112 §9.6), so no lingering read is needed.
    private var clientIsDone: Bool {
        guard case .complete = request, pending.isEmpty, webSocket == nil else { return false }
        return !head.keepAlive
    }

    /// Graceful shutdown: idle connections close now, busy ones after their current response.
    func shutdownRequested() {
        session.stopKeepingAlive()
        if let http2 {
            // GOAWAY: the open streams finish, no new ones start (RFC 9113 §6.8); the flush that sends it
            // closes the connection once no stream is left.
            return http2.shutdown()
        }
        if let webSocket {
            // A WebSocket never finishes by itself: close it now, 1001 "going away" (RFC 6455 §7.4.1).
            return failWebSocket(.goingAway, session: webSocket)
        }
        if case .idle = request, !isExchangeActive {
            // A client that keeps its connection busy may have its next request on the way: closing now would
            // cut it off unanswered (in an upgrade, a failed request). It gets a moment to arrive and is answered
            // with Connection: close (no keep-alive while stopping); a connection that stays idle closes then.
            setDeadline(min(Self.idleGraceWhenStopping, gateway.config.timeouts.shutdown), .idle)
        }
    }

    /// A reload removed the listener that accepted this connection: HTTP/2 gets GOAWAY (its open streams
    /// finish), HTTP/1.1 closes after the exchange in flight, or now when idle; a WebSocket goes on.
    func listenerRemoved() {
        if let http2 { return http2.goAway() }
        if webSocket != nil { return }
        session.stopKeepingAlive()
        if case .idle = request, !isExchangeActive { closeAfterFlush() }
    }

    /// How long an idle keep-alive connection stays open once the gateway stops.
    static let idleGraceWhenStopping = 1.0

    /// Discards input after the response; closes on EOF.
    func drainWhileLingering() {
        for _ in 0..<16 {
            let result: IOResult
            do { result = try Posix.discard(fd, maximum: Gateway.inputCapacity) } catch { return close() }
            switch result {
            case .processed(0): return close()
            case .processed: continue
            case .wouldBlock: return
            }
        }
    }

    // MARK: close

    /// Closes at once: protocol error, I/O error, timeout with nothing left to say.
    func abort(_ reason: String) {
        gateway.logger.debug("closing \(peerDescription): \(reason)")
        close()
    }

    func close() {
        if closed { return }
        teardown = .closed
        gateway.budget.clientBytesChanged(by: -budgetedOutputBytes)
        budgetedOutputBytes = 0
        io.stop()
        timer.stop()
        Posix.close(fd)
        session.clientGone()
        http2?.connectionClosed()
        gateway.connectionClosed(self)
    }

    var peerDescription: String {
        String(decoding: remoteAddress, as: UTF8.self) + ":" + String(decoding: remotePort, as: UTF8.self)
    }
}
