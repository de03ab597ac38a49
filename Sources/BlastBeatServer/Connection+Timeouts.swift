import BlastBeatCore
import BlastBeatSystem

/// The connection's single deadline: one timer, re-armed lazily.
extension Connection {
    /// Sets the single deadline of the connection. The timer is re-armed only when the deadline
    /// moves earlier than the armed expiry; a later deadline is picked up lazily when it fires.
    func setDeadline(_ seconds: Double, _ reason: TimeoutReason) {
        deadline = gateway.loop.now + seconds
        deadlineReason = reason
        let timer = self.timer!  // one reference, not a retain per use
        if let firesAt = timer.firesAt, firesAt <= deadline { return }
        timer.start(after: seconds)
    }

    func timerFired(_ timer: TimerWatcher) {
        if closed { return }
        let now = gateway.loop.now
        if now < deadline {
            timer.start(after: deadline - now)
            return
        }
        // A tick of HTTP/2's checks, not a timeout: HTTP2Connection counts its own.
        if deadlineReason == .http2, let http2 { return http2.timerFired() }
        // The end of a pause, not a timeout.
        if deadlineReason == .refusalPause { return resumeAfterRefusal() }
        timedOut()
    }

    /// Picks the deadline that fits the current state.
    func refreshDeadlineForState() {
        let t = gateway.config.timeouts
        if let http2 { return http2.armTimer() }
        if webSocket != nil { return setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle) }
        if isExchangeActive { return setDeadline(limits.backendTimeout, .backend) }
        switch request {
        case .body: setDeadline(limits.bodyTimeout, .body)
        case .readingHead: setDeadline(t.header, .head)
        case .complete, .idle: setDeadline(t.keepAlive, .idle)
        }
    }

    /// The deadline passed: what that means depends on what the connection was waiting for.
    func timedOut() {
        gateway.counters.timeouts += 1
        gateway.countTimeout(self)
        switch deadlineReason {
        case .backend:
            if isExchangeActive { session.backendTimedOut() } else { abort("backend timeout") }
        case .head:
            sendErrorAndClose(status: 408, message: "request head not received in time")
        case .body:
            abort("request body stalled")
        case .webSocketIdle:
            if let webSocket { webSocketIdle(session: webSocket) } else { abort("idle timeout") }
        case .tlsHandshake:
            abort("TLS handshake not completed within \(gateway.config.timeouts.tlsHandshake)s")
        case .http2:
            abort("HTTP/2 timer without HTTP/2")  // timerFired hands .http2 to HTTP2Connection
        case .refusalPause:
            resumeAfterRefusal()  // timerFired takes it before counting a timeout; here for completeness
        case .idle where tls != nil && tlsPhase == .established && !isExchangeActive:
            closeAfterFlush()  // with close_notify, so TLS clients see a clean end
        case .idle, .write, .linger:
            abort("\(deadlineReason) timeout")
        }
    }
}
