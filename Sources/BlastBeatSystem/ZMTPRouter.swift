import BlastBeatCore
import Glibc

/// The native engine of `BackendRouter` (`zmq-engine = native`, the default): ZMTP 3.1 with the NULL mechanism over TCP or a
/// Unix socket, on the gateway's own event loop.
///
/// libzmq's ROUTER moves every message between the caller's thread and its I/O thread through a
/// lock-free pipe and a mailbox; with two cores shared by clients, gateway and backends those
/// hand-offs were the largest cost per request left (README, "What limits it"). Here a message is
/// encoded straight into the peer's output queue, written with the other output of the loop
/// iteration, and read messages are handed over as views into the peer's input buffer.
///
/// ROUTER semantics as the gateway configured libzmq: sending to an unknown identity is refused
/// (ROUTER_MANDATORY), a new connection with a known identity takes it over (ROUTER_HANDOVER), a
/// peer past `maxQueuedBytes` of unsent output is "full" (the high-water mark).
final class ZMTPRouter: TimerWatcherDelegate {
    /// A listening socket of the router.
    fileprivate final class ListenSocket: IOWatcherDelegate {
        unowned(unsafe) let router: ZMTPRouter
        let fd: Int32
        var watcher: IOWatcher! = nil

        init(router: ZMTPRouter, fd: Int32) {
            self.router = router
            self.fd = fd
            watcher = IOWatcher(loop: router.loop, fd: fd, delegate: self)
            watcher.watch(read: true, write: false)
        }

        func ioReady(readable: Bool, writable: Bool) { router.accept(from: self) }
    }

    let loop: EventLoop
    unowned(unsafe) let delegate: any BackendRouterDelegate
    /// Messages other workers sent to a backend connected here that were dropped: past twice the connection's
    /// limit of queued bytes (`sendLocally`).
    private(set) var droppedForwardedSends = 0
    /// Largest message (all frames) a peer may send; a bigger one closes its connection.
    private(set) var maxMessageSize: Int
    /// The gateway's long-term key pair when backends must use CURVE; nil for NULL.
    let curveKeys: CurveCrypto.KeyPair?
    private var maxQueuedBytes: Int
    /// The `ipc://` socket file to remove at close; nil for TCP and once another process took the sockets.
    private var unixPath: String?
    // The router lives on one event loop thread, so the runtime's exclusivity checks on its stored
    // properties buy nothing; `@exclusivity(unchecked)` drops them (every send and flush mutates these
    // arrays). Package.swift says why this target does not use -enforce-exclusivity=unchecked instead.
    @exclusivity(unchecked) private var listenSockets: [ListenSocket] = []
    /// Every open connection, handshaking or ready.
    @exclusivity(unchecked) private var peers: [ZMTPPeer] = []
    /// Ready peers, searched by identity (a gateway has few backend processes).
    /// Peers past their handshake: identity → slot in `readySlots`, one lookup per send however many backends
    /// are connected (a freed slot is reused by the next peer).
    @exclusivity(unchecked) private var readyIndex = ByteKeyIndex(caseInsensitive: false)
    @exclusivity(unchecked) private var readySlots: [ZMTPPeer?] = []
    @exclusivity(unchecked) private var freeReadySlots: [Int] = []
    private var readyCount: Int { readyIndex.count }
    @exclusivity(unchecked) private var peersToFlush: [ZMTPPeer] = []
    @exclusivity(unchecked) private var flushBatch: [ZMTPPeer] = []
    @exclusivity(unchecked) private var handshakeTimer: TimerWatcher! = nil
    @exclusivity(unchecked) private var anonymousCount: UInt32 = 0
    /// Connections closed at once because `maxHandshaking` handshakes were under way.
    @exclusivity(unchecked) private var refusedAtCap = 0
    @exclusivity(unchecked) private var closed = false
    /// The other worker processes' backends (workers > 1; WorkerMesh.swift), nil with one worker.
    @exclusivity(unchecked) private(set) var mesh: WorkerMesh? = nil
    /// Several workers share the listening socket: none of them removes the `ipc://` file at exit (the others,
    /// or a restarted one, still listen on it).
    private var sharesSocketFile = false

