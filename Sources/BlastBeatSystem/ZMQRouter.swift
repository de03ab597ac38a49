internal import CZeroMQ
import BlastBeatCore
import Glibc

/// A libzmq error with the call that failed.
package struct ZMQError: Error, CustomStringConvertible {
    package var call: String
    package var errno: Int32
    package var description: String { "\(call): \(String(cString: zmq_strerror(errno)))" }
}

/// A ZAP (ZeroMQ RFC 27) request: libzmq asks who may connect after a CURVE handshake proved `key`.
struct ZAPRequest {
    var requestID: [UInt8]
    /// The peer's IP address, as libzmq reports it.
    var address: String
    var key: CurveKey?
}

/// The libzmq engine of `BackendRouter` (`zmq-engine = libzmq`): a libzmq ROUTER socket watched by the
/// gateway's event loop.
///
/// Receiving fills four reusable `zmq_msg_t` frames owned by this object; the views handed to the
/// delegate are valid for the call. libzmq's notification fd is edge-triggered, so the queue is drained
/// until empty after every wakeup, and after a send (which may consume the edge) `needsCheck` stays set
/// until `checkQueue()` finds it empty.
final class ZMQRouter: IOWatcherDelegate {
    private let context: UnsafeMutableRawPointer
    private let socket: UnsafeMutableRawPointer
    /// Identity, sid, type, body.
    private let frames = ZMQFrames(expected: 4)
    private var closed = false
    /// With CURVE: the REP socket libzmq sends its ZAP requests to (inproc://zeromq.zap.01).
    private var zapSocket: UnsafeMutableRawPointer? = nil
    private let zapFrames = ZMQFrames(expected: 7)
    private unowned(unsafe) let delegate: any BackendRouterDelegate
    private var watcher: IOWatcher! = nil
    private var zapWatcher: ZAPWatcher? = nil
    /// Whether the queue must be looked at before the loop blocks. Set by every send, cleared when a
    /// receive finds the queue empty. Each look costs libzmq two system calls (getpid, poll).
    private(set) var needsCheck = true

    /// With CURVE every message carries its connection's key (ZAP's User-Id), checked against its identity.
    var checksClaims: Bool { zapSocket != nil }

    /// `curveSecretKey`: be a CURVE server (every peer must complete CURVE; ZAP decides which keys pass).
    ///
    /// ROUTER_HANDOVER stays off: libzmq leaves a replaced connection attached to nothing, so the process
    /// behind it stays connected and unreachable (every request to its node fails) until it restarts.
    /// Without hand-over the connected process keeps its identity; a restarted one gets it back as soon
    /// as its old connection has closed, which happens when the old process exits.
    init(
        loop: EventLoop, endpoint: String, highWaterMark: Int32 = 100_000, curveSecretKey: CurveKey? = nil,
        delegate: any BackendRouterDelegate
    ) throws(ZMQError) {
        guard let context = zmq_ctx_new() else { throw ZMQError(call: "zmq_ctx_new", errno: zmq_errno()) }
        guard let socket = zmq_socket(context, ZMQ_ROUTER) else {
            zmq_ctx_term(context)
            throw ZMQError(call: "zmq_socket", errno: zmq_errno())
        }
        self.context = context
        self.socket = socket
        self.delegate = delegate
        do throws(ZMQError) {
            // Unknown identities become EHOSTUNREACH instead of a silent drop (with which the original's clients
            // waited forever).
            try setOption(ZMQ_ROUTER_MANDATORY, 1)
            try setOption(ZMQ_SNDHWM, highWaterMark)
            if let curveSecretKey { try enableCurve(curveSecretKey) }
            try setOption(ZMQ_RCVHWM, highWaterMark)
            try setOption(ZMQ_LINGER, 0)
            if zmq_bind(socket, endpoint) != 0 { throw ZMQError(call: "zmq_bind(\(endpoint))", errno: zmq_errno()) }
        } catch {
            close()
            throw error
        }
        watcher = IOWatcher(loop: loop, fd: notificationFD, delegate: self)
        watcher.watch(read: true, write: false)
        if let fd = zapNotificationFD { zapWatcher = ZAPWatcher(router: self, loop: loop, fd: fd) }
    }

    deinit {
        assert(closed, "ZMQRouter leaked: close() was not called")
    }

    /// The ZAP handler must be bound before any peer connects, so before the ROUTER binds.
    private func enableCurve(_ secretKey: CurveKey) throws(ZMQError) {
        guard let zap = zmq_socket(context, ZMQ_REP) else { throw ZMQError(call: "zmq_socket(REP)", errno: zmq_errno()) }
        zapSocket = zap
        var linger: Int32 = 0
        zmq_setsockopt(zap, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        if zmq_bind(zap, "inproc://zeromq.zap.01") != 0 { throw ZMQError(call: "zmq_bind(ZAP handler)", errno: zmq_errno()) }
        try setOption(ZMQ_CURVE_SERVER, 1)
        if zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secretKey.bytes, 32) != 0 {
            throw ZMQError(call: "zmq_setsockopt(ZMQ_CURVE_SECRETKEY)", errno: zmq_errno())
        }
        let domain = "blastbeat"
        if zmq_setsockopt(socket, ZMQ_ZAP_DOMAIN, domain, domain.utf8.count) != 0 {
            throw ZMQError(call: "zmq_setsockopt(ZMQ_ZAP_DOMAIN)", errno: zmq_errno())
        }
    }

