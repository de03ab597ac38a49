import BlastBeatCore
import BlastBeatSystem

/// One client TCP connection: its socket, buffers, request/response state and its session with a node.
///
/// Lifecycle (one request at a time; pipelined requests wait in `pending`):
///
///     idle ──bytes──▶ readingHead ──head──▶ request sent to node ─┬─▶ body streaming ─▶ body complete
///                                                                 └─▶ response: awaitingHead ─▶ body ─▶ complete
///     (request complete && response complete) ──keep-alive──▶ idle      ──otherwise──▶ closing ──flushed──▶ closed
///
/// Owned by the gateway's session table; every method runs on the loop thread.
final class Connection: IOWatcherDelegate, TimerWatcherDelegate {
    unowned(unsafe) let gateway: Gateway
    let fd: Int32
    let listener: Listener
    let sid: SessionID
    let remoteAddress: [UInt8]
    let remotePort: [UInt8]
    private(set) var io: IOWatcher! = nil
    private(set) var timer: TimerWatcher! = nil

    // MARK: input
    /// Unconsumed client bytes (a partial head, body bytes not yet forwarded, pipelined requests).
    /// Empty (and without storage) for an idle connection: reads go to the gateway's shared buffer first.
    var pending = ByteBuffer()
    var parser: HTTPRequestHeadParser
    var head = HTTPRequestHead()
    var request: RequestPhase = .idle
    var clientEOF = false
    /// Reading is paused because the node's ZeroMQ queue holds `max-node-queue` bytes of client data.
    var readPausedForNodeQueue = false

    // MARK: the current exchange
    /// The session this connection carries: its node, node slot and responses (see GatewaySession).
    private(set) var session: GatewaySession! = nil
    var requestStart: Double = 0
    var log = AccessLogRecord()
    /// Set between an accepted upgrade request and its 101.
    var pendingUpgrade: PendingUpgrade?
    /// Set once the connection speaks WebSocket.
    var webSocket: WebSocketSession?

    // MARK: output
    var output = ByteBuffer()
    var teardown: Teardown = .open
    var queuedForFlush = false
    /// TCP_NODELAY is set before the first write that is not also the last (see `prepareToWrite`).
    var noDelaySet = false
    /// TLS state when the connection came in on a TLS listener.
    let tls: TLSConnection?
    /// TLS only: plaintext waiting to be encrypted (all of it goes once the handshake is complete).
    var plainOutput = ByteBuffer()
    var tlsClosing = false
    var sawFirstByte = false
    /// TLS facts for the uwsgi environment, captured once the handshake completes.
    var tlsServerName: [UInt8] = []
    var tlsVersion: [UInt8] = []
    /// True while `process` runs, so nested state changes do not re-enter it.
    var processingInput = false

    // MARK: timeouts
    var deadline: Double = 0
    var deadlineReason: TimeoutReason = .idle

    enum RequestPhase {
        /// Waiting for the first byte of a request.
        case idle
        /// Some head bytes have arrived (header timeout running).
        case readingHead
        /// Forwarding the body.
        case body(HTTPBodyDecoder)
        /// Head (and body) forwarded; waiting for the response before reading the next request.
        case complete
    }

    /// How far the connection is on its way out; each step only moves forward.
    enum Teardown: Int, Comparable {
        case open
        /// Closes once queued output is written (a graceful close: FIN after the last byte).
        case afterFlush
        /// Half-closed: reads and discards the client's input until it closes too, briefly (see finishClosing).
        case lingering
        case closed

        static func < (a: Teardown, b: Teardown) -> Bool { a.rawValue < b.rawValue }
    }

    var closed: Bool { teardown == .closed }

    enum TimeoutReason {
        case idle, head, body, backend, write, linger, webSocketIdle, tlsHandshake
    }

    init(gateway: Gateway, fd: Int32, listener: Listener, sid: SessionID, peer: SocketAddress, tls: TLSConnection?) {
        self.gateway = gateway
        self.tls = tls
        self.fd = fd
        self.listener = listener
        self.sid = sid
        self.remoteAddress = peer.hostBytes
        self.remotePort = peer.portBytes
        self.parser = HTTPRequestHeadParser(limits: gateway.config.limits)
        self.io = IOWatcher(loop: gateway.loop, fd: fd, delegate: self)
        self.timer = TimerWatcher(loop: gateway.loop, delegate: self)
        self.session = GatewaySession(gateway: gateway, connection: self, sid: sid)
    }

    func start() {
        io.watch(read: true, write: false)
        if tls != nil {
            setDeadline(gateway.config.timeouts.tlsHandshake, .tlsHandshake)
        } else {
            setDeadline(gateway.config.timeouts.keepAlive, .idle)
        }
    }

    // MARK: readiness

    func ioReady(readable: Bool, writable: Bool) {
        if writable { flush() }
        if readable {
            switch teardown {
            case .open, .afterFlush: readAvailable()
            case .lingering: drainWhileLingering()
            case .closed: break
            }
        }
    }