    static let handshakeTimeout = 10.0
    /// Connections that finished their handshake (every one a configured node or instance).
    static let maxPeers = 4096
    /// Connections still in their handshake: a pool of its own, so connections that never finish one
    /// (each kept up to `handshakeTimeout`) cannot take the places of admitted backends.
    static let maxHandshaking = 1024
    /// A peer's output is written at once past this, instead of at the end of the loop iteration.
    private static let eagerFlushBytes = 256 * 1024

    /// The gateway's metadata (ZMTPCommand.routerMetadata) and NULL READY frame: they say how many workers serve.
    private(set) var readyMetadata = ZMTPCommand.routerMetadata(workers: 1)
    private(set) var readyFrame = ZMTPCommand.routerReadyFrame(workers: 1)

    /// The TCP port bound (the first listener's), for endpoints with port 0 in tests.
    private(set) var boundPort: UInt16 = 0

    init(
        loop: EventLoop, endpoint: ZMTPEndpoint, maxMessageSize: Int, maxQueuedBytes: Int, curveKeys: CurveCrypto.KeyPair?,
        inheritedSockets: [Int32]? = nil, delegate: any BackendRouterDelegate
    ) throws(SystemError) {
        // Bound before any property is set: a failure then throws without running `deinit`. Sockets inherited
        // from the privileged parent or a replaced process are used as they are.
        let fds: [Int32]
        if let inheritedSockets { fds = inheritedSockets } else { fds = try Self.listen(on: endpoint) }
        self.loop = loop
        self.delegate = delegate
        self.maxMessageSize = maxMessageSize
        self.maxQueuedBytes = maxQueuedBytes
        self.curveKeys = curveKeys
        if case .ipc(let path) = endpoint { unixPath = path } else { unixPath = nil }
        if case .tcp = endpoint, let first = fds.first { boundPort = Posix.localPort(first) }
        handshakeTimer = TimerWatcher(loop: loop, delegate: self)
        listenSockets = fds.map { ListenSocket(router: self, fd: $0) }
    }

    /// New bounds from a reload; peers' messages and queues are checked against them from now on.
    /// Joins the worker mesh: this is worker `index` of `count`, with a link to each other worker by index.
    func joinWorkers(index: Int, count: Int, links: [Int: Int32], delegate: any WorkerMeshDelegate) {
        sharesSocketFile = true
        mesh = WorkerMesh(router: self, index: index, count: count, links: links, delegate: delegate)
        readyMetadata = ZMTPCommand.routerMetadata(workers: count)
        readyFrame = ZMTPCommand.routerReadyFrame(workers: count)
    }

    /// A link to a restarted worker (from the parent).
    func attachWorkerLink(worker: Int, fd: Int32) {
        guard let mesh else { return Posix.close(fd) }
        mesh.attach(worker: worker, fd: fd)
    }

    var maxQueuedBytesPerPeer: Int { maxQueuedBytes }

    /// Stopping with nothing in flight: true once the other workers (if any) are too, and this one may exit.
    func finishedStopping() -> Bool {
        guard let mesh else { return true }
        mesh.announceDone()
        mesh.flush()
        return mesh.othersAreDone
    }

    func setLimits(maxMessageSize: Int, maxQueuedBytes: Int) {
        self.maxMessageSize = maxMessageSize
        self.maxQueuedBytes = maxQueuedBytes
    }

    /// The listening sockets for `endpoint`: one per resolved TCP address, or the Unix socket.
    static func listen(on endpoint: ZMTPEndpoint) throws(SystemError) -> [Int32] {
        switch endpoint {
        case .tcp(let address):
            var fds: [Int32] = []
            do throws(SystemError) {
                for resolved in try SocketAddress.resolve(address) {
                    fds.append(try Posix.listen(address: resolved, backlog: 1024))
                }
            } catch {
                fds.forEach(Posix.close)
                throw error
            }
            return fds
        case .ipc(let path):
            return [try Posix.listenUnix(path: path, backlog: 1024)]
        }
    }

    deinit {
        assert(closed, "ZMTPRouter leaked: close() was not called")
    }

    /// The listening sockets, to hand to a new binary (SIGUSR2).
    var listeningSockets: [Int32] { listenSockets.map(\.fd) }

