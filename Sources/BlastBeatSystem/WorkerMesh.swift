import BlastBeatCore
import Glibc

/// How a worker process reaches the backends connected to the other workers (README.md, "Worker processes").
///
/// Every worker inherits the native ROUTER's listening socket, so a backend connection lands in one of them,
/// its holder. Each pair of workers has a Unix socket pair (made by the parent, PrivilegedParent.swift), and
/// over it (`WorkerMessage` framing):
///
/// - a worker announces the identities it holds (`J`) and loses (`L`), to every other worker, and all of them
///   when a link to a (restarted) worker is set up;
/// - a send to an identity this worker does not hold goes to the holder (`S`), which queues it on the
///   backend's connection; this worker's own connection to an identity always wins;
/// - a message from a backend goes to the worker whose index is the first byte of its sid (every worker
///   stamps its index there, `SessionID`), and a message with an empty sid (a `pong`) to every worker (`R`):
///   each worker pings the nodes it uses and sees every answer;
/// - a backend connection whose `X-BlastBeat-Worker` label names another worker is handed to that worker
///   after its handshake (`H`): its socket rides on the link's bytes (SCM_RIGHTS) with its ZMTP state in the
///   message (`BackendHandover`), and that worker adopts it as its own connection. A backend that opens a
///   connection per worker so has each at the worker it serves, and its requests never cross the mesh.
///
/// A link that closes (the other worker died) counts as that worker losing all its identities: a node whose
/// only connection was there is dead for this worker too, one that also holds a connection here is not.
/// Backpressure crosses the mesh (README.md, "Memory budget"): a worker whose budget is full with what a
/// backend held by another worker sent asks that worker to stop reading the backend's connection for it (`P`,
/// a hold by its index: `ConnectionReadHolds`) and to read it again once its budget is below the low-water mark
/// (`C`). The holder's unsent bytes for a link are bounded too: at `MeshLinkFlow.highWater` (a worker that does
/// not keep up, or what was in flight before its `P` arrived) it stops reading every backend connection that
/// forwards a message into the link until the link drains to its low-water mark. A backend's message is never
/// dropped for a full link: the link's output is bounded by the high-water mark plus one message per backend
/// connection held. Sends to a backend (`S`) are bounded as a backend's connection is
/// (`maxQueuedBytes`: past it a send is `.full`), and a link's input by the largest message a backend may send
/// plus the fields.
/// What the mesh asks of the gateway besides backend messages: `/metrics` from several workers.
package protocol WorkerMeshDelegate: AnyObject {
    /// This worker's `/metrics` text, for another worker's scrape.
    func workerMeshMetricsText() -> [UInt8]
    /// Worker `worker`'s answer to query `query` (the text is valid for the call only).
    func workerMesh(metrics: RawSpan, from worker: Int, query: UInt64)
}

final class WorkerMesh {
    unowned(unsafe) let router: ZMTPRouter
    unowned(unsafe) let delegate: any WorkerMeshDelegate
    /// This worker's index, and how many there are.
    let index: Int
    let count: Int
    // Read for every message a backend sends and on every loop pass: no dynamic exclusivity checks (this
    // target is built without -enforce-exclusivity=unchecked; Package.swift), which cost ~500 instructions
    // per request with two workers (callgrind).
    @exclusivity(unchecked) private var links: [WorkerLink?]
    /// Identity → the other worker holding a connection with it.
    private var holders = ByteKeyIndex(caseInsensitive: false)
    /// Workers that said they are stopping with nothing in flight (`D`): none of them needs a backend
    /// connection held here any more.
    private var doneWorkers = Set<Int>()
    private var saidDone = false
    @exclusivity(unchecked) private var linksToFlush: [WorkerLink] = []
    @exclusivity(unchecked) private var flushBatch: [WorkerLink] = []
    /// Room for the identity, sid and type fields around a backend message's body.
    static let fieldOverhead = 1024
    /// Backend messages of sessions this worker sent over the mesh (`S` and `R` with a sid; pings and pongs
    /// not), for /metrics.
    private(set) var forwardedMessages = 0
    /// Sockets queued for handing over on one link and not yet sent; one more is refused (the connection closes).
    static let maxHandoversInFlight = 16