    /// The ZAP handler's edge-triggered notification descriptor (nil without CURVE).
    private var zapNotificationFD: Int32? {
        guard let zapSocket else { return nil }
        var fd: Int32 = -1
        var size = MemoryLayout<Int32>.size
        zmq_getsockopt(zapSocket, ZMQ_FD, &fd, &size)
        return fd
    }

    /// The next ZAP request, without blocking; each must be answered with `answer(_:allowed:...)`
    /// before the next is received (a REP socket).
    private func receiveZAPRequest() -> ZAPRequest? {
        guard let zapSocket, let count = zapFrames.receive(from: zapSocket) else { return nil }
        // version, request id, domain, address, identity, mechanism, credentials (the client key)
        let field = { (i: Int) -> [UInt8] in i < count ? Array(self.zapFrames.view(i)) : [] }
        return ZAPRequest(
            requestID: field(1), address: String(decoding: field(3), as: UTF8.self),
            key: count >= 7 ? CurveKey(bytes: field(6)) : nil)
    }

    /// Answers a ZAP request: 200 with `userID` (then on every message of that connection as
    /// "User-Id"), or 400 with `reason`.
    private func answer(_ request: ZAPRequest, allowed: Bool, userID: String, reason: String) {
        guard let zapSocket else { return }
        let frames: [[UInt8]] = [
            Array("1.0".utf8), request.requestID, Array((allowed ? "200" : "400").utf8), Array(reason.utf8.prefix(200)),
            Array(userID.utf8), [],
        ]
        for (i, frame) in frames.enumerated() {
            _ = frame.withUnsafeBytes { zmq_send(zapSocket, $0.baseAddress, $0.count, i < frames.count - 1 ? ZMQ_SNDMORE : 0) }
        }
    }

    /// Whether a ZAP request is waiting (also resets the edge-triggered fd's state).
    private var hasZAPRequest: Bool {
        guard let zapSocket else { return false }
        var events: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(zapSocket, ZMQ_EVENTS, &events, &size) != 0 { return false }
        return events & Int32(ZMQ_POLLIN) != 0
    }

    private func setOption(_ option: Int32, _ value: Int32) throws(ZMQError) {
        var v = value
        if zmq_setsockopt(socket, option, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError(call: "zmq_setsockopt(\(option))", errno: zmq_errno())
        }
    }

    /// The edge-triggered notification descriptor to watch for reading.
    private var notificationFD: Int32 {
        var fd: Int32 = -1
        var size = MemoryLayout<Int32>.size
        zmq_getsockopt(socket, ZMQ_FD, &fd, &size)
        return fd
    }