    /// Stops accepting backend connections (the peers connected stay): a new process on the same sockets
    /// takes the backends that reconnect. The `ipc://` socket file is then the new process's.
    func stopListening() {
        for socket in listenSockets {
            socket.watcher.stop()
            Posix.close(socket.fd)
        }
        listenSockets.removeAll()
        unixPath = nil
    }

    /// Stops listening and drops every peer. Returns why the `ipc://` socket file could not be removed
    /// (typically: privileges were dropped and the directory is not writable); the next start replaces it.
    @discardableResult
    func close() -> SystemError? {
        if closed { return nil }
        closed = true
        let unixPath = sharesSocketFile ? nil : self.unixPath
        stopListening()
        mesh?.close()
        var unlinkError: SystemError? = nil
        if let unixPath, unlink(unixPath) != 0 { unlinkError = SystemError(call: "unlink \(unixPath)", errno: errno) }
        for peer in peers { peer.close() }
        peers.removeAll()
        readyIndex = ByteKeyIndex(caseInsensitive: false)
        readySlots.removeAll()
        freeReadySlots.removeAll()
        peersToFlush.removeAll()
        handshakeTimer.stop()
        return unlinkError
    }

    // MARK: connections

    fileprivate func accept(from socket: ListenSocket) {
        for _ in 0..<64 {
            let accepted: (fd: Int32, peer: SocketAddress)?
            do { accepted = try Posix.accept(socket.fd) } catch { return }  // EMFILE and the like: retried on the next wakeup
            guard let (fd, address) = accepted else { return }
            let text = unixPath == nil ? address.description : Posix.peerCredentials(fd)
            if peers.count - readyCount >= Self.maxHandshaking {
                Posix.close(fd)
                refusedAtCap += 1
                delegate.backendRouterDroppedPeer(
                    identity: RawSpan(),
                    reason: "refused a connection from \(text): \(Self.maxHandshaking) backend connections are in their handshake (\(refusedAtCap) refused so far)",
                    host: "handshake cap", protocolError: true)
                continue
            }
            if unixPath == nil { Posix.setNoDelay(fd) }
            peers.append(ZMTPPeer(router: self, fd: fd, address: text, loop: loop))
            scheduleFlush(peers[peers.count - 1])
            if handshakeTimer.firesAt == nil { handshakeTimer.start(after: 1, repeat: 1) }
        }
    }

    /// What became of a finished handshake's claim.
    enum Admission {
        case admitted
        /// The delegate refused it (and logged and counted that).
        case refused
        /// `maxPeers` admitted connections are open.
        case full
    }

    /// Puts a finished handshake's claim to the delegate.
    func admit(_ peer: ZMTPPeer, identity: [UInt8]) -> Admission {
        if readyCount >= Self.maxPeers && readyPeer(identity) == nil { return .full }
        if identity.isEmpty {
            // libzmq names anonymous peers the same way: a zero byte (never a valid identity) + a counter.
            anonymousCount &+= 1
            peer.identity = [0] + withUnsafeBytes(of: anonymousCount.bigEndian, Array.init)
        } else {
            peer.identity = identity
        }
        let holder = readyPeer(peer.identity).map { BackendIdentityHolder(key: $0.key, address: $0.address) }
        let refusal = peer.identity.withUnsafeBytes {
            delegate.backendRouterAdmit(identity: identity.isEmpty ? RawSpan() : $0.bytes,
                                     key: peer.key, address: peer.address, holder: holder)
        }
        if refusal == nil { return .admitted }
        peer.identity = []  // so dropping it says nothing about the identity's node
        return .refused
    }

    // MARK: connections labelled for a worker (WorkerLabel.swift)

    /// Where a connection that finished its handshake here goes, by its `X-BlastBeat-Worker` label (a label
    /// naming no worker is reported, and the connection stays); an unlabelled one goes to its identity's home
    /// worker (`WorkerLabel.home`), or stays while that worker is not running (it is being started again).
    func placement(of ready: ZMTPCommand.Ready, from address: String) -> WorkerLabel.Placement {
        let count = mesh?.count ?? 1
        let index = mesh?.index ?? 0
        var home = index
        if let mesh, case .absent = ready.workerLabel {
            let wanted = ready.identity.withUnsafeBytes { WorkerLabel.home(of: $0, workers: count) }
            if mesh.hasLink(to: wanted) { home = wanted }
        }
        let placement = ready.workerLabel.placement(at: index, of: count, home: home)
        if placement == .stayMislabelled {
            ready.identity.withUnsafeBytes {
                delegate.backendRouter(
                    placement: .mislabelled(label: ready.workerLabel, address: address, workers: count), identity: $0.bytes)
            }
        }
        return placement
    }

