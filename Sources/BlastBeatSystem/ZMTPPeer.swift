import BlastBeatCore
import Glibc

/// One backend connection to the native ROUTER: the ZMTP 3.x greeting, the NULL or CURVE handshake,
/// then multipart messages read straight out of this peer's input buffer.
///
/// A message is handed to the router's delegate only once all its frames are in the buffer, as
/// views into it (valid for the call). Commands (PING, and any other) may arrive between the
/// frames of a message (libzmq sends heartbeats whenever they are due); they are answered and cut
/// out of the buffer. With CURVE every frame after the handshake is a MESSAGE, opened in place: the
/// frame's bytes then lie inside the MESSAGE's body, so the same views work. Anything that breaks the
/// protocol closes the connection: the peer's libzmq reconnects by itself, as it does when libzmq's
/// ROUTER refuses it.
final class ZMTPPeer: IOWatcherDelegate {
    /// `signature`: our first 10 greeting bytes are out, the rest waits for the peer's signature (as libzmq
    /// does: a peer then always speaks before it can see our mechanism, so a backend without CURVE keys is
    /// seen leaving instead of vanishing silently). `greeting`: ours is out whole, theirs not yet in.
    /// `handingOver`: the handshake is done and the connection's `X-BlastBeat-Worker` label names another
    /// worker (WorkerLabel.swift): once the handshake command is cut from the input, the router sends the socket
    /// and the state there (`ZMTPRouter.handOver`). `handedOver`: it went; the socket is the mesh link's to send
    /// (then closed here), and nothing of the connection is left in this worker.
    enum State: Equatable { case signature, greeting, handshake, handingOver(to: Int), handedOver(to: Int), ready, closed }

    /// How the connection is secured; CURVE carries its handshake and message keys.
    enum Security {
        case null
        case curve(ZMTPCurveServer)
    }