    init(router: ZMTPRouter, index: Int, count: Int, links: [Int: Int32], delegate: any WorkerMeshDelegate) {
        self.router = router
        self.delegate = delegate
        self.index = index
        self.count = count
        self.links = [WorkerLink?](repeating: nil, count: count)
        for (worker, fd) in links { attach(worker: worker, fd: fd) }
    }

    /// A (new) link to `worker`, which may have replaced a dead one: it is told every identity held here.
    func attach(worker: Int, fd: Int32) {
        guard worker >= 0, worker < count, worker != index else { return Posix.close(fd) }
        if links[worker] != nil { linkClosed(worker) }
        let link = WorkerLink(mesh: self, worker: worker, fd: fd, loop: router.loop)
        links[worker] = link
        router.forEachReadyIdentity { identity, creditAcknowledged in
            queue(on: link, kind: .joined, identity: identity, sid: Self.empty, type: Self.empty, body: Self.empty)
            // The backend announced credit on this connection before the worker (re)started: the worker learns
            // it as the others did, from the announcement (docs/PROTOCOL.md, "Credit").
            if creditAcknowledged {
                Self.announcementType.withUnsafeBytes { type in
                    Self.announcementBody.withUnsafeBytes { body in
                        queue(on: link, kind: .received, identity: identity, sid: Self.empty, type: type, body: body)
                    }
                }
            }
        }
    }

    private static let announcementType: [UInt8] = Array("pong".utf8)
    private static let announcementBody: [UInt8] = Array("credit".utf8)

    /// The worker holding `identity`, when it is not this one.
    func holder(of identity: UnsafeRawBufferPointer) -> Int? { holders.value(for: identity.bytes) }

    func close() {
        for case let link? in links { link.close() }
        links = [WorkerLink?](repeating: nil, count: count)
    }

    static var empty: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    // MARK: this worker's backend connections

    /// A connection with `identity` became ready here.
    func announceJoined(_ identity: UnsafeRawBufferPointer) { broadcast(.joined, identity: identity) }

    /// This worker's connection with `identity` closed.
    func announceLeft(_ identity: UnsafeRawBufferPointer) { broadcast(.left, identity: identity) }

    private func broadcast(_ kind: WorkerMessage.Kind, identity: UnsafeRawBufferPointer) {
        for case let link? in links {
            queue(on: link, kind: kind, identity: identity, sid: Self.empty, type: Self.empty, body: Self.empty)
        }
    }

    /// A message from `peer`, a backend connected here: true when it belongs to other workers only
    /// (forwarded, not to be delivered here). An empty sid goes to every other worker and is delivered here
    /// too. A link that reaches its high-water mark holds `peer` (MeshLinkFlow): the message is queued all the
    /// same, and the peer's next ones wait in its connection.
    func forwardReceived(
        from peer: ZMTPPeer, identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer,
        type: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer
    ) -> Bool {
        if sid.isEmpty {
            for case let link? in links {
                queue(on: link, kind: .received, identity: identity, sid: sid, type: type, body: body)
                holdIfCongested(peer, link: link)
            }
            return false
        }
        guard sid.count == 16, Int(sid[0]) != index, Int(sid[0]) < count else { return false }
        // The other worker is gone (restarting): its sessions went with it; the message is dropped.
        guard let link = links[Int(sid[0])] else { return true }
        if type.elementsEqual("end".utf8) || type.elementsEqual("retry".utf8), let session = SessionID(sid) {
            peer.forwardedSessions.ended(session)
        }
        queue(on: link, kind: .received, identity: identity, sid: sid, type: type, body: body)
        forwardedMessages += 1
        holdIfCongested(peer, link: link)
        return true
    }

    private func holdIfCongested(_ peer: ZMTPPeer, link: WorkerLink) {
        guard link.flow.queued(link.output.count) == .holdSender else { return }
        if !link.heldPeers.contains(where: { $0 === peer }) { link.heldPeers.append(peer) }
        peer.pauseReading(.link(worker: link.worker))
    }

    /// The link drained to its low-water mark (or closed): the backend connections it held are read again.
    fileprivate func releaseSenders(of link: WorkerLink) {
        let held = link.heldPeers
        link.heldPeers.removeAll()
        for peer in held { peer.resumeReading(.link(worker: link.worker)) }
    }