    /// Sends `peer` (its handshake done, not admitted here) to `worker` with `state`. True when it went: the
    /// peer is forgotten here and its socket is the mesh link's. False when it could not (the worker is down,
    /// the link full): the peer is closed, and its libzmq connects again.
    func handOver(_ peer: ZMTPPeer, to worker: Int, state: BackendHandover) -> Bool {
        var refusal = "there are no other workers"
        if state.unsentOutput.count > BackendHandover.maxUnsentOutput || state.pendingInput.count > BackendHandover.maxPendingInput {
            refusal = "\(state.unsentOutput.count) bytes unsent and \(state.pendingInput.count) read ahead, more than a handover carries"
        } else if let mesh {
            let failed = peer.identity.withUnsafeBytes { mesh.handOver(socket: peer.fd, identity: $0, state: state, to: worker) }
            guard let failed else {
                forget(peer)
                peer.identity.withUnsafeBytes { delegate.backendRouter(placement: .handedOver(to: worker), identity: $0.bytes) }
                return true
            }
            refusal = failed
        }
        forget(peer)
        peer.close()
        peer.identity.withUnsafeBytes {
            delegate.backendRouter(
                placement: .handoverFailed(worker: worker, from: false, address: peer.address, reason: refusal), identity: $0.bytes)
        }
        return false
    }

    /// A connection worker `worker` handed here (its socket `fd`, now this worker's): admitted and read as one
    /// accepted here.
    func adopt(socket fd: Int32, identity: [UInt8], handover: BackendHandover, from worker: Int) {
        guard !closed, let peer = ZMTPPeer(router: self, fd: fd, loop: loop, adopting: handover) else {
            Posix.close(fd)
            let reason = closed ? "this worker is stopping" : "its security mechanism is not this worker's"
            return identity.withUnsafeBytes {
                delegate.backendRouter(
                    placement: .handoverFailed(
                        worker: worker, from: true, address: LogText.escaped(handover.address, limit: 255), reason: reason),
                    identity: $0.bytes)
            }
        }
        peers.append(peer)
        peer.adopt(identity: identity)
    }

    /// Called by a peer whose claim was admitted: it takes over the identity from an older connection.
    func peerIsReady(_ peer: ZMTPPeer) {
        var replaced: BackendIdentityHolder? = nil
        if let old = readyPeer(peer.identity) {
            replaced = BackendIdentityHolder(key: old.key, address: old.address)
            forget(old, announce: false)  // the new connection's `J` tells the other workers
            old.close()
        }
        let slot = freeReadySlots.popLast() ?? readySlots.count
        if slot == readySlots.count { readySlots.append(peer) } else { readySlots[slot] = peer }
        readyIndex.insert(peer.identity, value: slot)
        peer.identity.withUnsafeBytes {
            mesh?.announceJoined($0)
            delegate.backendRouterPeerJoined(identity: $0.bytes, address: peer.address, replaced: replaced)
        }
    }

    /// After a reload: every connected identity's claim is put to the delegate again, and the connections it
    /// no longer admits (a node no vhost lists, a CURVE key no longer listed for it) are closed, once they have
    /// no request in flight or when `evenBusy`. Returns how many refused ones were kept.
    func recheckConnectedPeers(evenBusy: Bool) -> Int {
        var kept = 0
        for case let peer? in readySlots {
            let (refusal, busy) = peer.identity.withUnsafeBytes {
                delegate.backendRouterRecheck(identity: $0.bytes, key: peer.key)
            }
            guard let refusal else { continue }
            if (busy || !peer.forwardedSessions.isEmpty) && !evenBusy {
                kept += 1
            } else {
                drop(peer, reason: "no longer admitted after a reload: \(refusal)", protocolError: false)
            }
        }
        return kept
    }

