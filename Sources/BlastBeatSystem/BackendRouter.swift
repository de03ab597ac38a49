package import BlastBeatCore
import Glibc

/// Outcome of sending one message to a backend identity, with either engine.
package enum BackendSendResult: Equatable {
    case sent
    /// No connection with that identity (libzmq: ZMQ_ROUTER_MANDATORY's EHOSTUNREACH).
    case unreachable
    /// The connection's queue is past its limit (libzmq: the high-water mark); nothing was sent.
    case full
}

/// A failure of the ROUTER itself (binding it, or libzmq refusing a send for a reason other than routing).
package struct BackendRouterError: Error, CustomStringConvertible {
    package var description: String
}

/// One message [sid, type, body] from the backend connection holding `identity`, as views that are
/// valid for the delegate call only (into libzmq's frames or a native peer's input buffer).
package struct BackendMessage {
    /// Where the connection it came on is: here, or at another worker that forwarded it (WorkerMesh.swift).
    package enum Origin: Equatable {
        case connectionHere
        case worker(Int)
    }

    package var identity: UnsafeRawBufferPointer
    package var sid: UnsafeRawBufferPointer
    package var type: BackendMessageType
    package var body: UnsafeRawBufferPointer
    package var origin: Origin

    package init(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: BackendMessageType,
        body: UnsafeRawBufferPointer, origin: Origin = .connectionHere
    ) {
        self.identity = identity
        self.sid = sid
        self.type = type
        self.body = body
        self.origin = origin
    }
}

/// Why a message from a backend was not delivered as a `BackendMessage`.
package enum MalformedBackendMessage {
    /// Not 4 frames counting the identity frame the ROUTER prepends (3 from a DEALER).
    case frameCount(Int)
    /// A type frame that is none of `BackendMessageType`'s names (a copy: such messages are rare, and only
    /// logged).
    case unknownType([UInt8])
}

/// The live connection holding an identity, as the delegate sees it when another one claims it.
package struct BackendIdentityHolder {
    package var key: CurveKey?
    package var address: String

    package init(key: CurveKey?, address: String) {
        self.key = key
        self.address = address
    }
}

/// Bytes the router sends as the body frame, and who owns them.
package enum BackendBody: ~Copyable {
    /// Borrowed for the call: the router copies what it keeps.
    case copying(UnsafeRawBufferPointer)
    /// Owned: the router takes the buffer over and frees it once sent (or dropped).
    case counted(CountedBody)
}

/// A `HandOverBuffer` body owned by whoever holds this value, counted in its node's meter from creation
/// until it is freed: once written to the node's connection, by libzmq's deallocator, or (dropped
/// unsent, e.g. the node is unreachable) here. Its meter must outlive it.
package struct CountedBody: ~Copyable {
    let buffer: UnsafeMutableRawPointer
    package let count: Int
    let meter: Unmanaged<NodeQueueMeter>

    /// Takes over the first `count` bytes of `buffer` (from `HandOverBuffer.allocate`).
    package init(handingOver buffer: UnsafeMutableRawPointer, count: Int, meter: NodeQueueMeter) {
        HandOverBuffer.setQueuedCount(buffer, count)
        meter.add(count)
        self.buffer = buffer
        self.count = count
        self.meter = Unmanaged.passUnretained(meter)
    }

    /// A counted copy of `bytes`; nil without memory.
    package init?(copying bytes: RawSpan, meter: NodeQueueMeter) {
        guard let buffer = HandOverBuffer.allocate(bytes.byteCount) else { return nil }
        bytes.withUnsafeBytes { if let source = $0.baseAddress { buffer.copyMemory(from: source, byteCount: $0.count) } }
        self.init(handingOver: buffer, count: bytes.byteCount, meter: meter)
    }

    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: buffer, count: count) }

    deinit {
        meter.takeUnretainedValue().subtract(count)
        HandOverBuffer.release(buffer)
    }

    /// Hands the buffer to an engine, which must subtract `HandOverBuffer.queuedCount` from the meter
    /// and release the buffer when it is done with it.
    consuming func release() -> (buffer: UnsafeMutableRawPointer, count: Int, meter: NodeQueueMeter) {
        let parts = (buffer, count, meter.takeUnretainedValue())
        discard self
        return parts
    }
}