    /// Whether a message is ready to receive (also resets the edge-triggered fd's state).
    private var hasIncoming: Bool {
        var events: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) != 0 { return false }
        return events & Int32(ZMQ_POLLIN) != 0
    }

    // MARK: receiving

    func ioReady(readable: Bool, writable: Bool) { drain() }

    /// Receives what a send may have hidden from the notification fd.
    func checkQueue() {
        guard needsCheck else { return }
        if hasIncoming { drain() } else { needsCheck = false }
    }

    /// Whether messages are received. libzmq gives one queue for all connections, so a pause (at the gateway's
    /// memory budget) stops every backend's messages, not one connection's (README, "Memory budget").
    enum Reading { case active, paused }
    private(set) var reading = Reading.active

    func pauseReading() { reading = .paused }

    /// Receives again; the messages that waited are fetched before the loop blocks (the edge of the
    /// notification descriptor may be gone).
    func resumeReading() {
        if reading == .active { return }
        reading = .active
        needsCheck = true
    }

    /// Delivers every queued message (the fd is edge-triggered: stop only when empty, or past a budget
    /// with `needsCheck` set so the owner looks again before blocking). While paused it delivers nothing.
    private func drain() {
        var budget = 10_000
        while !closed && reading == .active {
            guard budget > 0 else {
                needsCheck = true
                return
            }
            guard let count = frames.receive(from: socket) else {
                needsCheck = false  // empty: the fd signals the next arrival
                return
            }
            budget -= 1
            deliver(frameCount: count)
        }
    }

    private func deliver(frameCount: Int) {
        let identity = frames.view(0)
        guard frameCount == 4 else {
            return delegate.backendRouter(receivedMalformed: .frameCount(frameCount), identity: identity.bytes)
        }
        if checksClaims {
            let key = frames.property(1, "User-Id").flatMap { Z85.decode($0) }.flatMap { CurveKey(bytes: $0) }
            guard delegate.backendRouterAllowsClaim(identity: identity.bytes, key: key) else { return }
        }
        let type = frames.view(2)
        guard let parsed = BackendMessageType(type) else {
            return delegate.backendRouter(receivedMalformed: .unknownType(Array(type)), identity: identity.bytes)
        }
        delegate.backendRouter(
            received: BackendMessage(identity: identity, sid: frames.view(1), type: parsed, body: frames.view(3)))
    }

    /// Answers every waiting ZAP request with the delegate's verdict on its key.
    fileprivate func answerZAPRequests() {
        while !closed, let request = receiveZAPRequest() {
            if let refusal = delegate.backendRouterAdmitKey(request.key, address: request.address) {
                answer(request, allowed: false, userID: "", reason: refusal)
            } else {
                answer(request, allowed: true, userID: request.key?.z85 ?? "", reason: "OK")
            }
        }
        _ = hasZAPRequest  // re-arms the edge-triggered descriptor
    }

    // MARK: sending

    /// Sends [identity, sid, type, body] without blocking. The identity frame is where libzmq reports an
    /// unknown peer, so a refused send never leaves a partial message behind. A counted body is sent
    /// without copying: libzmq frees it (and takes it off its meter) when done, on its I/O thread.
    func send(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString, body: consuming BackendBody
    ) throws(ZMQError) -> BackendSendResult {
        needsCheck = true
        switch consume body {
        case .copying(let bytes):
            if let refused = try sendHeaderFrames(identity: identity, sid: sid, type: type) { return refused }
            if zmq_send(socket, bytes.baseAddress, bytes.count, ZMQ_DONTWAIT) < 0 {
                throw ZMQError(call: "zmq_send", errno: zmq_errno())
            }
            return .sent
        case .counted(let counted):
            return try send(identity: identity, sid: sid, type: type, counted: counted)
        }
    }

    private func send(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString, counted: consuming CountedBody
    ) throws(ZMQError) -> BackendSendResult {
        let (buffer, count, meter) = counted.release()
        var storage = zmq_msg_t()
        // One pointer for every call on the message (a `&storage` argument is valid during its call only).
        return try withUnsafeMutablePointer(to: &storage) { body throws(ZMQError) -> BackendSendResult in
            // Made before the first frame goes: failing later would leave a partial message in the socket.
            if zmq_msg_init_data(body, buffer, count, freeCountedBody, Unmanaged.passUnretained(meter).toOpaque()) != 0 {
                meter.subtract(count)
                HandOverBuffer.release(buffer)
                throw ZMQError(call: "zmq_msg_init_data", errno: zmq_errno())
            }
            // From here on the deallocator frees the buffer, also when the message is closed unsent.
            let refused: BackendSendResult?
            do throws(ZMQError) {
                refused = try sendHeaderFrames(identity: identity, sid: sid, type: type)
            } catch {
                zmq_msg_close(body)
                throw error
            }
            if let refused {
                zmq_msg_close(body)
                return refused
            }
            if zmq_msg_send(body, socket, ZMQ_DONTWAIT) < 0 {
                let e = zmq_errno()
                zmq_msg_close(body)
                throw ZMQError(call: "zmq_msg_send", errno: e)
            }
            return .sent
        }
    }

    /// Identity, sid and type with SNDMORE; nil when accepted, else why the peer refused.
    private func sendHeaderFrames(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString
    ) throws(ZMQError) -> BackendSendResult? {
        let more = ZMQ_SNDMORE | ZMQ_DONTWAIT
        if zmq_send(socket, identity.baseAddress, identity.count, more) < 0 {
            let e = zmq_errno()
            if e == EHOSTUNREACH { return .unreachable }
            if e == EAGAIN { return .full }
            throw ZMQError(call: "zmq_send", errno: e)
        }
        // Once the identity frame is accepted the remaining frames cannot fail for routing reasons.
        zmq_send(socket, sid.baseAddress, sid.count, more)
        zmq_send(socket, type.utf8Start, type.utf8CodeUnitCount, more)
        return nil
    }

    func close() {
        if closed { return }
        closed = true
        watcher?.stop()
        zapWatcher?.stop()
        frames.release()
        zapFrames.release()
        zmq_close(socket)
        if let zapSocket { zmq_close(zapSocket) }
        zmq_ctx_term(context)
    }
}

/// libzmq's deallocator for counted bodies; it runs on ZeroMQ's I/O thread (free and the
/// atomic counter are thread-safe).
private func freeCountedBody(_ data: UnsafeMutableRawPointer?, _ hint: UnsafeMutableRawPointer?) {
    guard let data else { return }
    if let hint {
        Unmanaged<NodeQueueMeter>.fromOpaque(hint).takeUnretainedValue().subtract(HandOverBuffer.queuedCount(data))
    }
    HandOverBuffer.release(data)
}

/// Watches the ZAP handler socket's descriptor (CURVE).
private final class ZAPWatcher: IOWatcherDelegate {
    private unowned(unsafe) let router: ZMQRouter
    private var watcher: IOWatcher! = nil

    init(router: ZMQRouter, loop: EventLoop, fd: Int32) {
        self.router = router
        watcher = IOWatcher(loop: loop, fd: fd, delegate: self)
        watcher.watch(read: true, write: false)
    }

    func ioReady(readable: Bool, writable: Bool) { router.answerZAPRequests() }

    func stop() { watcher.stop() }
}