    /// Closes a peer's connection and tells the delegate why (not for a refused claim: the delegate
    /// refused it and has said so).
    func drop(_ peer: ZMTPPeer, reason: String, protocolError: Bool, refused: Bool = false) {
        if peer.state == .closed { return }
        forget(peer)
        peer.close()
        if refused { return }
        let reason = peer.identity.isEmpty ? "\(reason) (from \(peer.address))" : reason
        if peer.state == .closed, !peer.identity.isEmpty, readyPeer(peer.identity) == nil,
            let worker = peer.identity.withUnsafeBytes({ mesh?.holder(of: $0) })
        {
            // Another worker holds a connection with this identity (a restarted backend that reconnected
            // there): the node goes on through it; what was in flight here is answered as for a replaced one.
            peer.identity.withUnsafeBytes {
                delegate.backendRouterRemotePeerJoined(identity: $0.bytes, worker: worker, replacedAt: mesh?.index)
            }
            return
        }
        peer.identity.withUnsafeBytes {
            delegate.backendRouterDroppedPeer(identity: $0.bytes, reason: reason, host: peer.host, protocolError: protocolError)
        }
    }

    private func forget(_ peer: ZMTPPeer, announce: Bool = true) {
        if let i = peers.firstIndex(where: { $0 === peer }) { peers.remove(at: i) }
        // Its queue goes with it (closed, replaced or handed over): the workers told it was full must not wait
        // for an `E` that would never come.
        if peer.queueFullFor != 0 { tellQueueDrained(peer) }
        if let slot = readyIndex.value(for: peer.identity), readySlots[slot] === peer {
            readyIndex.remove(peer.identity)
            readySlots[slot] = nil
            freeReadySlots.append(slot)
            if announce { peer.identity.withUnsafeBytes { mesh?.announceLeft($0) } }
        }
    }

    /// Each identity with a ready connection here, and whether its credit was acknowledged (for a new worker link).
    func forEachReadyIdentity(_ body: (UnsafeRawBufferPointer, _ creditAcknowledged: Bool) -> Void) {
        for case let peer? in readySlots { peer.identity.withUnsafeBytes { body($0, peer.credit == .acknowledged) } }
    }

    // MARK: other workers' backends (WorkerMesh)

    /// Another worker now holds `identity` (`replacing`: the worker that held it before). A connection here
    /// keeps being used; otherwise the node is reachable through that worker.
    func remotePeerJoined(identity: UnsafeRawBufferPointer, worker: Int, replacing: Int?) {
        if readyPeer(identity) != nil { return }
        delegate.backendRouterRemotePeerJoined(identity: identity.bytes, worker: worker, replacedAt: replacing)
    }

    /// The worker holding `identity` lost it; the node is gone for this worker too unless a connection here
    /// holds it.
    func remotePeerLeft(identity: UnsafeRawBufferPointer, worker: Int, reason: String) {
        if readyPeer(identity) != nil { return }
        delegate.backendRouterDroppedPeer(identity: identity.bytes, reason: reason, host: "worker \(worker)", protocolError: false)
    }