    private unowned(unsafe) let router: ZMTPRouter
    let fd: Int32
    /// "ADDRESS:PORT" of a TCP peer, or "a local process (pid N, uid N)" on a Unix socket, for logs.
    let address: String
    /// `address` without the port: what stays the same when the peer reconnects.
    var host: String {
        guard address.first != "a", let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon])
    }
    // One event loop thread owns the peer: `@exclusivity(unchecked)` drops the runtime's exclusivity checks
    // on the stored properties every message reads and writes (see ZMTPRouter and Package.swift).
    @exclusivity(unchecked) private var watcher: IOWatcher! = nil
    @exclusivity(unchecked) private(set) var state = State.signature
    let security: Security
    /// The routing identity from the peer's READY (or one made up, for a peer without one).
    @exclusivity(unchecked) var identity: [UInt8] = []
    let acceptedAt: Double
    @exclusivity(unchecked) var output = ZMTPOutputQueue()
    /// In the router's list of peers to flush before the loop blocks.
    @exclusivity(unchecked) var flushScheduled = false
    /// The socket took less than was queued: writing resumes when it is writable (trying earlier
    /// would only cost a `sendmsg` that fails with EAGAIN).
    @exclusivity(unchecked) private(set) var waitingForWritable = false
    /// Whether the peer's messages are read: the gateway stops reading a backend that sends uncredited bytes
    /// at the memory budget (`BackendRouter.pauseReading`), another worker asks for the same for its budget, and
    /// a mesh link whose unsent bytes reach its high-water mark stops the backends forwarding into it
    /// (WorkerMesh.swift). Output is written either way.
    @exclusivity(unchecked) private(set) var reading = ConnectionReadHolds()
    /// Whether the gateway acknowledged this connection's credit announcement (docs/PROTOCOL.md, "Credit"):
    /// from then on the backend waits for credit on every sid it receives on it. A new connection starts over.
    enum CreditAnnouncement { case notAcknowledged, acknowledged }
    @exclusivity(unchecked) var credit = CreditAnnouncement.notAcknowledged
    /// Workers told (`F`, one bit per index) that their sends filled this connection's queue, to be told
    /// when it drained (`E`; WorkerMesh.swift).
    @exclusivity(unchecked) var queueFullFor: UInt64 = 0
    /// Other workers' requests in flight on this connection (a reload keeps it for them).
    @exclusivity(unchecked) var forwardedSessions = ForwardedSessions()

    private static let initialCapacity = 64 * 1024
    /// A grown input buffer up to this size is kept while the peer goes on sending messages that need it
    /// (a backend answering 64 KiB bodies: each message is a little over 64 KiB). Giving it back after every
    /// message cost a `realloc` that copied the message, once per response: two thirds of the gateway's
    /// instructions per 64 KiB response (callgrind). Larger buffers are given back as soon as they are empty.
    private static let retainedCapacity = 256 * 1024
    /// Reads that found a kept grown buffer empty and did not need it before it is given back: a peer that
    /// stops sending large messages holds the memory for at most this many reads (pings come every
    /// `ping-freq`).
    private static let readsBeforeShrinking = 64
    @exclusivity(unchecked) private var readsWithoutNeedingGrownBuffer = 0
    /// Largest frame accepted before the handshake is done: a CURVE INITIATE with its metadata or a
    /// NULL READY is a few hundred bytes; an unauthenticated peer gets no more of our memory than this.
    static let maxHandshakeFrame = 4096
    @exclusivity(unchecked) private var input: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity = ZMTPPeer.initialCapacity
    /// Unconsumed bytes are `input[start..<end]`.
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    /// The message being assembled, relative to `start`: its complete frames end at `scanned`.
    @exclusivity(unchecked) private var scanned = 0
    @exclusivity(unchecked) private var frameCount = 0
    /// Offset (relative to `start`) and size of the first three frames' bodies: sid, type, body.
    @exclusivity(unchecked) private var frames = (sid: (0, 0), type: (0, 0), body: (0, 0))

    /// The key the peer proved in its CURVE handshake; nil with NULL.
    var key: CurveKey? {
        if case .curve(let curve) = security { return curve.clientKey }
        return nil
    }

    /// A connection just accepted: our greeting's signature is queued.
    convenience init(router: ZMTPRouter, fd: Int32, address: String, loop: EventLoop) {
        self.init(
            router: router, fd: fd, address: address, loop: loop,
            security: router.curveKeys.map { .curve(ZMTPCurveServer(server: $0)) } ?? .null, state: .signature)
        ZMTPGreeting.bytes(router.curveKeys == nil ? .null : .curve).withUnsafeBytes {
            output.append(UnsafeRawBufferPointer(rebasing: $0[0..<10]))
        }
    }

    /// A connection another worker handed over after its handshake (`handover`, with the socket `fd`), still to
    /// be admitted here (`adopt(identity:)`). Nil when its mechanism is not this gateway's, or its CURVE state is
    /// malformed; the caller then still owns `fd`.
    convenience init?(router: ZMTPRouter, fd: Int32, loop: EventLoop, adopting handover: BackendHandover) {
        let security: Security
        switch handover.security {
        case .null:
            guard router.curveKeys == nil else { return nil }
            security = .null
        case .curve(let session):
            guard let keys = router.curveKeys, let curve = ZMTPCurveServer(server: keys, adopting: session) else { return nil }
            security = .curve(curve)
        }
        let address = LogText.escaped(handover.address, limit: 255)
        self.init(router: router, fd: fd, address: address, loop: loop, security: security, state: .handshake)
        handover.unsentOutput.withUnsafeBytes { output.append($0) }
        handover.pendingInput.withUnsafeBytes { bytes in
            // At most `BackendHandover.maxPendingInput`, the initial capacity.
            if let source = bytes.baseAddress { input.copyMemory(from: source, byteCount: bytes.count) }
            end = bytes.count
        }
    }

    private init(router: ZMTPRouter, fd: Int32, address: String, loop: EventLoop, security: Security, state: State) {
        self.router = router
        self.fd = fd
        self.address = address
        self.acceptedAt = loop.now
        guard let input = malloc(Self.initialCapacity) else { fatalError("out of memory for a ZMTP peer") }
        self.input = input
        self.security = security
        self.state = state
        watcher = IOWatcher(loop: loop, fd: fd, delegate: self)
        watcher.watch(read: true, write: false)
    }

    deinit {
        free(input)
    }

    func ioReady(readable: Bool, writable: Bool) {
        if writable { writeOutput() }
        if readable && !isGone { readAvailable() }
    }

    /// Closed, or handed over to another worker: nothing is read or written here any more.
    private var isGone: Bool {
        switch state {
        case .closed, .handedOver: true
        case .signature, .greeting, .handshake, .handingOver, .ready: false
        }
    }

    /// Closes the socket and frees the queued output; the router has already forgotten the peer.
    func close() {
        if isGone { return }
        state = .closed
        watcher.stop()
        Posix.close(fd)
        output.removeAll()
    }

    // MARK: writing

    /// Writes queued output; watches for writability if the socket takes less than all of it.
    func writeOutput() {
        if isGone { return }
        let done: Bool
        do { done = try output.write(to: fd) } catch {
            router.drop(self, reason: "\(error)", protocolError: false)
            return
        }
        if done != !waitingForWritable {
            waitingForWritable = !done
            watcher.watch(read: reading.isReading, write: !done)
        }
        if queueFullFor != 0 { router.peerQueueWritten(self) }
    }

    // MARK: pausing

    /// Stops delivering messages after the one being delivered, for `hold`; what is buffered or arrives
    /// waits (the kernel's socket buffer, then TCP, hold the backend back).
    func pauseReading(_ hold: ConnectionReadHolds.Hold) {
        if isGone { return }
        if reading.hold(hold) == .stopReading { watcher.watch(read: false, write: waitingForWritable) }
    }

    /// Releases `hold`; the last one delivers the complete messages buffered during the pause, then reads
    /// again (unless a delivery paused it once more).
    func resumeReading(_ hold: ConnectionReadHolds.Hold) {
        if isGone { return }
        guard reading.release(hold) == .resumeReading else { return }
        watcher.watch(read: true, write: waitingForWritable)
        process()
    }

    // MARK: reading

    private func readAvailable() {
        for _ in 0..<16 {
            let room = UnsafeMutableRawBufferPointer(start: input + end, count: capacity - end)
            let result: IOResult
            do { result = try Posix.read(fd, into: room) } catch {
                return closedByPeer("\(error)")
            }
            guard case .processed(let n) = result else { return }
            if n == 0 { return closedByPeer("closed by the backend") }
            end += n
            process()
            if isGone || !reading.isReading || n < room.count { return }
        }
    }

    private func closedByPeer(_ reason: String) {
        if state == .greeting && router.curveKeys != nil {
            // libzmq hangs up as soon as it reads a mechanism other than its own: a ZMTP peer that leaves
            // during the greeting is, nearly always, a backend started without CURVE keys.
            return protocolError("\(reason) during the greeting: a backend without CURVE keys? (this gateway requires CURVE)")
        }
        router.drop(self, reason: reason, protocolError: false)
    }

    /// Consumes every complete greeting, command and message in the buffer, then makes room
    /// for the rest of the incomplete one.
    private func process() {
        while !isGone && reading.isReading {
            let available = end - start
            if state == .signature || state == .greeting {
                let prefix = UnsafeRawBufferPointer(start: input + start, count: min(available, 10))
                if !ZMTPGreeting.signatureLooksValid(prefix.bytes) {
                    return protocolError(ZMTPGreeting.Refusal.notZMTP.description)
                }
                if state == .signature {
                    guard available >= 10 else { return makeRoom(ZMTPGreeting.size) }
                    // Their signature is in: the rest of our greeting, and with NULL our READY at once
                    // (NULL has no handshake for either side to wait on).
                    let mechanism: ZMTPGreeting.Mechanism = router.curveKeys == nil ? .null : .curve
                    ZMTPGreeting.bytes(mechanism).withUnsafeBytes { output.append(UnsafeRawBufferPointer(rebasing: $0[10...])) }
                    if mechanism == .null { router.readyFrame.withUnsafeBytes { output.append($0) } }
                    router.scheduleFlush(self)
                    state = .greeting
                }
                guard available >= ZMTPGreeting.size else { return makeRoom(ZMTPGreeting.size) }
                let greeting = UnsafeRawBufferPointer(start: input + start, count: ZMTPGreeting.size)
                if let refusal = ZMTPGreeting.check(greeting.bytes, expecting: router.curveKeys == nil ? .null : .curve) {
                    return protocolError(refusal.description)
                }
                start += ZMTPGreeting.size
                state = .handshake
                continue
            }
            let frameStart = start + scanned
            let header: ZMTPFrame.Header
            switch ZMTPFrame.decodeHeader(UnsafeRawBufferPointer(start: input + frameStart, count: end - frameStart).bytes) {
            case .needMore:
                return makeRoom(scanned + ZMTPFrame.maxHeaderSize)
            case .invalid:
                return protocolError("invalid frame flags \(input.load(fromByteOffset: frameStart, as: UInt8.self))")
            case .header(let h):
                header = h
            }
            if state != .ready && header.bodySize > UInt64(Self.maxHandshakeFrame) {
                return protocolError("a \(header.bodySize)-byte frame before the handshake finished (at most \(Self.maxHandshakeFrame))")
            }
            guard header.bodySize <= UInt64(router.maxMessageSize),
                scanned + header.headerSize + Int(header.bodySize) <= router.maxMessageSize + 1024
            else {
                return protocolError("a message larger than \(router.maxMessageSize) bytes")
            }
            let bodyOffset = scanned + header.headerSize
            let frameEnd = bodyOffset + Int(header.bodySize)
            guard frameEnd <= available else { return makeRoom(frameEnd) }
            // What the frame carries: itself, or with CURVE the frame sealed in its MESSAGE.
            var payload = (bodyOffset, Int(header.bodySize))
            var isCommand = header.isCommand
            var hasMore = header.hasMore
            if case .curve(let curve) = security, state == .ready {
                let flags: UInt8
                do throws(ZMTPCurveServer.Refusal) {
                    flags = try curve.openMessage(input + start + bodyOffset, count: Int(header.bodySize))
                } catch {
                    return protocolError(error.description)
                }
                payload = (bodyOffset + ZMTPCurveServer.openedFrameOffset, Int(header.bodySize) - ZMTPCurveServer.messageOverhead)
                isCommand = flags & 0x02 != 0
                hasMore = flags & 0x01 != 0 && !isCommand
            }
            if isCommand {
                command(view(payload))
                if isGone { return }
                // Cut the command out; frames of a message it interrupted move up behind it.
                let size = frameEnd - scanned
                if scanned > 0 { memmove(input + start + size, input + start, scanned) }
                start += size
                if case .handingOver(let worker) = state { return handOver(to: worker) }
                continue
            }
            guard state == .ready else { return protocolError("a message before READY") }
            switch frameCount {
            case 0: frames.sid = payload
            case 1: frames.type = payload
            case 2: frames.body = payload
            default: break
            }
            frameCount += 1
            scanned = frameEnd
            if hasMore { continue }
            deliver()
            start += scanned
            scanned = 0
            frameCount = 0
        }
    }

    private func view(_ frame: (Int, Int)) -> UnsafeRawBufferPointer {
        // (offset relative to `start`, size)
        UnsafeRawBufferPointer(start: input + start + frame.0, count: frame.1)
    }

    private func deliver() {
        identity.withUnsafeBytes { identity in
            guard frameCount == 3 else {
                // As libzmq reports it: the identity frame the ROUTER prepends counts too.
                return router.delegate.backendRouter(receivedMalformed: .frameCount(frameCount + 1), identity: identity.bytes)
            }
            let typeFrame = view(frames.type)
            if let mesh = router.mesh,
                mesh.forwardReceived(
                    from: self, identity: identity, sid: view(frames.sid), type: typeFrame, body: view(frames.body))
            {
                return router.delegate.backendRouter(forwardedFrom: identity.bytes)
            }
            guard let type = BackendMessageType(typeFrame) else {
                return router.delegate.backendRouter(receivedMalformed: .unknownType(Array(typeFrame)), identity: identity.bytes)
            }
            router.delegate.backendRouter(
                received: BackendMessage(identity: identity, sid: view(frames.sid), type: type, body: view(frames.body)))
        }
    }

    private func command(_ body: UnsafeRawBufferPointer) {
        guard let command = ZMTPCommand.parse(body) else { return protocolError("a malformed command") }
        if command.name.elementsEqual("ERROR".utf8) {
            let reason = command.data.isEmpty ? "" : LogText.quoted(command.data.dropFirst().prefix(Int(command.data[0])))
            return router.drop(self, reason: "the peer sent ERROR \(reason)", protocolError: false)
        }
        if state == .handshake { return handshake(command, body: body) }
        if command.name.elementsEqual("PING".utf8) {
            guard let pong = ZMTPCommand.pongFrame(answering: command.data.bytes) else {
                return protocolError("a malformed PING")
            }
            pong.withUnsafeBytes { frame in
                let pongBody = UnsafeRawBufferPointer(rebasing: frame[2...])
                switch security {
                case .null: output.append(frame)
                case .curve(let curve): router.queueSealed(on: self, curve: curve, flags: 0x02, pongBody)
                }
            }
            router.scheduleFlush(self)
        }
        // PONG and commands of later ZMTP versions need no answer.
    }

    /// NULL: the peer's READY. CURVE: HELLO (answered with WELCOME), then INITIATE. Either way the
    /// identity claimed (and the key proved) is put to the router before the peer is ready.
    private func handshake(_ command: ZMTPCommand.Parsed, body: UnsafeRawBufferPointer) {
        let ready: ZMTPCommand.Ready
        switch security {
        case .null:
            guard command.name.elementsEqual("READY".utf8) else {
                return protocolError("\(LogText.quoted(command.name)) instead of READY")
            }
            guard let parsed = ZMTPCommand.parseReady(command.data.bytes) else { return protocolError("a malformed READY") }
            ready = parsed
        case .curve(let curve):
            do throws(ZMTPCurveServer.Refusal) {
                if curve.step == .expectingHello {
                    let welcome = try curve.hello(body)
                    queueCommand(welcome)
                    router.scheduleFlush(self)
                    return
                }
                ready = try curve.initiate(body).metadata
            } catch {
                return protocolError(error.description)
            }
        }
        guard ZMTPCommand.isRouterCompatible(ready.socketType) else {
            return protocolError("socket type \(LogText.quoted(ready.socketType)) (a ROUTER takes DEALER, REQ or ROUTER)")
        }
        // Placed before the identity is registered: the connections one backend process opens to every worker
        // share its identity, and each must be admitted at its own worker, never compete for it here.
        if case .handOver(let worker) = router.placement(of: ready, from: address), !ready.identity.isEmpty {
            // Only for the handover: an identity set here is otherwise an admitted one (see `handOver`).
            identity = ready.identity
            state = .handingOver(to: worker)
            return
        }
        finishHandshake(identity: ready.identity)
    }

    /// Continues a connection another worker handed over (built with `init(adopting:)`) that claims `identity`:
    /// admitted here as if its handshake had just finished here, then what it sent meanwhile is read.
    func adopt(identity: [UInt8]) {
        finishHandshake(identity: identity)
        guard state == .ready else { return }
        router.scheduleFlush(self)
        process()
    }

    /// The handshake is done: the claim is put to the router, then READY (CURVE) and the peer is ready, or
    /// refused with an ERROR.
    private func finishHandshake(identity: [UInt8]) {
        switch router.admit(self, identity: identity) {
        case .admitted:
            break
        case .refused:
            // "400", a ZAP status code: libzmq reports exactly that to the backend as an authentication
            // failure (a free-text reason it drops silently). The reason itself is in the gateway's log.
            queueCommand(Array(ZMTPCommand.errorFrame("400").dropFirst(2)))
            writeOutput()
            return router.drop(self, reason: "refused", protocolError: false, refused: true)
        case .full:
            queueCommand(Array(ZMTPCommand.errorFrame("500").dropFirst(2)))
            writeOutput()
            return protocolError("\(ZMTPRouter.maxPeers) backend connections are open: refused")
        }
        if case .curve(let curve) = security { queueCommand(curve.readyCommand(metadata: router.readyMetadata)) }
        state = .ready
        router.peerIsReady(self)
    }

    /// Sends the connection to `worker` (`handingOver`): our handshake bytes are written from here while the
    /// socket takes them (the rest goes along), then the socket, the ZMTP state and the bytes read after the
    /// handshake command go over the mesh link.
    private func handOver(to worker: Int) {
        if !output.isEmpty {
            do { _ = try output.write(to: fd) } catch {
                identity = []  // never admitted here: its closing says nothing about the node
                return router.drop(self, reason: "\(error)", protocolError: false)
            }
        }
        let security: BackendHandover.Security
        switch self.security {
        case .null:
            security = .null
        case .curve(let curve):
            guard let session = curve.handoverSession() else { preconditionFailure("CURVE handover before INITIATE") }
            security = .curve(session)
        }
        let handover = BackendHandover(
            security: security, address: Array(address.utf8.prefix(255)), unsentOutput: output.copiedBytes(),
            pendingInput: Array(UnsafeRawBufferPointer(start: input + start, count: end - start)))
        guard router.handOver(self, to: worker, state: handover) else { return }
        watcher.stop()
        output.removeAll()
        state = .handedOver(to: worker)
    }

    /// Queues a handshake command (sent in the clear, as CURVE's handshake is).
    private func queueCommand(_ body: [UInt8]) {
        let room = output.reserve(ZMTPFrame.maxHeaderSize + body.count)
        let at = ZMTPFrame.encodeHeader(size: body.count, more: false, command: true, into: room)
        body.withUnsafeBytes { (room + at).copyMemory(from: $0.baseAddress!, byteCount: body.count) }
        output.commit(at + body.count)
    }


    private func protocolError(_ reason: String) {
        router.drop(self, reason: reason, protocolError: true)
    }

    /// Makes sure `input[start..<start + needed]` fits, moving the unconsumed bytes to the front
    /// or growing the buffer; gives back a grown buffer once it is empty.
    private func makeRoom(_ needed: Int) {
        let pending = end - start
        if pending == 0 {
            start = 0
            end = 0
            if capacity > Self.initialCapacity && needed <= Self.initialCapacity {
                readsWithoutNeedingGrownBuffer += 1
                if capacity > Self.retainedCapacity || readsWithoutNeedingGrownBuffer >= Self.readsBeforeShrinking {
                    free(input)
                    guard let small = malloc(Self.initialCapacity) else { fatalError("out of memory for a ZMTP peer") }
                    input = small
                    capacity = Self.initialCapacity
                }
            }
        }
        if needed > Self.initialCapacity { readsWithoutNeedingGrownBuffer = 0 }
        if capacity - start >= needed && end < capacity { return }
        if start > 0 {
            memmove(input, input + start, pending)
            start = 0
            end = pending
        }
        if capacity >= needed && end < capacity { return }
        var grown = capacity
        while grown < needed || grown <= end { grown *= 2 }
        guard let bigger = realloc(input, grown) else { fatalError("out of memory for a ZMTP message of \(needed) bytes") }
        input = bigger
        capacity = grown
    }
}
