internal import CZeroMQ
package import BlastBeatCore
import Glibc

/// A libzmq error with the call that failed.
package struct ZMQError: Error, CustomStringConvertible {
    package var call: String
    package var errno: Int32
    package var description: String { "\(call): \(String(cString: zmq_strerror(errno)))" }
}

/// Outcome of sending one multipart message to a peer identity.
package enum BackendSendResult: Equatable {
    case sent
    /// No peer with that identity is connected (ZMQ_ROUTER_MANDATORY's EHOSTUNREACH).
    case unreachable
    /// The peer's high-water mark is reached; nothing was sent.
    case full
}

/// A ZAP (ZeroMQ RFC 27) request: libzmq asks who may connect after a CURVE handshake proved `key`.
package struct ZAPRequest {
    package var requestID: [UInt8]
    /// The peer's IP address, as libzmq reports it.
    package var address: String
    package var key: CurveKey?
}

/// The gateway's ROUTER socket: the one place that touches libzmq.
///
/// Receiving fills four reusable `zmq_msg_t` frames owned by this object; the views handed out by
/// `receive` are valid until the next `receive`. libzmq's notification fd is edge-triggered, so the
/// owner must drain `receive` until it returns nil after every wakeup and after every send.
package final class ZMQRouter {
    private let context: UnsafeMutableRawPointer
    private let socket: UnsafeMutableRawPointer
    /// Identity, sid, type, body.
    private let frames = ZMQFrames(expected: 4)
    private var closed = false
    /// With CURVE: the REP socket libzmq sends its ZAP requests to (inproc://zeromq.zap.01).
    private var zapSocket: UnsafeMutableRawPointer? = nil
    private let zapFrames = ZMQFrames(expected: 7)

    /// `curveSecretKey`: be a CURVE server (every peer must complete CURVE; ZAP decides which keys pass).
    ///
    /// ROUTER_HANDOVER stays off: libzmq leaves a replaced connection attached to nothing, so the process
    /// behind it stays connected and unreachable (every request to its node fails) until it restarts.
    /// Without hand-over the connected process keeps its identity; a restarted one gets it back as soon
    /// as its old connection has closed, which happens when the old process exits.
    package init(endpoint: String, highWaterMark: Int32 = 100_000, curveSecretKey: CurveKey? = nil) throws(ZMQError) {
        guard let context = zmq_ctx_new() else { throw ZMQError(call: "zmq_ctx_new", errno: zmq_errno()) }
        guard let socket = zmq_socket(context, ZMQ_ROUTER) else {
            zmq_ctx_term(context)
            throw ZMQError(call: "zmq_socket", errno: zmq_errno())
        }
        self.context = context
        self.socket = socket
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
    package var zapNotificationFD: Int32? {
        guard let zapSocket else { return nil }
        var fd: Int32 = -1
        var size = MemoryLayout<Int32>.size
        zmq_getsockopt(zapSocket, ZMQ_FD, &fd, &size)
        return fd
    }

    /// The next ZAP request, without blocking; each must be answered with `answer(_:allowed:...)`
    /// before the next is received (a REP socket).
    package func receiveZAPRequest() -> ZAPRequest? {
        guard let zapSocket, let count = zapFrames.receive(from: zapSocket) else { return nil }
        // version, request id, domain, address, identity, mechanism, credentials (the client key)
        let field = { (i: Int) -> [UInt8] in i < count ? Array(self.zapFrames.view(i)) : [] }
        return ZAPRequest(
            requestID: field(1), address: String(decoding: field(3), as: UTF8.self),
            key: count >= 7 ? CurveKey(bytes: field(6)) : nil)
    }

    /// Answers a ZAP request: 200 with `userID` (then on every message of that connection as
    /// "User-Id"), or 400 with `reason`.
    package func answer(_ request: ZAPRequest, allowed: Bool, userID: String, reason: String) {
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
    package var hasZAPRequest: Bool {
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
    package var notificationFD: Int32 {
        var fd: Int32 = -1
        var size = MemoryLayout<Int32>.size
        zmq_getsockopt(socket, ZMQ_FD, &fd, &size)
        return fd
    }

    /// Whether a message is ready to receive (also resets the edge-triggered fd's state).
    package var hasIncoming: Bool {
        var events: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) != 0 { return false }
        return events & Int32(ZMQ_POLLIN) != 0
    }

    /// One received message as views into the reusable frames.
    package struct Message {
        package var identity: UnsafeRawBufferPointer
        package var sid: UnsafeRawBufferPointer
        package var type: UnsafeRawBufferPointer
        package var body: UnsafeRawBufferPointer
        /// With CURVE (libzmq engine): the User-Id ZAP gave the connection, the Z85 of its key.
        package var userID: UnsafeRawBufferPointer?

        package init(
            identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer,
            body: UnsafeRawBufferPointer, userID: UnsafeRawBufferPointer? = nil
        ) {
            self.identity = identity
            self.sid = sid
            self.type = type
            self.body = body
            self.userID = userID
        }
    }

    /// Outcome of one receive.
    package enum Received {
        case message(Message)
        /// A message without exactly 4 frames (3 from the DEALER); fully drained, `identity` valid.
        case malformed(frameCount: Int, identity: UnsafeRawBufferPointer)
    }

    /// Receives one whole multipart message without blocking; nil when none is queued.
    package func receive() -> Received? {
        guard let count = frames.receive(from: socket) else { return nil }
        let identity = frames.view(0)
        if count != 4 { return .malformed(frameCount: count, identity: identity) }
        return .message(
            Message(
                identity: identity, sid: frames.view(1), type: frames.view(2), body: frames.view(3),
                userID: zapSocket == nil ? nil : frames.property(1, "User-Id")))
    }

    /// Sends [identity, sid, type, body] without blocking. The identity frame is where libzmq
    /// reports an unknown peer, so a failed send never leaves a partial message behind.
    package func send(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString,
        body: UnsafeRawBufferPointer
    ) throws(ZMQError) -> BackendSendResult {
        if let refused = try sendHeaderFrames(identity: identity, sid: sid, type: type) { return refused }
        if zmq_send(socket, body.baseAddress, body.count, ZMQ_DONTWAIT) < 0 {
            throw ZMQError(call: "zmq_send", errno: zmq_errno())
        }
        return .sent
    }

    /// Like `send(identity:sid:type:body:)`, but the body is the first `count` bytes of a
    /// `HandOverBuffer`, which libzmq sends without copying and frees when done. `meter` counts
    /// the bytes until then. The buffer is taken over in every case: on failure it is freed here.
    package func send(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString,
        handingOver buffer: UnsafeMutableRawPointer, count: Int, meter: NodeQueueMeter
    ) throws(ZMQError) -> BackendSendResult {
        HandOverBuffer.setQueuedCount(buffer, count)
        var body = zmq_msg_t()
        if zmq_msg_init_data(&body, buffer, count, freeHandedOverBuffer, Unmanaged.passUnretained(meter).toOpaque()) != 0 {
            HandOverBuffer.release(buffer)
            throw ZMQError(call: "zmq_msg_init_data", errno: zmq_errno())
        }
        meter.add(count)  // from here on the deallocator subtracts it
        let refused: BackendSendResult?
        do throws(ZMQError) {
            refused = try sendHeaderFrames(identity: identity, sid: sid, type: type)
        } catch {
            zmq_msg_close(&body)
            throw error
        }
        if let refused {
            zmq_msg_close(&body)
            return refused
        }
        if zmq_msg_send(&body, socket, ZMQ_DONTWAIT) < 0 {
            let e = zmq_errno()
            zmq_msg_close(&body)
            throw ZMQError(call: "zmq_msg_send", errno: e)
        }
        return .sent
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

    package func close() {
        if closed { return }
        closed = true
        frames.release()
        zapFrames.release()
        zmq_close(socket)
        if let zapSocket { zmq_close(zapSocket) }
        zmq_ctx_term(context)
    }
}

/// libzmq's deallocator for handed-over bodies; it runs on ZeroMQ's I/O thread (free and the
/// atomic counter are thread-safe).
private func freeHandedOverBuffer(_ data: UnsafeMutableRawPointer?, _ hint: UnsafeMutableRawPointer?) {
    guard let data else { return }
    if let hint {
        Unmanaged<NodeQueueMeter>.fromOpaque(hint).takeUnretainedValue()
            .subtract(HandOverBuffer.queuedCount(data))
    }
    HandOverBuffer.release(data)
}