    /// A message another worker sends to a backend connected here. `uncreditedRequest`: a `uwsgi` that worker
    /// sends without credit; on a connection whose credit this worker acknowledged the backend would wait for a
    /// grant that worker never sends, so it gets the largest grant right after (docs/PROTOCOL.md, "Credit").
    ///
    /// Bounded at twice a connection's own limit: the sending worker stops at this worker's `F` (below), and
    /// what it sent before the `F` reached it (its link queue, itself held to `max-node-queue` by its meter,
    /// and the socket's buffer) fits; only a worker that ignores `F` is cut off: its message is dropped, counted
    /// and reported to the delegate. A message for a connection gone from here is dropped too: the sending worker
    /// hears it left (`L`) and answers the sessions it sent there.
    func sendLocally(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer,
        body: UnsafeRawBufferPointer, uncreditedRequest: Bool, from worker: Int
    ) {
        guard let peer = readyPeer(identity) else { return }
        guard peer.output.count < 2 * maxQueuedBytes else {
            droppedForwardedSends += 1
            return delegate.backendRouter(droppedForwardedSendFrom: worker, identity: identity.bytes, queuedBytes: peer.output.count)
        }
        queue(on: peer, sid: sid, type: type, body: .copying(body))
        if let session = SessionID(sid) {
            if type.elementsEqual("uwsgi".utf8) {
                peer.forwardedSessions.requestSent(session)
            } else if type.elementsEqual("end".utf8) {
                peer.forwardedSessions.ended(session)
            }
        }
        // The sending worker counts its client data only until it is on the link: past `max-node-queue` here
        // (half the connection's limit) it is told to hold its clients back, as for a queue of its own.
        if peer.output.count >= maxQueuedBytes / 2, peer.queueFullFor & (1 << UInt64(worker)) == 0, let mesh {
            peer.queueFullFor |= 1 << UInt64(worker)
            mesh.tellQueue(.queueFull, identity: identity, to: worker)
        }
        guard uncreditedRequest, peer.credit == .acknowledged else { return }
        let creditType: StaticString = "credit"
        withUnsafeBytes(of: UInt32.max.bigEndian) { grant in
            queue(
                on: peer, sid: sid,
                type: UnsafeRawBufferPointer(start: creditType.utf8Start, count: creditType.utf8CodeUnitCount),
                body: .copying(grant))
        }
    }

    /// A peer whose queue other workers were told is full wrote output: below three quarters of `max-node-queue`
    /// they are told it drained.
    func peerQueueWritten(_ peer: ZMTPPeer) {
        if peer.output.count <= maxQueuedBytes / 8 * 3 { tellQueueDrained(peer) }
    }

    private func tellQueueDrained(_ peer: ZMTPPeer) {
        guard let mesh else { return }
        let workers = peer.queueFullFor
        peer.queueFullFor = 0
        peer.identity.withUnsafeBytes { identity in
            for worker in 0..<64 where workers & (1 << UInt64(worker)) != 0 {
                mesh.tellQueue(.queueDrained, identity: identity, to: worker)
            }
        }
    }

    /// Whether the worker holding `identity` said its queue for it is full with this worker's sends.
    func isQueueFullAtHolder(identity: UnsafeRawBufferPointer) -> Bool {
        mesh?.isQueueFull(remote: identity) ?? false
    }

    /// Acknowledges the credit announcement of the connection holding `identity` here (docs/PROTOCOL.md,
    /// "Credit"); `.unreachable` when no connection here holds it (only the holder acknowledges).
    func acknowledgeCredit(identity: UnsafeRawBufferPointer) -> BackendSendResult {
        guard let peer = readyPeer(identity) else { return .unreachable }
        if peer.output.count >= maxQueuedBytes { return .full }
        peer.credit = .acknowledged
        queue(on: peer, sid: Self.noSid, type: Self.creditTypeBytes, body: .copying(Self.noSid))
        return .sent
    }