    // MARK: this worker's budget, for backends held by other workers

    /// This worker's budget is full with what the backend `identity`, held by another worker, sent: that worker
    /// is asked to stop reading its connection for this one (`P`); false when no other worker holds it.
    func pauseReading(remote identity: UnsafeRawBufferPointer) -> Bool {
        guard let worker = holder(of: identity), let link = links[worker] else { return false }
        if !remotePauses.contains(where: { $0.worker == worker && $0.identity.elementsEqual(identity) }) {
            guard remotePauses.count < Self.maxRemotePauses else { return false }
            remotePauses.append((Array(identity), worker))
        }
        queue(on: link, kind: .pauseReading, identity: identity, sid: Self.empty, type: Self.empty, body: Self.empty)
        return true
    }

    /// Ends this worker's pause of `identity` at the worker it asked (`C`; its holder may have changed since).
    func resumeReading(remote identity: UnsafeRawBufferPointer) {
        for pause in remotePauses where pause.identity.elementsEqual(identity) {
            guard let link = links[pause.worker] else { continue }
            queue(on: link, kind: .resumeReading, identity: identity, sid: Self.empty, type: Self.empty, body: Self.empty)
        }
        remotePauses.removeAll { $0.identity.elementsEqual(identity) }
    }

    /// `F`/`E` for the backend `identity` held here, to `worker` whose sends filled its queue.
    func tellQueue(_ kind: WorkerMessage.Kind, identity: UnsafeRawBufferPointer, to worker: Int) {
        guard worker < count, let link = links[worker] else { return }
        queue(on: link, kind: kind, identity: identity, sid: Self.empty, type: Self.empty, body: Self.empty)
    }

    /// Whether the holder of `identity` said its queue is full (`F`, not yet `E`): this worker's clients
    /// uploading to it wait, as for a queue of its own at `max-node-queue`.
    func isQueueFull(remote identity: UnsafeRawBufferPointer) -> Bool {
        !fullQueues.isEmpty && fullQueues.contains { $0.identity.elementsEqual(identity) }
    }

    /// Backends whose holders said their queue is full with this worker's sends: (identity, holder).
    private var fullQueues: [(identity: [UInt8], worker: Int)] = []

    /// Backends this worker asked other workers not to read: (identity, worker). A worker pauses at most one
    /// connection per backend it uses, so the configured nodes bound it; the limit is a guard.
    private var remotePauses: [(identity: [UInt8], worker: Int)] = []
    static let maxRemotePauses = 4096

    /// Sends [sid, type, body] to `identity` through the worker holding it (`kind`: `S`, or `U` for a `uwsgi`
    /// sent without credit: WorkerMessage.Kind).
    func send(
        to worker: Int, kind: WorkerMessage.Kind = .send, identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer,
        type: UnsafeRawBufferPointer, body: consuming BackendBody
    ) -> BackendSendResult {
        guard let link = links[worker] else { return .unreachable }
        if link.output.count >= router.maxQueuedBytesPerPeer { return .full }
        switch consume body {
        case .copying(let bytes):
            queue(on: link, kind: kind, identity: identity, sid: sid, type: type, body: bytes)
        case .counted(let counted):
            queueHeader(on: link, kind: kind, identity: identity, sid: sid, type: type, bodyCount: counted.count)
            link.output.append(counted)
            scheduleFlush(link)
        }
        if !sid.isEmpty { forwardedMessages += 1 }
        return .sent
    }

    /// Hands the backend connection `fd` (its handshake done, not admitted here) to `worker` with `state`. Nil
    /// when it is queued: the link then owns `fd` and closes it once sent. Otherwise why not (the caller keeps `fd`).
    /// Whether the link to `worker` is up (it runs; a restarting worker has none until the parent sends a new one).
    func hasLink(to worker: Int) -> Bool { worker >= 0 && worker < count && links[worker] != nil }

    func handOver(socket fd: Int32, identity: UnsafeRawBufferPointer, state: BackendHandover, to worker: Int) -> String? {
        guard let link = links[worker] else { return "worker \(worker) is not running" }
        if link.output.count >= router.maxQueuedBytesPerPeer || link.socketsToSend.count >= Self.maxHandoversInFlight {
            return "the link to worker \(worker) is full"
        }
        var body = state.encoded()
        body.withUnsafeBytes { queue(on: link, kind: .handover, identity: identity, sid: Self.empty, type: Self.empty, body: $0) }
        CurveCrypto.wipe(&body)  // a CURVE session's key
        link.socketsToSend.append(fd)
        return nil
    }

