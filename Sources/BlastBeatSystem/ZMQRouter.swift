internal import CZeroMQ
import Glibc

/// A libzmq error with the call that failed.
package struct ZMQError: Error, CustomStringConvertible {
    package var call: String
    package var errno: Int32
    package var description: String { "\(call): \(String(cString: zmq_strerror(errno)))" }
}

/// Outcome of sending one multipart message to a peer identity.
package enum ZMQSendResult: Equatable {
    case sent
    /// No peer with that identity is connected (ZMQ_ROUTER_MANDATORY's EHOSTUNREACH).
    case unreachable
    /// The peer's high-water mark is reached; nothing was sent.
    case full
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

    package init(endpoint: String, highWaterMark: Int32 = 100_000) throws(ZMQError) {
        guard let context = zmq_ctx_new() else { throw ZMQError(call: "zmq_ctx_new", errno: zmq_errno()) }
        guard let socket = zmq_socket(context, ZMQ_ROUTER) else {
            zmq_ctx_term(context)
            throw ZMQError(call: "zmq_socket", errno: zmq_errno())
        }
        self.context = context
        self.socket = socket
        do throws(ZMQError) {
            // Unknown identities become EHOSTUNREACH instead of a silent drop (fixes D30).
            try setOption(ZMQ_ROUTER_MANDATORY, 1)
            // A restarted backend takes over its identity at once instead of being refused.
            try setOption(ZMQ_ROUTER_HANDOVER, 1)
            try setOption(ZMQ_SNDHWM, highWaterMark)
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

        package init(
            identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer,
            body: UnsafeRawBufferPointer
        ) {
            self.identity = identity
            self.sid = sid
            self.type = type
            self.body = body
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
            Message(identity: identity, sid: frames.view(1), type: frames.view(2), body: frames.view(3)))
    }

    /// Sends [identity, sid, type, body] without blocking. The identity frame is where libzmq
    /// reports an unknown peer, so a failed send never leaves a partial message behind.
    package func send(
        identity: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, type: StaticString,
        body: UnsafeRawBufferPointer
    ) throws(ZMQError) -> ZMQSendResult {
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
        handingOver buffer: UnsafeMutableRawPointer, count: Int, meter: ZMQQueueMeter
    ) throws(ZMQError) -> ZMQSendResult {
        HandOverBuffer.setQueuedCount(buffer, count)
        var body = zmq_msg_t()
        if zmq_msg_init_data(&body, buffer, count, freeHandedOverBuffer, Unmanaged.passUnretained(meter).toOpaque()) != 0 {
            HandOverBuffer.release(buffer)
            throw ZMQError(call: "zmq_msg_init_data", errno: zmq_errno())
        }
        meter.add(count)  // from here on the deallocator subtracts it
        let refused: ZMQSendResult?
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
    ) throws(ZMQError) -> ZMQSendResult? {
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
        zmq_close(socket)
        zmq_ctx_term(context)
    }
}

/// libzmq's deallocator for handed-over bodies; it runs on ZeroMQ's I/O thread (free and the
/// atomic counter are thread-safe).
private func freeHandedOverBuffer(_ data: UnsafeMutableRawPointer?, _ hint: UnsafeMutableRawPointer?) {
    guard let data else { return }
    if let hint {
        Unmanaged<ZMQQueueMeter>.fromOpaque(hint).takeUnretainedValue()
            .subtract(HandOverBuffer.queuedCount(data))
    }
    HandOverBuffer.release(data)
}