    private func readAvailable() {
        // Bounded per wakeup so one fast client cannot starve the others.
        for _ in 0..<4 {
            if teardown >= .lingering || clientEOF { return }
            if pending.readableCount >= gateway.maxPendingInput {
                // Pipelined input is waiting for a response: stop reading (back-pressure).
                return updateInterest()
            }
            if forwardsClientData, session.nodeQueueIsFull {
                return waitForNodeQueue()
            }
            if let size = directBodyReadSize {
                if readBodyDirectly(size: size) { continue } else { return }
            }
            let buffer = gateway.readBuffer
            let result: IOResult
            do { result = try Posix.read(fd, into: buffer) } catch { return abort("read: \(error)") }
            guard case .processed(let n) = result else { return }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            if let tls {
                receivedCiphertext(bytes, tls: tls)
            } else if n == 0 {
                return endOfInput()
            } else {
                consumeInput(bytes)
            }
            if n < buffer.count { return }
        }
    }

    /// Feeds plaintext to the request machinery. In the common case (nothing pending) it is parsed
    /// in place; only an unconsumed tail is copied into `pending`.
    func consumeInput(_ bytes: UnsafeRawBufferPointer) {
        if !pending.isEmpty || processingInput {
            pending.append(bytes)
            return processPending()
        }
        processingInput = true
        let consumed = process(bytes)
        processingInput = false
        if consumed < bytes.count && teardown < .lingering {
            pending.append(UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
        }
        updateInterest()
    }

    /// Runs the request machinery over `pending`, dropping what it consumed.
    func processPending() {
        // A state change inside `process` (a response completing, an upgrade) lands here again;
        // the running `process` loop picks the remaining bytes up itself.
        if pending.isEmpty || closed || processingInput { return }
        processingInput = true
        let consumed = pending.withReadableBytes { process($0) }
        processingInput = false
        if closed { return }
        pending.consume(consumed, keepingCapacity: 0)  // all read: idle connections hold no buffer
        updateInterest()
    }

    /// Whether what the client sends now goes on to the node: a request body, or WebSocket messages.
    private var forwardsClientData: Bool {
        if webSocket != nil { return true }
        if case .body = request { return true }
        return false
    }

    /// Stops reading the client until the node's queue drains (the client's TCP window fills and
    /// it waits). The backend timeout bounds the wait for a request body; a WebSocket keeps its
    /// idle-ping deadline.
    private func waitForNodeQueue() {
        if !readPausedForNodeQueue {
            readPausedForNodeQueue = true
            gateway.counters.readPausesForNodeQueue += 1
            gateway.waitForNodeQueue(self)
            if webSocket == nil { setDeadline(gateway.config.timeouts.backend, .backend) }
        }
        updateInterest()
    }

    /// Called by the gateway once the node has caught up.
    func nodeQueueDrained() {
        readPausedForNodeQueue = false
        refreshDeadlineForState()
        updateInterest()
    }

    func endOfInput() {
        clientEOF = true
        if webSocket != nil {
            // No close frame can follow: the client is gone (RFC 6455 §7.1.5: 1006). Tell the node now.
            return closeAfterFlush()
        }
        switch request {
        case .idle where !isExchangeActive:
            // Nothing in progress: finish writing what is queued (if anything), then close.
            closeAfterFlush()
        case .readingHead, .body:
            // The client stopped in the middle of a request: nothing sensible can follow.
            close()
        default:
            // Half-close after a complete request: still deliver the response (the original lost it).
            io.watch(read: false, write: hasQueuedOutput)
        }
    }

    var isExchangeActive: Bool { session.isResponseActive }

    /// The node of the current or last request, and whether it knows the session (see HTTPSession).
    var node: Int? { session.node }
    var nodeKnowsSession: Bool { session.nodeKnowsSession }

    /// Watches for reading unless input is being held back, and for writing while output is queued.
    func updateInterest() {
        if closed { return }
        // Output queued in this iteration is written by the flush before the loop blocks; asking
        // libev for EV_WRITE now and dropping it again in that flush would cost an epoll_ctl per
        // request (measured with strace). Write interest is only for output the kernel refused.
        let wantWrite = hasQueuedOutput && !queuedForFlush
        // Stop reading while the client is not taking its responses (its pipelined requests or
        // WebSocket messages would only make the queue longer).
        let wantRead =
            !clientEOF && !readPausedForNodeQueue && pending.readableCount < gateway.maxPendingInput
            && queuedOutputBytes < outputLimit / 2
        io.watch(read: wantRead, write: wantWrite)
    }

    // MARK: output

    /// Queues bytes for the client; the gateway flushes once per loop iteration.
    func enqueue(_ bytes: UnsafeRawBufferPointer) {
        if bytes.isEmpty { return }
        if tls == nil && bytes.count >= Self.writeThroughSize && !closed {
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
    private func writeThrough(_ bytes: UnsafeRawBufferPointer) {
        prepareToWrite()
        let queued = output.readableCount
        let result: IOResult
        do {
            result = try output.withReadableBytes { queuedBytes throws(SystemError) in
                try Posix.write(fd, queuedBytes, bytes)
            }
        } catch {
            return abort("write: \(error)")
        }
        var written = 0
        if case .processed(let n) = result { written = n }
        if written < queued {
            output.consume(written, keepingCapacity: Self.keptOutputCapacity)
            output.append(bytes)
        } else {
            output.consume(queued, keepingCapacity: Self.keptOutputCapacity)
            output.append(UnsafeRawBufferPointer(rebasing: bytes[(written - queued)...]))
        }
        if hasQueuedOutput { scheduleFlush() }
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
        bytes.withUnsafeBytes { enqueue($0) }
    }

    func enqueue(_ text: StaticString) {
        enqueue(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    func scheduleFlush() {
        if !queuedForFlush {
            queuedForFlush = true
            gateway.connectionsToFlush.append(self)
        }
        if queuedOutputBytes > outputLimit {
            // The client reads slower than the backend writes and zmq has no per-sid flow control.
            gateway.logger.warning("client \(peerDescription) too slow: over \(outputLimit) bytes queued, closing")
            abort("output buffer limit")
        }
    }

    /// Most response bytes queued for this client: `max-output-buffer`, and for a WebSocket at
    /// least two of the largest messages.
    var outputLimit: Int {
        let limit = gateway.config.maxOutputBuffer
        return webSocket == nil ? limit : max(limit, 2 * gateway.config.webSocket.maxMessageSize + 1024)
    }

    func flush() {
        queuedForFlush = false
        if closed { return }
        if let tls { encryptOutput(tls) }
        if !output.isEmpty { prepareToWrite() }
        while !output.isEmpty {
            let result: IOResult
            do {
                result = try output.withReadableBytes { queuedBytes throws(SystemError) in
                    try Posix.write(fd, queuedBytes)
                }
            } catch {
                return abort("write: \(error)")
            }
            switch result {
            case .processed(let n):
                output.consume(n, keepingCapacity: Self.keptOutputCapacity)
            case .wouldBlock:
                if deadlineReason != .write && !isExchangeActive {
                    setDeadline(gateway.config.timeouts.body, .write)
                }
                updateInterest()
                return
            }
        }
        if !plainOutput.isEmpty {
            // Plaintext that can no longer be sent (after close_notify) is dropped; otherwise the
            // TLS handshake is still running and the bytes wait for it.
            if tlsClosing { plainOutput.clear(keepingCapacity: 0) } else { return updateInterest() }
        }
        if teardown != .open { return finishClosing() }
        if deadlineReason == .write { refreshDeadlineForState() }
        updateInterest()
    }

    /// Closes once queued output is written (a graceful close: FIN after the last byte).
    func closeAfterFlush() {
        if teardown == .open { teardown = .afterFlush }
        if let tls, !tlsClosing, tls.isHandshakeComplete {
            // close_notify goes out after the last response bytes.
            encryptOutput(tls)
            tlsClosing = true
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
        if clientEOF || clientIsDone { return close() }
        switch try? Posix.read(fd, into: gateway.readBuffer) {
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
        if let webSocket {
            // A WebSocket never finishes by itself: close it now, 1001 "going away" (RFC 6455 §7.4.1).
            return failWebSocket(.goingAway, session: webSocket)
        }
        if case .idle = request, !isExchangeActive {
            if hasQueuedOutput || tls != nil { closeAfterFlush() } else { close() }
        }
    }

    /// Discards input after the response; closes on EOF.
    private func drainWhileLingering() {
        for _ in 0..<16 {
            let result: IOResult
            do { result = try Posix.read(fd, into: gateway.readBuffer) } catch { return close() }
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
        io.stop()
        timer.stop()
        Posix.close(fd)
        session.clientGone()
        gateway.connectionClosed(self)
    }

    var peerDescription: String {
        String(decoding: remoteAddress, as: UTF8.self) + ":" + String(decoding: remotePort, as: UTF8.self)
    }

    // MARK: timeouts

    /// Sets the single deadline of the connection. The timer is re-armed only when the deadline
    /// moves earlier than the armed expiry; a later deadline is picked up lazily when it fires.
    func setDeadline(_ seconds: Double, _ reason: TimeoutReason) {
        deadline = gateway.loop.now + seconds
        deadlineReason = reason
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
        timedOut()
    }

    /// Picks the deadline that fits the current state.
    func refreshDeadlineForState() {
        let t = gateway.config.timeouts
        if webSocket != nil { return setDeadline(gateway.config.webSocket.idleTimeout / 2, .webSocketIdle) }
        if isExchangeActive { return setDeadline(t.backend, .backend) }
        switch request {
        case .body: setDeadline(t.body, .body)
        case .readingHead: setDeadline(t.header, .head)
        case .complete, .idle: setDeadline(t.keepAlive, .idle)
        }
    }
}