    private func queue(
        on link: WorkerLink, kind: WorkerMessage.Kind, identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer,
        type: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer
    ) {
        queueHeader(on: link, kind: kind, identity: identity, sid: sid, type: type, bodyCount: body.count)
        link.output.append(body)
        scheduleFlush(link)
    }

    private func queueHeader(
        on link: WorkerLink, kind: WorkerMessage.Kind, identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer,
        type: UnsafeRawBufferPointer, bodyCount: Int
    ) {
        let size = WorkerMessage.headerSize(identity: identity.count, sid: sid.count, type: type.count)
        WorkerMessage.encodeHeader(
            kind: kind, identity: identity, sid: sid, type: type, bodyCount: bodyCount, into: link.output.reserve(size))
        link.output.commit(size)
    }

    private func scheduleFlush(_ link: WorkerLink) {
        if link.flushScheduled || link.waitingForWritable { return }
        link.flushScheduled = true
        linksToFlush.append(link)
    }

    /// Writes every link's queued output (with the router's flush, before the loop blocks).
    func flush() {
        if linksToFlush.isEmpty { return }  // every loop pass; almost always nothing to write
        swap(&linksToFlush, &flushBatch)
        for link in flushBatch {
            link.flushScheduled = false
            if !link.waitingForWritable { link.writeOutput() }
        }
        flushBatch.removeAll(keepingCapacity: true)
    }

    // MARK: stopping together

    /// Stopping, with nothing in flight: tells the other workers (once), which no longer need this worker.
    func announceDone() {
        if saidDone { return }
        saidDone = true
        for case let link? in links {
            queue(on: link, kind: .done, identity: Self.empty, sid: Self.empty, type: Self.empty, body: Self.empty)
        }
    }

    /// Whether every other worker is done or gone: a stopping worker holding backend connections exits only
    /// then (their requests may still go through it), or at `shutdown-timeout`.
    var othersAreDone: Bool {
        links.indices.allSatisfy { links[$0] == nil || doneWorkers.contains($0) }
    }

    // MARK: metrics

    /// Asks every other worker for its `/metrics` text; returns how many were asked (their answers come to
    /// the delegate).
    func queryMetrics(_ query: UInt64) -> Int {
        var asked = 0
        withUnsafeBytes(of: query) { id in
            for case let link? in links {
                queue(on: link, kind: .metricsQuery, identity: Self.empty, sid: id, type: Self.empty, body: Self.empty)
                asked += 1
            }
        }
        flush()
        return asked
    }

    // MARK: from other workers

    /// Largest message a link accepts: what a backend may send (or a connection handover), plus the fields.
    var maxMessage: Int { max(router.maxMessageSize, BackendHandover.maxEncodedSize) + Self.fieldOverhead }

