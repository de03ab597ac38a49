import BlastBeatCore
import BlastBeatSystem

/// An HTTP/2 connection's one timer (the connection's, reason `.http2`): node queues, each stream's
/// deadlines (backend, request body, a response held by a shut window, WebSocket pings), the idle connection.
extension HTTP2Connection {
    /// Arms the connection's timer for the next check: 2 ms while a stream waits for its node's queue,
    /// a second while streams are open, the keep-alive timeout while there are none.
    func armTimer() {
        let seconds: Double
        if !waitingForNodeQueue.isEmpty {
            seconds = 0.002
        } else if !streams.isEmpty {
            seconds = 1
        } else {
            seconds = max(0.001, idleSince + gateway.config.timeouts.keepAlive - gateway.loop.now)
        }
        if let readsResumeAt {
            return connection.setDeadline(min(seconds, max(0.001, readsResumeAt - gateway.loop.now)), .http2)
        }
        connection.setDeadline(seconds, .http2)
    }

    /// A stream was refused by a per-vhost limit: no reading until the pause is over (`readsResumeAt`).
    /// Requests already read are still handled (and refused, if they are over the limit too).
    func pauseReadsAfterRefusal() {
        guard readsResumeAt == nil, gateway.config.refusalPause > 0, !gateway.isShuttingDown else { return }
        readsResumeAt = gateway.loop.now + gateway.nextRefusalPause()
        connection.updateInterest()
        armTimer()
    }

    /// The connection's timer fired: node queues, each stream's deadlines, and the idle connection.
    func timerFired() {
        let now = gateway.loop.now
        if let readsResumeAt, now >= readsResumeAt {
            self.readsResumeAt = nil
            connection.updateInterest()
        }
        if !waitingForNodeQueue.isEmpty { resumeDrainedStreams() }
        for stream in Array(streams.values) where !stream.closed {
            let session = stream.session!
            let limits = stream.limits
            if stream.webSocket != nil {
                stream.webSocketTick(now: now)
            } else if session.isResponseActive && now - stream.lastBackendActivity >= limits.backendTimeout {
                gateway.counters.timeouts += 1
                gateway.countRejection(stream, by: .backendTimeout)
                session.backendTimedOut()
            } else if stream.requestBodyOpen && stream.unconsumed == 0 && now - stream.lastClientData >= limits.bodyTimeout {
                gateway.counters.timeouts += 1
                gateway.countRejection(stream, by: .bodyTimeout)
                stream.abort("request body stalled")
            } else if !stream.body.isEmpty && now - stream.lastDrained >= limits.bodyTimeout {
                // The client holds the stream's window shut (or stopped reading): the bytes cannot leave.
                gateway.counters.timeouts += 1
                gateway.countRejection(stream, by: .bodyTimeout)
                stream.abort("response held by a zero window for \(limits.bodyTimeout)s")
            }
        }
        if streams.isEmpty && now - idleSince >= gateway.config.timeouts.keepAlive {
            goAway()
        }
        outputReady()
        if isDone { return closeWhenFlushed() }
        armTimer()
    }

    /// SIGTERM: GOAWAY, and WebSockets close with 1001 "going away" (RFC 6455 §7.4.1), as over HTTP/1.1.
    func shutdown() {
        goAway()
        for stream in streams.values {
            if let webSocket = stream.webSocket { stream.failWebSocket(.goingAway, session: webSocket) }
        }
    }

    /// Graceful end (shutdown, idle): GOAWAY NO_ERROR; open streams finish, the connection then closes.
    func goAway() {
        if phase >= .goingAway { return }
        advance(to: .goingAway)
        framer.goAway()
        outputReady()
    }
}
