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
    /// The client address as `client-rate` counts it.
    let clientPrefix: ClientPrefix
    /// The vhost this connection is counted under for `max-connections` (its current or last request's), -1
    /// before its first routed request.
    var countedVhost = -1
    private(set) var io: IOWatcher! = nil
    private(set) var timer: TimerWatcher! = nil

    // MARK: input
    /// Unconsumed client bytes (a partial head, body bytes not yet forwarded, pipelined requests).
    /// Empty (and without storage) for an idle connection: reads go to the gateway's shared buffer first.
    var pending = ByteBuffer()
    var parser: HTTPRequestHeadParser
    var head = HTTPRequestHead()
    var request: RequestPhase = .idle
    var input: ClientInput = .reading

    // MARK: the current exchange
    /// The session this connection carries: its node, node slot and responses (see GatewaySession).
    private(set) var session: GatewaySession! = nil
    /// The limits of the current (or last) request's vhost (the first vhost's until a request is routed);
    /// a plain copy, read on every write and deadline.
    var limits: VhostLimits
    var requestStart: Double = 0
    var log = AccessLogRecord()
    /// What this connection adds to its vhost's metrics (see Gateway+Metrics).
    var meter = ConnectionMeter()
    /// Set between an accepted upgrade request and its 101.
    var pendingUpgrade: PendingUpgrade?
    /// Set once the connection speaks WebSocket.
    var webSocket: WebSocketSession?
    /// Set once the connection speaks HTTP/2 (ALPN `h2`, or the preface on a plain listener).
    var http2: HTTP2Connection?

    // MARK: output
    var output = ByteBuffer()
    /// `queuedOutputBytes` as last counted in the gateway's memory budget (`settleBudget`).
    var budgetedOutputBytes = 0
    var teardown: Teardown = .open
    var queuedForFlush = false
    /// TCP_NODELAY is set before the first write that is not also the last (see `prepareToWrite`).
    var noDelaySet = false
    /// TLS state when the connection came in on a TLS listener.
    let tls: TLSConnection?
    /// TLS only: plaintext waiting to be encrypted (all of it goes once the handshake is complete).
    var plainOutput = ByteBuffer()
    /// Where the TLS session is (only read when `tls` is set).
    var tlsPhase: TLSPhase = .awaitingFirstByte
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

    /// Whether the client's bytes are read, beside `request` (which says what they are).
    enum ClientInput {
        case reading
        /// Paused: the node's ZeroMQ queue holds `max-node-queue` bytes of this client's data; the gateway
        /// calls `nodeQueueDrained` once it has caught up.
        case waitingForNodeQueue
        /// The client closed its side (end of stream, or a TLS close_notify): nothing more comes.
        case ended
    }

    /// A TLS connection's own lifecycle, beside the HTTP one: each step only moves forward.
    enum TLSPhase {
        /// Nothing read yet: the first byte tells a ClientHello from a plain HTTP request line.
        case awaitingFirstByte
        case handshaking
        /// Plaintext flows both ways.
        case established
        /// An alert, a close_notify or a plain-text 400 went out: nothing more is encrypted.
        case closing
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
        /// HTTP/2: the connection's streams and idle time are checked (HTTP2Connection.timerFired).
        case http2
        /// A refusal of the admission checks was answered on this keep-alive connection: its next request is
        /// read when this deadline passes (`refusal-pause`, Connection+TenantAdmission.swift).
        case refusalPause
    }

    init(gateway: Gateway, fd: Int32, listener: Listener, sid: SessionID, peer: SocketAddress, tls: TLSConnection?) {
        self.gateway = gateway
        self.tls = tls
        self.fd = fd
        self.listener = listener
        self.sid = sid
        self.remoteAddress = peer.hostBytes
        self.remotePort = peer.portBytes
        self.clientPrefix = peer.clientPrefix
        self.parser = HTTPRequestHeadParser(limits: gateway.requestLimits)
        self.limits = gateway.vhostLimits.first ?? VhostLimits()
        self.io = IOWatcher(loop: gateway.loop, fd: fd, delegate: self)
        self.timer = TimerWatcher(loop: gateway.loop, delegate: self)
        self.session = GatewaySession(gateway: gateway, transport: .http1(Unmanaged.passUnretained(self)), sid: sid)
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
            if teardown >= .lingering || input == .ended { return }
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
            let result: IOResult
            do { result = try gateway.readInput(fd) } catch { return abort("read: \(error)") }
            guard case .processed(let n) = result else { return }
            meter.bytesIn &+= n
            if let tls {
                receivedCiphertext(tls: tls)
            } else if n == 0 {
                return endOfInput()
            } else {
                gateway.input.withBytes { consumeInput($0) }
            }
            if n < Gateway.inputCapacity { return }
        }
    }

    /// Feeds plaintext to the request machinery. In the common case (nothing pending) it is parsed
    /// in place; only an unconsumed tail is copied into `pending`.
    func consumeInput(_ bytes: RawSpan) {
        if !pending.isEmpty || processingInput {
            pending.append(bytes)
            return processPending()
        }
        processingInput = true
        let consumed = process(bytes)
        processingInput = false
        if consumed < bytes.byteCount && teardown < .lingering {
            pending.append(bytes.extracting(droppingFirst: consumed))
        }
        updateInterest()
    }

    /// Runs the request machinery over `pending`, dropping what it consumed.
    func processPending() {
        // A state change inside `process` (a response completing, an upgrade) lands here again;
        // the running `process` loop picks the remaining bytes up itself.
        if pending.isEmpty || closed || processingInput { return }
        processingInput = true
        let consumed = pending.withReadableSpan { process($0) }
        processingInput = false
        if closed { return }
        pending.consume(consumed, keepingCapacity: 0)  // all read: idle connections hold no buffer
        updateInterest()
    }

    /// Whether what the client sends now goes on to the node: a request body, or WebSocket messages.
    private var forwardsClientData: Bool { webSocket != nil || isReadingRequestBody }

    /// Stops reading the client until the node's queue drains (the client's TCP window fills and
    /// it waits). The backend timeout bounds the wait for a request body; a WebSocket keeps its
    /// idle-ping deadline.
    private func waitForNodeQueue() {
        if input == .reading {
            input = .waitingForNodeQueue
            gateway.counters.readPausesForNodeQueue += 1
            gateway.waitForNodeQueue(self)
            if webSocket == nil { setDeadline(limits.backendTimeout, .backend) }
        }
        updateInterest()
    }

    /// Called by the gateway once the node has caught up.
    func nodeQueueDrained() {
        if input == .waitingForNodeQueue { input = .reading }
        refreshDeadlineForState()
        updateInterest()
    }

    func endOfInput() {
        input = .ended
        if http2 != nil { return closeAfterFlush() }
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

    var isExchangeActive: Bool { http2 == nil ? session.isResponseActive : http2!.hasStreams }


    /// Watches for reading unless input is being held back, and for writing while output is queued.
    func updateInterest() {
        if closed { return }
        // Output queued in this iteration is written by the flush before the loop blocks; asking
        // libev for EV_WRITE now and dropping it again in that flush would cost an epoll_ctl per
        // request (measured with strace). Write interest is only for output the kernel refused.
        let wantWrite = hasQueuedOutput && !queuedForFlush
        // Stop reading while the client is not taking its responses (its pipelined requests or
        // WebSocket messages would only make the queue longer), and during a pause after a refusal.
        let wantRead =
            input == .reading && pending.readableCount < gateway.maxPendingInput
            && queuedOutputBytes < outputLimit / 2 && deadlineReason != .refusalPause && http2?.readsResumeAt == nil
        io.watch(read: wantRead, write: wantWrite)
    }

}
