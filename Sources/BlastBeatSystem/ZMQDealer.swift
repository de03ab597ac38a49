internal import CZeroMQ
import Glibc

/// A backend node's DEALER socket connected to one gateway, for the backend SDK (`BlastBeatBackend`).
///
/// Each dealer owns its libzmq context, its DEALER socket and a PAIR socket that receives the DEALER's
/// monitor events over `inproc`: the node must learn when a (re)connection's handshake has completed, because
/// it announces itself then (an instance identity `NAME#x` is unknown to a gateway until it hears from it).
/// One context per dealer costs one libzmq I/O thread per gateway endpoint, which keeps the dealers fully
/// independent (closing one never waits for another's linger).
///
/// Not thread-safe: one thread at a time (the node's `run` thread). Received views are valid until the next
/// `receive`. Unlike the gateway's `ZMQRouter`, waiting is done with `zmq_poll` (see `poll`), not an event loop.
package final class ZMQDealer {
    private let context: UnsafeMutableRawPointer
    private let socket: UnsafeMutableRawPointer
    private let monitor: UnsafeMutableRawPointer
    /// sid, type, body.
    private let frames = ZMQFrames(expected: 3)
    private var closed = false
    package let endpoint: String

    /// What the monitor reported since the last `connectionEvents()`.
    package struct ConnectionEvents: Equatable, Sendable {
        /// A connection's handshake completed (first connection or a reconnection).
        package var connected = false
        /// A connection was lost; libzmq reconnects by itself.
        package var disconnected = false
        package init(connected: Bool = false, disconnected: Bool = false) {
            self.connected = connected
            self.disconnected = disconnected
        }
    }

    /// One received message (sid, type, body) as views into the reusable frames.
    package struct Message {
        package var sid: UnsafeRawBufferPointer
        package var type: UnsafeRawBufferPointer
        package var body: UnsafeRawBufferPointer
    }

    /// Outcome of one receive.
    package enum Received {
        case message(Message)
        /// A message without exactly 3 frames; fully drained.
        case malformed(frameCount: Int)
    }

    /// Readiness of one dealer after `poll`.
    package struct Readiness: Equatable, Sendable {
        package var message = false
        package var event = false
    }

    /// Creates the sockets and starts connecting (libzmq connects and reconnects in the background).
    ///
    /// - Parameters:
    ///   - identity: the ZeroMQ routing identity (the node name), 1...255 bytes, not starting with a 0 byte.
    ///   - lingerMilliseconds: how long `close` may wait for unsent messages.
    ///   - sendTimeoutMilliseconds: how long `send` may block while the gateway's queue is full.
    package init(
        identity: [UInt8], endpoint: String, lingerMilliseconds: Int32 = 1000, sendTimeoutMilliseconds: Int32 = 2000,
        reconnectMilliseconds: Int32 = 100, maxReconnectMilliseconds: Int32 = 2000
    ) throws(ZMQError) {
        guard let context = zmq_ctx_new() else { throw ZMQError(call: "zmq_ctx_new", errno: zmq_errno()) }
        guard let socket = zmq_socket(context, ZMQ_DEALER) else {
            let e = zmq_errno()
            zmq_ctx_term(context)
            throw ZMQError(call: "zmq_socket(DEALER)", errno: e)
        }
        guard let monitor = zmq_socket(context, ZMQ_PAIR) else {
            let e = zmq_errno()
            zmq_close(socket)
            zmq_ctx_term(context)
            throw ZMQError(call: "zmq_socket(PAIR)", errno: e)
        }
        self.context = context
        self.socket = socket
        self.monitor = monitor
        self.endpoint = endpoint
        do throws(ZMQError) {
            let set = identity.withUnsafeBytes { zmq_setsockopt(socket, ZMQ_ROUTING_ID, $0.baseAddress, $0.count) }
            if set != 0 { throw ZMQError(call: "zmq_setsockopt(ZMQ_ROUTING_ID)", errno: zmq_errno()) }
            try setOption(socket, ZMQ_LINGER, lingerMilliseconds)
            try setOption(socket, ZMQ_SNDTIMEO, sendTimeoutMilliseconds)
            try setOption(socket, ZMQ_RECONNECT_IVL, reconnectMilliseconds)
            try setOption(socket, ZMQ_RECONNECT_IVL_MAX, maxReconnectMilliseconds)
            try setOption(monitor, ZMQ_LINGER, 0)
            // The monitor must be attached before connecting, or the first handshake could be missed.
            // The address only has to be unique within this dealer's own context.
            let address = "inproc://blastbeat-dealer-monitor"
            let events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED
            if zmq_socket_monitor(socket, address, events) != 0 {
                throw ZMQError(call: "zmq_socket_monitor", errno: zmq_errno())
            }
            if zmq_connect(monitor, address) != 0 {
                throw ZMQError(call: "zmq_connect(\(address))", errno: zmq_errno())
            }
            if zmq_connect(socket, endpoint) != 0 {
                throw ZMQError(call: "zmq_connect(\(endpoint))", errno: zmq_errno())
            }
        } catch {
            close()
            throw error
        }
    }

    deinit {
        close()
    }

    private func setOption(_ target: UnsafeMutableRawPointer, _ option: Int32, _ value: Int32) throws(ZMQError) {
        var v = value
        if zmq_setsockopt(target, option, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError(call: "zmq_setsockopt(\(option))", errno: zmq_errno())
        }
    }

    /// Waits until one of `dealers` has a message or a monitor event, or `timeoutMilliseconds` pass
    /// (-1: forever, 0: just look). Returns one entry per dealer. A signal interrupting the wait returns
    /// early with nothing ready (so the caller can look at its stop flag).
    package static func poll(_ dealers: [ZMQDealer], timeoutMilliseconds: Int) throws(ZMQError) -> [Readiness] {
        var items: [zmq_pollitem_t] = []
        items.reserveCapacity(2 * dealers.count)
        for dealer in dealers {
            precondition(!dealer.closed, "poll on a closed ZMQDealer")
            items.append(zmq_pollitem_t(socket: dealer.socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
            items.append(zmq_pollitem_t(socket: dealer.monitor, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
        }
        let count = items.count
        let result = items.withUnsafeMutableBufferPointer {
            zmq_poll($0.baseAddress, Int32(count), timeoutMilliseconds)
        }
        var ready = [Readiness](repeating: Readiness(), count: dealers.count)
        if result < 0 {
            let e = zmq_errno()
            if e == EINTR { return ready }
            throw ZMQError(call: "zmq_poll", errno: e)
        }
        for i in dealers.indices {
            ready[i].message = items[2 * i].revents & Int16(ZMQ_POLLIN) != 0
            ready[i].event = items[2 * i + 1].revents & Int16(ZMQ_POLLIN) != 0
        }
        return ready
    }

    /// Receives one whole multipart message without blocking; nil when none is queued.
    package func receive() -> Received? {
        precondition(!closed, "receive on a closed ZMQDealer")
        guard let count = frames.receive(from: socket) else { return nil }
        if count != 3 { return .malformed(frameCount: count) }
        return .message(Message(sid: frames.view(0), type: frames.view(1), body: frames.view(2)))
    }



    /// Drains the monitor without blocking and reports what happened since the last call.
    package func connectionEvents() -> ConnectionEvents {
        precondition(!closed, "connectionEvents on a closed ZMQDealer")
        var result = ConnectionEvents()
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        while true {
            // Each event is two frames: (uint16 event, uint32 value) in host order, then the endpoint.
            guard zmq_msg_recv(&message, monitor, ZMQ_DONTWAIT) >= 0 else { return result }
            if zmq_msg_size(&message) >= 2 {
                let event = UnsafeRawPointer(zmq_msg_data(&message)!).loadUnaligned(as: UInt16.self)
                if Int32(event) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED { result.connected = true }
                if Int32(event) == ZMQ_EVENT_DISCONNECTED { result.disconnected = true }
            }
            while zmq_msg_more(&message) != 0 {
                if zmq_msg_recv(&message, monitor, 0) < 0 { break }
            }
        }
    }

    /// Outcome of a send.
    package enum SendResult: Equatable, Sendable {
        case sent
        /// The queue to the gateway stayed full for the send timeout (or, with `wait: false`, was full);
        /// nothing was sent.
        case full
    }

    /// Sends [sid, type, body]. Blocks at most the send timeout while the queue to the gateway is full
    /// (libzmq queues messages while disconnected, up to the high-water mark); with `wait: false` never blocks.
    /// libzmq accepts or refuses a multipart message as a whole at its first frame, so a refused send
    /// leaves nothing behind.
    package func send(
        sid: UnsafeRawBufferPointer, type: StaticString, body: UnsafeRawBufferPointer, wait: Bool = true
    ) throws(ZMQError) -> SendResult {
        precondition(!closed, "send on a closed ZMQDealer")
        let flags: Int32 = wait ? 0 : ZMQ_DONTWAIT
        while zmq_send(socket, sid.baseAddress, sid.count, ZMQ_SNDMORE | flags) < 0 {
            let e = zmq_errno()
            if e == EINTR { continue }
            if e == EAGAIN { return .full }
            throw ZMQError(call: "zmq_send", errno: e)
        }
        try sendRest(type.utf8Start, type.utf8CodeUnitCount, more: true)
        try sendRest(body.baseAddress, body.count, more: false)
        return .sent
    }

    private func sendRest(_ bytes: UnsafeRawPointer?, _ count: Int, more: Bool) throws(ZMQError) {
        while zmq_send(socket, bytes, count, more ? ZMQ_SNDMORE : 0) < 0 {
            let e = zmq_errno()
            if e == EINTR { continue }
            throw ZMQError(call: "zmq_send", errno: e)
        }
    }

    /// Closes the sockets and the context; unsent messages get up to the linger time to go out.
    package func close() {
        if closed { return }
        closed = true
        frames.release()
        zmq_socket_monitor(socket, nil, 0)
        zmq_close(monitor)
        zmq_close(socket)
        zmq_ctx_term(context)
    }
}