/// What became of a backend connection's `X-BlastBeat-Worker` label (native engine; WorkerLabel.swift, README.md
/// "Worker processes"), for the gateway's counters and log.
package enum BackendPlacementEvent {
    /// The label names no worker (out of range, or not a number): the connection stays where it landed.
    case mislabelled(label: WorkerLabel, address: String, workers: Int)
    /// Handed to `worker` with its state (counted by the worker that sent it).
    case handedOver(to: Int)
    /// A handover to (or, `from`, from) another worker did not happen: the connection is closed, and its libzmq
    /// connects again (it lands in some worker and is placed again).
    case handoverFailed(worker: Int, from: Bool, address: String, reason: String)
}

extension BackendRouterDelegate {
    /// How the engines deliver a message: its frames lent as spans.
    func backendRouter(received message: BackendMessage) {
        backendRouter(
            received: message.type, sid: message.sid.bytes, body: message.body.bytes, from: message.identity.bytes,
            origin: message.origin)
    }
}

/// What a `BackendRouter` reports, from either engine. Views are valid for the call only.
package protocol BackendRouterDelegate: AnyObject {
    /// A well-formed message from an admitted connection: `type`, the `sid` and `body` frames, and the
    /// identity of the connection it came on.
    func backendRouter(
        received type: BackendMessageType, sid: RawSpan, body: RawSpan, from identity: RawSpan, origin: BackendMessage.Origin)
    /// A message dropped before it could be delivered; `identity` is its connection's.
    func backendRouter(receivedMalformed problem: MalformedBackendMessage, identity: RawSpan)
    /// A message from the connection holding `identity` here went to the worker whose session it is (workers > 1,
    /// WorkerMesh.swift): not delivered here, but a sign of life of the node all the same. A node busy streaming
    /// to another worker's client answers pings late, and this worker must not declare it dead meanwhile.
    func backendRouter(forwardedFrom identity: RawSpan)

    // Native engine: it sees every connection and asks before one is used.

    /// A connection finished its handshake claiming `identity` (empty: none) with `key` proved (CURVE)
    /// from `address`; `holder` is the live connection that has the identity now, if any. Returns why
    /// the claim is refused, or nil to admit it (it then replaces the holder).
    func backendRouterAdmit(
        identity: RawSpan, key: CurveKey?, address: String, holder: BackendIdentityHolder?
    ) -> String?
    /// After a reload: why a connected identity with `key` may no longer speak for its node (nil: it may), and
    /// whether it has requests in flight (then it is kept until they are done).
    func backendRouterRecheck(identity: RawSpan, key: CurveKey?) -> (refusal: String?, busy: Bool)
    /// Another worker process holds a connection with `identity` now (workers > 1, WorkerMesh.swift) and none
    /// is held here; `replacedAt`: the worker that held it before (requests sent through it are lost).
    func backendRouterRemotePeerJoined(identity: RawSpan, worker: Int, replacedAt: Int?)
    /// An admitted connection is ready; `replaced` is the holder it took the identity from.
    func backendRouterPeerJoined(identity: RawSpan, address: String, replaced: BackendIdentityHolder?)
    /// A connection's worker label was acted on, or could not be (`identity`: the identity it claims).
    func backendRouter(placement event: BackendPlacementEvent, identity: RawSpan)
    /// Worker `worker` sent a message for the connection holding `identity` here past twice its limit of queued
    /// bytes (`queuedBytes`): it ignored this worker's "queue full", and the message was dropped.
    func backendRouter(droppedForwardedSendFrom worker: Int, identity: RawSpan, queuedBytes: Int)
    /// A connection closed; `protocolError` when the peer broke ZMTP. `host` is the peer's address
    /// without its port (what a reconnecting peer keeps), for rate limits.
    func backendRouterDroppedPeer(identity: RawSpan, reason: String, host: String, protocolError: Bool)

    // libzmq engine with CURVE: libzmq asks about a key (ZAP) but never about an identity, so each
    // message's claim is put to the delegate before it is delivered.

    /// A connection from `address` proved `key`; returns why it is refused, or nil to let it in.
    func backendRouterAdmitKey(_ key: CurveKey?, address: String) -> String?
    /// Whether a message from a connection that proved `key` may speak as `identity`; a refused
    /// message is dropped (the delegate counts and logs it).
    func backendRouterAllowsClaim(identity: RawSpan, key: CurveKey?) -> Bool
}