    private static var noSid: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }
    private static var creditTypeBytes: UnsafeRawBufferPointer {
        let type: StaticString = "credit"
        return UnsafeRawBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount)
    }

    /// A `uwsgi` for `identity`; `credited`: whether the gateway treats the session as credited. Through another
    /// worker an uncredited one travels as `U` (WorkerMessage.Kind), so the holder can make it consistent with
    /// what its connection's backend expects.
    func sendRequest(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, body: consuming BackendBody, credited: Bool
    ) -> BackendSendResult {
        let type: StaticString = "uwsgi"
        let typeBytes = UnsafeRawBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount)
        if let peer = readyPeer(identity) {
            if peer.output.count >= maxQueuedBytes { return .full }
            queue(on: peer, sid: sid, type: typeBytes, body: body)
            return .sent
        }
        guard let mesh, let worker = mesh.holder(of: identity) else { return .unreachable }
        return mesh.send(
            to: worker, kind: credited ? .send : .sendUncreditedRequest, identity: identity, sid: sid, type: typeBytes,
            body: body)
    }

    /// A backend's message that its holder forwarded here: checked and delivered as one from a peer here.
    func deliverForwarded(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer,
        body: UnsafeRawBufferPointer, from worker: Int
    ) {
        guard let parsed = BackendMessageType(type) else {
            return delegate.backendRouter(receivedMalformed: .unknownType(Array(type)), identity: identity.bytes)
        }
        delegate.backendRouter(
            received: BackendMessage(identity: identity, sid: sid, type: parsed, body: body, origin: .worker(worker)))
    }

    func timerFired(_ timer: TimerWatcher) {
        let deadline = loop.now - Self.handshakeTimeout
        var handshaking = false
        for peer in peers where peer.state != .ready {
            if peer.acceptedAt <= deadline {
                drop(peer, reason: "no ZMTP handshake within \(Int(Self.handshakeTimeout)) s", protocolError: true)
            } else {
                handshaking = true
            }
        }
        if !handshaking { handshakeTimer.stop() }
    }

    private func readyPeer(_ identity: UnsafeRawBufferPointer) -> ZMTPPeer? {
        guard let slot = readyIndex.value(for: identity.bytes) else { return nil }
        return readySlots[slot]
    }

    private func readyPeer(_ identity: [UInt8]) -> ZMTPPeer? {
        identity.withUnsafeBytes { readyPeer($0) }
    }

    // MARK: sending

    /// Queues [sid, type, body] for the peer with `identity`; it is written before the loop blocks (or at
    /// once past `eagerFlushBytes`). Copied bytes go into the output queue (small ones in the same piece as
    /// the frame headers); a counted body is queued as it is, and freed once written. With CURVE every
    /// frame is sealed into the queue, so a counted body is freed at once.
    func send(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString, body: consuming BackendBody
    ) -> BackendSendResult {
        let typeBytes = UnsafeRawBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount)
        guard let peer = readyPeer(identity) else {
            guard let mesh, let worker = mesh.holder(of: identity) else { return .unreachable }
            return mesh.send(to: worker, identity: identity, sid: sid, type: typeBytes, body: body)
        }
        if peer.output.count >= maxQueuedBytes { return .full }
        queue(on: peer, sid: sid, type: typeBytes, body: body)
        return .sent
    }

    private func queue(
        on peer: ZMTPPeer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer, body: consuming BackendBody
    ) {
        switch consume body {
        case .copying(let bytes):
            if case .curve(let curve) = peer.security {
                queueSealed(on: peer, curve: curve, sid: sid, type: type, body: bytes)
            } else {
                let small = bytes.count <= 4096
                queueHeaders(on: peer, sid: sid, type: type, bodySize: bytes.count, reserving: small ? bytes.count : 0) {
                    room in
                    if small, let source = bytes.baseAddress { room.copyMemory(from: source, byteCount: bytes.count) }
                }
                if !small { peer.output.append(bytes) }
            }
        case .counted(let counted):
            if case .curve(let curve) = peer.security {
                queueSealed(on: peer, curve: curve, sid: sid, type: type, body: counted.bytes)
            } else {
                queueHeaders(on: peer, sid: sid, type: type, bodySize: counted.count, reserving: 0) { _ in }
                peer.output.append(counted)
            }
        }
        scheduleFlush(peer)
    }

    /// Writes the sid and type frames and the body frame's header, plus `extra` bytes that
    /// `fill` writes (the body itself when it is small), in one piece of the output queue.
    @inline(__always)
    private func queueHeaders(
        on peer: ZMTPPeer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer, bodySize: Int, reserving extra: Int,
        _ fill: (UnsafeMutableRawPointer) -> Void
    ) {
        let typeCount = type.count
        let size = 2 + sid.count + 2 + typeCount + ZMTPFrame.headerSize(for: bodySize) + extra
        let room = peer.output.reserve(size)
        var at = ZMTPFrame.encodeHeader(size: sid.count, more: true, command: false, into: room)
        if let source = sid.baseAddress { (room + at).copyMemory(from: source, byteCount: sid.count) }
        at += sid.count
        at += ZMTPFrame.encodeHeader(size: typeCount, more: true, command: false, into: room + at)
        if let source = type.baseAddress { (room + at).copyMemory(from: source, byteCount: typeCount) }
        at += typeCount
        at += ZMTPFrame.encodeHeader(size: bodySize, more: false, command: false, into: room + at)
        fill(room + at)
        peer.output.commit(size)
    }

    /// CURVE: [sid, type, body] as three MESSAGEs, sealed in place in the peer's output queue.
    private func queueSealed(
        on peer: ZMTPPeer, curve: ZMTPCurveServer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer
    ) {
        queueSealed(on: peer, curve: curve, flags: 0x01, sid)
        queueSealed(on: peer, curve: curve, flags: 0x01, type)
        queueSealed(on: peer, curve: curve, flags: 0x00, body)
    }

    /// One frame as a MESSAGE (`flags`: 0x01 more, 0x02 command). libzmq sends MESSAGEs as ordinary
    /// final frames (the MORE and command bits travel inside the box), and so does the gateway.
    func queueSealed(on peer: ZMTPPeer, curve: ZMTPCurveServer, flags: UInt8, _ frame: UnsafeRawBufferPointer) {
        let bodySize = ZMTPCurveServer.sealedSize(frame.count)
        let size = ZMTPFrame.headerSize(for: bodySize) + bodySize
        let room = peer.output.reserve(size)
        let at = ZMTPFrame.encodeHeader(size: bodySize, more: false, command: false, into: room)
        curve.sealMessage(flags: flags, count: frame.count, into: room + at) { plaintext in
            if let source = frame.baseAddress { plaintext.copyMemory(from: source, byteCount: frame.count) }
        }
        peer.output.commit(size)
    }

    func scheduleFlush(_ peer: ZMTPPeer) {
        if peer.waitingForWritable { return }  // its watcher writes when the socket has room
        if peer.output.count >= Self.eagerFlushBytes {
            peer.writeOutput()
            return
        }
        if peer.flushScheduled { return }
        peer.flushScheduled = true
        peersToFlush.append(peer)
    }

    /// Stops reading the connection holding `identity` (see `ZMTPPeer.pauseReading`), or, when another worker
    /// holds it, the link from that worker (WorkerMesh.pauseReading(remote:)); false when no one holds it.
    func pauseReading(identity: UnsafeRawBufferPointer) -> Bool {
        guard let peer = readyPeer(identity) else { return mesh?.pauseReading(remote: identity) ?? false }
        peer.pauseReading(.budget(worker: mesh?.index ?? 0))
        return true
    }

    /// Reads the connection holding `identity` again, delivering what it buffered meanwhile (unless a link to
    /// another worker holds it too), and ends a pause of the links for it.
    func resumeReading(identity: UnsafeRawBufferPointer) {
        readyPeer(identity)?.resumeReading(.budget(worker: mesh?.index ?? 0))
        mesh?.resumeReading(remote: identity)
    }

    /// Worker `worker` (its budget full) asks this one not to read the connection holding `identity` here.
    func holdLocalPeer(identity: UnsafeRawBufferPointer, for worker: Int) {
        readyPeer(identity)?.pauseReading(.budget(worker: worker))
    }

    /// Worker `worker` ends its hold of the connection holding `identity` here.
    func releaseLocalPeer(identity: UnsafeRawBufferPointer, for worker: Int) {
        readyPeer(identity)?.resumeReading(.budget(worker: worker))
    }

    /// Worker `worker` is gone: its holds end, and its sessions with it.
    func releaseLocalPeers(for worker: Int) {
        for case let peer? in readySlots {
            peer.forwardedSessions.workerGone(worker)
            peer.resumeReading(.budget(worker: worker))
        }
    }

    /// Whether the connection holding `identity` here is held for another worker (its budget, or a link).
    func isHeldForOtherWorkers(identity: UnsafeRawBufferPointer) -> Bool {
        guard let mesh, let peer = readyPeer(identity) else { return false }
        return peer.reading.isHeld(byOtherThan: mesh.index)
    }

    /// Whether output was queued since the last `flush()`.
    var needsFlush: Bool { !peersToFlush.isEmpty }

    /// Writes every peer's queued output: the gateway calls this before the loop blocks.
    func flush() {
        mesh?.flush()
        // Swap in the spare array so flushing allocates nothing (as the gateway's connection flush).
        swap(&peersToFlush, &flushBatch)
        for peer in flushBatch {
            peer.flushScheduled = false
            if !peer.waitingForWritable { peer.writeOutput() }
        }
        flushBatch.removeAll(keepingCapacity: true)
    }
}