    func received(_ message: WorkerMessage.Parsed, in bytes: UnsafeRawBufferPointer, from worker: Int) {
        let identity = UnsafeRawBufferPointer(rebasing: bytes[message.identity])
        switch message.kind {
        case .joined:
            let previous = holders.value(for: identity.bytes)
            if previous != nil { _ = holders.remove(identity.bytes) }
            _ = holders.insert(Array(identity), value: worker)
            router.remotePeerJoined(identity: identity, worker: worker, replacing: previous)
        case .left:
            guard holders.value(for: identity.bytes) == worker else { return }  // it moved to another worker since
            _ = holders.remove(identity.bytes)
            router.remotePeerLeft(identity: identity, worker: worker, reason: "its connection to worker \(worker) closed")
        case .send, .sendUncreditedRequest:
            router.sendLocally(
                identity: identity, sid: UnsafeRawBufferPointer(rebasing: bytes[message.sid]),
                type: UnsafeRawBufferPointer(rebasing: bytes[message.type]),
                body: UnsafeRawBufferPointer(rebasing: bytes[message.body]),
                uncreditedRequest: message.kind == .sendUncreditedRequest, from: worker)
        case .done:
            doneWorkers.insert(worker)
        case .queueFull:
            if !fullQueues.contains(where: { $0.worker == worker && $0.identity.elementsEqual(identity) }),
                fullQueues.count < Self.maxRemotePauses
            {
                fullQueues.append((Array(identity), worker))
            }
        case .queueDrained:
            fullQueues.removeAll { $0.worker == worker && $0.identity.elementsEqual(identity) }
        case .pauseReading:
            router.holdLocalPeer(identity: identity, for: worker)
        case .resumeReading:
            router.releaseLocalPeer(identity: identity, for: worker)
        case .metricsQuery:
            guard let link = links[worker], message.sid.count == 8 else { return }
            let text = delegate.workerMeshMetricsText()
            guard text.count + Self.fieldOverhead <= maxMessage else { return }  // too big to send: the asker times out
            text.withUnsafeBytes {
                queue(on: link, kind: .metricsAnswer, identity: Self.empty, sid: UnsafeRawBufferPointer(rebasing: bytes[message.sid]),
                      type: Self.empty, body: $0)
            }
        case .metricsAnswer:
            guard message.sid.count == 8 else { return }
            let query = UnsafeRawBufferPointer(rebasing: bytes[message.sid]).loadUnaligned(as: UInt64.self)
            delegate.workerMesh(metrics: UnsafeRawBufferPointer(rebasing: bytes[message.body]).bytes, from: worker, query: query)
        case .received:
            router.deliverForwarded(
                identity: identity, sid: UnsafeRawBufferPointer(rebasing: bytes[message.sid]),
                type: UnsafeRawBufferPointer(rebasing: bytes[message.type]),
                body: UnsafeRawBufferPointer(rebasing: bytes[message.body]), from: worker)
        case .handover:
            guard let link = links[worker] else { return }
            // The socket travelled with this message's first byte, or earlier ones (WorkerLink.writeOutput).
            guard let fd = link.takeReceivedSocket() else {
                return linkClosed(worker, reason: "a connection handover arrived without its socket")
            }
            let state: BackendHandover
            do { state = try BackendHandover.decode(UnsafeRawBufferPointer(rebasing: bytes[message.body])) } catch {
                Posix.close(fd)
                return router.delegate.backendRouter(
                    placement: .handoverFailed(worker: worker, from: true, address: "?", reason: error.description),
                    identity: identity.bytes)
            }
            router.adopt(socket: fd, identity: Array(identity), handover: state, from: worker)
        }
    }

    /// The link to `worker` closed or broke: that worker (restarting, or gone) holds nothing any more.
    func linkClosed(_ worker: Int, reason: String = "the worker exited") {
        guard let link = links[worker] else { return }
        for _ in link.socketsToSend {
            router.delegate.backendRouter(
                placement: .handoverFailed(worker: worker, from: false, address: "?", reason: "the link to worker \(worker) closed"),
                identity: RawSpan())
        }
        releaseSenders(of: link)
        router.releaseLocalPeers(for: worker)  // a dead worker's budget holds nothing any more
        remotePauses.removeAll { $0.worker == worker }
        fullQueues.removeAll { $0.worker == worker }
        link.close()
        links[worker] = nil
        linksToFlush.removeAll { $0 === link }
        doneWorkers.remove(worker)
        for identity in holders.keys(withValue: worker) {
            _ = holders.remove(identity)
            identity.withUnsafeBytes {
                router.remotePeerLeft(identity: $0, worker: worker, reason: "worker \(worker) holding its connection is gone (\(reason))")
            }
        }
    }
}

/// One end of the socket pair to another worker: reads `WorkerMessage`s, writes the queued ones.
final class WorkerLink: IOWatcherDelegate {
    private unowned(unsafe) let mesh: WorkerMesh
    let worker: Int
    let fd: Int32
    private var watcher: IOWatcher! = nil
    var output = ZMTPOutputQueue()
    /// Backend connections handed to the worker at the other end, whose sockets go with the next write (then
    /// they are closed here); each one's `H` message is queued already.
    var socketsToSend: [Int32] = []
    /// Sockets that arrived, oldest first: each `H` message decoded takes the first one.
    private var receivedSockets: [Int32] = []
    var flushScheduled = false
    private(set) var waitingForWritable = false
    /// Backpressure from the worker at the other end, and the backend connections held for it (WorkerMesh).
    var flow = MeshLinkFlow()
    var heldPeers: [ZMTPPeer] = []
    private var input: UnsafeMutableRawPointer
    private var capacity = 64 * 1024
    private var start = 0
    private var end = 0
    private var closed = false