/// The gateway's ROUTER: where backends connect, whichever ZMTP engine speaks to them. One send path
/// and one receive path (the delegate) for both engines:
///
/// - `native` (ZMTPRouter): ZMTP spoken on the gateway's own event loop; sends are queued on the peer's
///   connection and written by `flush()` before the loop blocks.
/// - `libzmq` (ZMQRouter): a libzmq ROUTER socket, for endpoints only libzmq has; its queue is looked at
///   again before the loop blocks while `hasPendingWork` (its descriptor is edge-triggered).
///
/// The engine is an enum, not a protocol existential: a send is one switch, no dynamic dispatch.
package final class BackendRouter {
    private enum Engine {
        case native(ZMTPRouter)
        case libzmq(ZMQRouter)
    }

    private let engine: Engine

    /// Binds `endpoint`. `maxMessageSize` bounds what a native peer may send, `maxQueuedBytes` what may
    /// wait for one native peer; `curveKeys` makes every backend complete CURVE.
    package init(
        loop: EventLoop, endpoint: String, engine: Configuration.ZMQEngine, maxMessageSize: Int, maxQueuedBytes: Int,
        curveKeys: CurveCrypto.KeyPair?, inheritedSockets: [Int32]? = nil, delegate: any BackendRouterDelegate
    ) throws(BackendRouterError) {
        switch engine {
        case .native:
            guard let parsed = ZMTPEndpoint.parse(endpoint) else {
                throw BackendRouterError(description: "\(endpoint): the native engine takes tcp:// or ipc:// endpoints")
            }
            do {
                self.engine = .native(
                    try ZMTPRouter(
                        loop: loop, endpoint: parsed, maxMessageSize: maxMessageSize, maxQueuedBytes: maxQueuedBytes,
                        curveKeys: curveKeys, inheritedSockets: inheritedSockets, delegate: delegate))
            } catch { throw BackendRouterError(description: "\(error)") }
        case .libzmq:
            do {
                self.engine = .libzmq(
                    try ZMQRouter(loop: loop, endpoint: endpoint, curveSecretKey: curveKeys?.secretKey, delegate: delegate))
            } catch { throw BackendRouterError(description: "\(error)") }
        }
    }

    /// The native engine's listening sockets for `endpoint`, bound ahead (by the privileged parent).
    package static func listen(endpoint: String) throws(BackendRouterError) -> [Int32] {
        guard let parsed = ZMTPEndpoint.parse(endpoint) else {
            throw BackendRouterError(description: "\(endpoint): the native engine takes tcp:// or ipc:// endpoints")
        }
        do { return try ZMTPRouter.listen(on: parsed) } catch { throw BackendRouterError(description: "\(error)") }
    }

    /// Makes this process worker `index` of `count` (native engine), with a link to each other worker.
    package func joinWorkers(index: Int, count: Int, links: [Int: Int32], delegate: any WorkerMeshDelegate) {
        if case .native(let router) = engine {
            router.joinWorkers(index: index, count: count, links: links, delegate: delegate)
        }
    }

    /// Asks the other workers for their `/metrics` texts (answers go to the mesh's delegate); how many were asked.
    package func queryWorkerMetrics(_ query: UInt64) -> Int {
        if case .native(let router) = engine, let mesh = router.mesh { return mesh.queryMetrics(query) }
        return 0
    }

    /// Backend messages that crossed the worker mesh from or to this worker (`S` and session `R` messages,
    /// WorkerMesh.swift): requests and replies that a connection of the backend at the right worker would spare.
    package var workerMeshForwardedMessages: Int {
        if case .native(let router) = engine, let mesh = router.mesh { return mesh.forwardedMessages }
        return 0
    }

    /// Messages other workers sent through this one to a backend that were dropped because they ignored its
    /// "queue full" (`ZMTPRouter.sendLocally`); 0 unless a worker misbehaves.
    package var workerMeshDroppedSends: Int {
        if case .native(let router) = engine { return router.droppedForwardedSends }
        return 0
    }

    /// A link to a restarted worker, from the parent.
    package func attachWorkerLink(worker: Int, fd: Int32) {
        if case .native(let router) = engine { router.attachWorkerLink(worker: worker, fd: fd) } else { Posix.close(fd) }
    }

    /// Called while stopping with nothing in flight: whether this process may exit now. A worker holds
    /// backend connections the other workers' requests use: it waits until they are done too (WorkerMesh).
    package func finishedStopping() -> Bool {
        if case .native(let router) = engine { return router.finishedStopping() }
        return true
    }

    /// New bounds after a reload (the native engine's; the libzmq engine does not take these bounds).
    package func setLimits(maxMessageSize: Int, maxQueuedBytes: Int) {
        if case .native(let router) = engine {
            router.setLimits(maxMessageSize: maxMessageSize, maxQueuedBytes: maxQueuedBytes)
        }
    }

    /// Sends [sid, type, body] to the connection with `identity`. A counted body is taken over in every
    /// case (freed once sent, or at once when the send fails).
    @inline(__always)
    package func send(
        to identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString, body: consuming BackendBody
    ) throws(BackendRouterError) -> BackendSendResult {
        switch engine {
        case .native(let router):
            return router.send(identity: identity, sid: sid, type: type, body: body)
        case .libzmq(let router):
            do { return try router.send(identity: identity, sid: sid, type: type, body: body) } catch {
                throw BackendRouterError(description: "\(error)")
            }
        }
    }

    /// `send` with the frames lent as spans; the router copies `body`.
    package func send(
        to identity: RawSpan, sid: RawSpan, type: StaticString, copying body: RawSpan
    ) throws(BackendRouterError) -> BackendSendResult {
        try Self.withFrames(identity, sid, body) { (identity, sid, body) throws(BackendRouterError) in
            try send(to: identity, sid: sid, type: type, body: .copying(body))
        }
    }

    /// `send` with a counted body, taken over in every case.
    package func send(
        to identity: RawSpan, sid: RawSpan, type: StaticString, counted body: consuming CountedBody
    ) throws(BackendRouterError) -> BackendSendResult {
        // Moved into the closure through an Optional (a closure may not consume what it captures).
        var pending: CountedBody? = consume body
        return try Self.withFrames(identity, sid, RawSpan()) { (identity, sid, _) throws(BackendRouterError) in
            try send(to: identity, sid: sid, type: type, body: .counted(pending.take()!))
        }
    }

    /// `sendRequest` with the frames lent as spans; the router copies `body`.
    package func sendRequest(
        to identity: RawSpan, sid: RawSpan, copying body: RawSpan, credited: Bool
    ) throws(BackendRouterError) -> BackendSendResult {
        try Self.withFrames(identity, sid, body) { (identity, sid, body) throws(BackendRouterError) in
            try sendRequest(to: identity, sid: sid, body: .copying(body), credited: credited)
        }
    }

    /// The three frames of a send as the engines take them.
    private static func withFrames<R>(
        _ identity: RawSpan, _ sid: RawSpan, _ body: RawSpan,
        _ use: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(BackendRouterError) -> R
    ) throws(BackendRouterError) -> R {
        try identity.withUnsafeBytes { (identity) throws(BackendRouterError) in
            try sid.withUnsafeBytes { (sid) throws(BackendRouterError) in
                try body.withUnsafeBytes { (body) throws(BackendRouterError) in try use(identity, sid, body) }
            }
        }
    }

    /// Sends a `uwsgi` request; `credited`: whether the gateway grants its session credit (docs/PROTOCOL.md,
    /// "Credit"), which a request forwarded to another worker's connection carries along.
    package func sendRequest(
        to identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, body: consuming BackendBody, credited: Bool
    ) throws(BackendRouterError) -> BackendSendResult {
        switch engine {
        case .native(let router):
            return router.sendRequest(identity: identity, sid: sid, body: body, credited: credited)
        case .libzmq:
            return try send(to: identity, sid: sid, type: "uwsgi", body: body)
        }
    }

    /// Acknowledges a credit announcement that came on the connection holding `identity` here.
    package func acknowledgeCredit(identity: RawSpan) throws(BackendRouterError) -> BackendSendResult {
        try identity.withUnsafeBytes { (identity) throws(BackendRouterError) in try acknowledgeCredit(identity: identity) }
    }

    private func acknowledgeCredit(identity: UnsafeRawBufferPointer) throws(BackendRouterError) -> BackendSendResult {
        switch engine {
        case .native(let router):
            return router.acknowledgeCredit(identity: identity)
        case .libzmq:
            return try send(to: identity, sid: UnsafeRawBufferPointer(start: nil, count: 0), type: "credit",
                            body: .copying(UnsafeRawBufferPointer(start: nil, count: 0)))
        }
    }

    /// Whether messages may be waiting that no wakeup will announce (libzmq: a send may have consumed
    /// the edge of its descriptor): the owner calls `receivePending()` again before blocking.
    package var hasPendingWork: Bool {
        switch engine {
        case .native: return false
        case .libzmq(let router): return router.needsCheck
        }
    }

    /// Delivers what `hasPendingWork` says may be waiting.
    package func receivePending() {
        if case .libzmq(let router) = engine { router.checkQueue() }
    }

    /// What a pause stopped.
    package enum Pause: Equatable {
        /// The connection holding the identity (native engine).
        case connection
        /// Every backend's messages: libzmq has one queue for all of them.
        case allBackends
        /// Nothing: the identity has no connection.
        case none
    }

    /// Stops delivering messages from the connection holding `identity` (native engine) or from every
    /// backend (libzmq), after the message being delivered. Sends go on.
    package func pauseReading(identity: RawSpan) -> Pause {
        switch engine {
        case .native(let router): return identity.withUnsafeBytes { router.pauseReading(identity: $0) } ? .connection : .none
        case .libzmq(let router):
            router.pauseReading()
            return .allBackends
        }
    }

    /// Whether the connection holding `identity` here is not read for another worker whose budget is full
    /// (a congested mesh link; WorkerMesh.swift).
    package func isHeldForOtherWorkers(identity: RawSpan) -> Bool {
        switch engine {
        case .native(let router): return identity.withUnsafeBytes { router.isHeldForOtherWorkers(identity: $0) }
        case .libzmq: return false
        }
    }

    /// Whether the worker holding `identity` said its queue for that connection is full with this worker's
    /// client data (WorkerMesh.swift): such data waits as for a full queue here.
    package func isQueueFullAtHolder(identity: RawSpan) -> Bool {
        switch engine {
        case .native(let router): return identity.withUnsafeBytes { router.isQueueFullAtHolder(identity: $0) }
        case .libzmq: return false
        }
    }

    /// Ends a pause of `identity` (native) or of every backend (libzmq).
    package func resumeReading(identity: RawSpan) {
        switch engine {
        case .native(let router): identity.withUnsafeBytes { router.resumeReading(identity: $0) }
        case .libzmq(let router): router.resumeReading()
        }
    }

    /// Writes what sends queued (native engine); the owner calls this before the loop blocks.
    package func flush() {
        if case .native(let router) = engine { router.flush() }
    }

    /// True when the engine cannot tell who holds an identity before a message from it arrives (libzmq
    /// with CURVE): a node not heard from must not get requests yet.
    package var claimsAreProvedByMessages: Bool {
        switch engine {
        case .native: return false
        case .libzmq(let router): return router.checksClaims
        }
    }

    /// The TCP port bound (native engine; 0 otherwise), for endpoints with port 0 in tests.
    package var boundPort: UInt16 {
        switch engine {
        case .native(let router): return router.boundPort
        case .libzmq: return 0
        }
    }

    /// The native engine's listening sockets (for a new binary, SIGUSR2); nil with libzmq, whose socket cannot
    /// be handed over.
    package var listeningSockets: [Int32]? {
        if case .native(let router) = engine { return router.listeningSockets }
        return nil
    }

    /// After a reload, closes the backend connections whose claim the delegate no longer admits, those with
    /// requests in flight only when `evenBusy` (native engine; with libzmq every message's claim is checked
    /// anyway, `backendRouterAllowsClaim`). Returns how many refused ones were kept for being busy.
    package func recheckConnectedPeers(evenBusy: Bool) -> Int {
        if case .native(let router) = engine { return router.recheckConnectedPeers(evenBusy: evenBusy) }
        return 0
    }

    /// Stops accepting backend connections, leaving the `ipc://` socket file to the process that took over.
    package func stopListening() {
        if case .native(let router) = engine { router.stopListening() }
    }

    /// Stops listening and drops every connection. Returns why an `ipc://` socket file could not be
    /// removed (native engine; the next start replaces it).
    @discardableResult
    package func close() -> BackendRouterError? {
        switch engine {
        case .native(let router): return router.close().map { BackendRouterError(description: "\($0)") }
        case .libzmq(let router):
            router.close()
            return nil
        }
    }
}