    init(mesh: WorkerMesh, worker: Int, fd: Int32, loop: EventLoop) {
        self.mesh = mesh
        self.worker = worker
        self.fd = fd
        guard let input = malloc(capacity) else { fatalError("out of memory for a worker link") }
        self.input = input
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        watcher = IOWatcher(loop: loop, fd: fd, delegate: self)
        watcher.watch(read: true, write: false)
    }

    deinit { free(input) }

    func close() {
        if closed { return }
        closed = true
        watcher.stop()
        Posix.close(fd)
        output.removeAll()
        (socketsToSend + receivedSockets).forEach(Posix.close)
        socketsToSend.removeAll()
        receivedSockets.removeAll()
    }

    /// The socket of the `H` message just decoded (nil: none arrived, which the sender never does).
    func takeReceivedSocket() -> Int32? {
        receivedSockets.isEmpty ? nil : receivedSockets.removeFirst()
    }

    func ioReady(readable: Bool, writable: Bool) {
        if writable { writeOutput() }
        if readable && !closed { readAvailable() }
    }

    func writeOutput() {
        if closed { return }
        let done: Bool
        do {
            // Sockets go with the first byte written after their messages were queued: never later than the
            // message itself, and in the order of the messages, so the other end pairs them up in order.
            if !socketsToSend.isEmpty {
                if try output.writeFirstPiece(to: fd, attaching: socketsToSend) {
                    socketsToSend.forEach(Posix.close)
                    socketsToSend.removeAll()
                    done = try output.write(to: fd)
                } else {
                    done = false
                }
            } else {
                done = try output.write(to: fd)
            }
        } catch {
            return mesh.linkClosed(worker, reason: "\(error)")
        }
        if done != !waitingForWritable {
            waitingForWritable = !done
            watcher.watch(read: true, write: !done)
        }
        if flow.written(output.count) == .releaseSenders { mesh.releaseSenders(of: self) }
    }

    private func readAvailable() {
        for _ in 0..<16 {
            if capacity - end < 4096 { makeRoom() }
            let room = UnsafeMutableRawBufferPointer(start: input + end, count: capacity - end)
            let result: IOResult
            do {
                result = try Posix.receive(
                    fd, into: room, descriptors: &receivedSockets, maxDescriptors: WorkerMesh.maxHandoversInFlight)
            } catch {
                return mesh.linkClosed(worker, reason: "\(error)")
            }
            if receivedSockets.count > 4 * WorkerMesh.maxHandoversInFlight {
                return mesh.linkClosed(worker, reason: "\(receivedSockets.count) sockets arrived without their handover messages")
            }
            guard case .processed(let n) = result else { return }
            if n == 0 { return mesh.linkClosed(worker) }
            end += n
            process()
            if closed || n < room.count { return }
        }
    }

    private func process() {
        while !closed {
            let available = UnsafeRawBufferPointer(start: input + start, count: end - start)
            let decoded: (message: WorkerMessage.Parsed, consumed: Int)?
            do { decoded = try WorkerMessage.decode(available, limit: mesh.maxMessage) } catch {
                return mesh.linkClosed(worker, reason: "\(error)")
            }
            guard let (message, consumed) = decoded else { break }
            mesh.received(message, in: available, from: worker)
            start += consumed
        }
        if start == end { (start, end) = (0, 0) }
    }

    /// Moves the unconsumed bytes to the front, growing the buffer (up to the largest message) when the
    /// message under way needs it.
    private func makeRoom() {
        if start > 0 {
            (input).copyMemory(from: input + start, byteCount: end - start)
            (start, end) = (0, end - start)
        }
        if capacity - end < 4096 && capacity < mesh.maxMessage + 4 {
            let grown = min(capacity * 2, mesh.maxMessage + 4 + 4096)
            guard let bigger = realloc(input, grown) else { fatalError("out of memory for a worker link") }
            input = bigger
            capacity = grown
        }
    }
}
