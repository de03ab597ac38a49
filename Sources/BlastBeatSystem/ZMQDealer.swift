internal import BlastBeatCore
internal import CZeroMQ
import Glibc

/// A backend node's DEALER socket connected to one gateway (one of the node's connections to it, labelled
/// for one gateway worker with `metadata`), for the backend SDK (`BlastBeatBackend`).
///
/// Each dealer owns its libzmq context, its DEALER socket and a PAIR socket that receives the DEALER's
/// monitor events over `inproc`: the node must learn when a (re)connection's handshake has completed, because
/// it announces itself then (an instance identity `NAME#x` is unknown to a gateway until it hears from it),
/// and why a handshake failed (with CURVE, a wrong server key looks like nothing at all otherwise: libzmq
/// just reconnects, forever).
///
/// One context per dealer costs one libzmq I/O thread per connection (a node keeps one per gateway worker),
/// which keeps the dealers fully independent (closing one never waits for another's linger).
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
    /// Where the current connection attempt is, from the monitor events seen so far.
    private var attempt = Attempt.none

    /// libzmq reports a connection that ends during its handshake as a bare DISCONNECTED when the peer
    /// sent a ZMTP ERROR with a reason other than a ZAP status code: no failure event at all, and no
    /// reconnection either. Following each attempt is the only way to notice.
    private enum Attempt {
        /// No transport connection.
        case none
        /// Connected; ZMTP (and CURVE) handshake under way.
        case handshaking
        /// The handshake failed and was reported; the DISCONNECTED that follows is no news.
        case failed
        case established
    }

    /// One event from the monitor, in the order libzmq reported them.
    package enum ConnectionEvent: Equatable, Sendable {
        /// A transport connection is up and its ZMTP handshake begins (libzmq's own retry, or `reconnect()`).
        case handshakeStarted
        /// A connection's handshake completed (first connection or a reconnection; with CURVE, the keys
        /// were accepted).
        case connected
        /// An established connection was lost; libzmq reconnects by itself.
        case disconnected
        /// A connection's ZMTP handshake failed (whether libzmq tries again: `HandshakeFailure.endsConnecting`).
        case handshakeFailed(HandshakeFailure)
    }

    /// Why a handshake failed, from libzmq's monitor event and its value.
    package enum HandshakeFailure: Equatable, Sendable, CustomStringConvertible {
        /// The peer closed the connection during the handshake. A CURVE gateway does this when it cannot open
        /// our HELLO, i.e. when our server key is not its public key. (libzmq's errno for it, EPIPE or EAGAIN
        /// depending on timing, says nothing more, so it is not kept: retries of one failure compare equal.)
        case closed
        /// The two sides speak different security mechanisms (CURVE on one side only).
        case mechanismMismatch
        /// Another ZMTP protocol error (`ZMQ_PROTOCOL_ERROR_*` code).
        case protocolError(code: UInt32)
        /// The gateway refused our credentials (the ZAP status code, e.g. 400): our public key is not
        /// allowed for this identity.
        case refused(status: UInt32)
        /// The connection ended during the handshake without a failure event: the peer sent a ZMTP ERROR
        /// whose reason is not a ZAP status code (BlastBeat's gateway refusing a node key does this), which
        /// libzmq does not pass on.
        case ended

        package var description: String {
            switch self {
            case .closed:
                "the gateway closed the connection during the handshake"
            case .mechanismMismatch:
                "the gateway uses a different security mechanism (CURVE on one side only)"
            case .protocolError(let code):
                "ZMTP protocol error 0x\(String(code, radix: 16))"
            case .refused(let status):
                "the gateway refused this node's key (status \(status))"
            case .ended:
                "the gateway ended the handshake (libzmq does not say why)"
            }
        }

        /// Whether libzmq gives the endpoint up after this failure. It reconnects by itself only after
        /// connection errors; after a protocol error or a refusal its session ends for good, and only
        /// `reconnect()` tries again (tested against libzmq 4.3).
        package var endsConnecting: Bool {
            switch self {
            case .closed: false
            case .mechanismMismatch, .protocolError, .refused, .ended: true
            }
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
    ///   - curve: makes the socket a CURVE client with these keys (nil: no security, ZMTP NULL). The keys are
    ///     set before connecting, so no message ever leaves in the clear.
    ///   - metadata: one ZMTP metadata property (`Name:value`) the socket sends in its READY (NULL) or
    ///     INITIATE (CURVE) command, e.g. the `X-BlastBeat-Worker` label (README.md, "Backend libraries").
    ///   - lingerMilliseconds: how long `close` may wait for unsent messages.
    ///   - sendTimeoutMilliseconds: how long `send` may block while the gateway's queue is full.
    package init(
        identity: [UInt8], endpoint: String, curve: ZMQCurve.ClientKeys? = nil, metadata: String? = nil,
        lingerMilliseconds: Int32 = 1000, sendTimeoutMilliseconds: Int32 = 2000,
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
            if let metadata {
                let set = metadata.withCString { zmq_setsockopt(socket, Self.metadataOption, $0, strlen($0)) }
                if set != 0 { throw ZMQError(call: "zmq_setsockopt(ZMQ_METADATA)", errno: zmq_errno()) }
            }
            if let curve {
                // Setting the server key is what makes the socket a CURVE client; all three are 32 binary bytes.
                try setKey(socket, ZMQ_CURVE_SERVERKEY, curve.serverKey, name: "ZMQ_CURVE_SERVERKEY")
                try setKey(socket, ZMQ_CURVE_PUBLICKEY, curve.publicKey, name: "ZMQ_CURVE_PUBLICKEY")
                try setKey(socket, ZMQ_CURVE_SECRETKEY, curve.secretKey, name: "ZMQ_CURVE_SECRETKEY")
            }
            try setOption(monitor, ZMQ_LINGER, 0)
            // The monitor must be attached before connecting, or the first handshake could be missed.
            // The address only has to be unique within this dealer's own context.
            let address = "inproc://blastbeat-dealer-monitor"
            let events =
                ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED
                | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
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

    /// `ZMQ_METADATA`: a draft option in libzmq 4.3, so zmq.h declares it only with `ZMQ_BUILD_DRAFT_API`;
    /// the library accepts it all the same (Debian's 4.3.4 and 4.3.5 do: Tests/SDKTests/test_sdk_swift_workers.py).
    private static let metadataOption: Int32 = 95

    private func setOption(_ target: UnsafeMutableRawPointer, _ option: Int32, _ value: Int32) throws(ZMQError) {
        var v = value
        if zmq_setsockopt(target, option, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError(call: "zmq_setsockopt(\(option))", errno: zmq_errno())
        }
    }

    private func setKey(_ target: UnsafeMutableRawPointer, _ option: Int32, _ key: CurveKey, name: String)
        throws(ZMQError)
    {
        let set = key.bytes.withUnsafeBytes { zmq_setsockopt(target, option, $0.baseAddress, $0.count) }
        if set != 0 { throw ZMQError(call: "zmq_setsockopt(\(name))", errno: zmq_errno()) }
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

    /// A metadata property of the connection the last received message came in on (the peer's READY or
    /// INITIATE properties, e.g. `X-BlastBeat-Workers`); nil when the peer did not send it. Valid until the
    /// next `receive`.
    package func receivedProperty(_ name: String) -> UnsafeRawBufferPointer? {
        precondition(!closed, "receivedProperty on a closed ZMQDealer")
        return frames.property(0, name)
    }

    /// Connects to the endpoint anew, for after a failure that `endsConnecting`.
    package func reconnect() throws(ZMQError) {
        precondition(!closed, "reconnect on a closed ZMQDealer")
        // ENOENT when libzmq has dropped the endpoint already; the connect below is what matters.
        _ = zmq_disconnect(socket, endpoint)
        if zmq_connect(socket, endpoint) != 0 {
            throw ZMQError(call: "zmq_connect(\(endpoint))", errno: zmq_errno())
        }
    }

    /// Drains the monitor without blocking and reports what happened since the last call, oldest first.
    package func connectionEvents() -> [ConnectionEvent] {
        precondition(!closed, "connectionEvents on a closed ZMQDealer")
        var result: [ConnectionEvent] = []
        var storage = zmq_msg_t()
        // One pointer for every call: a `&storage` argument is valid only during its call, and a small
        // message's data lies inside the zmq_msg_t itself (zmq_msg_data points into it).
        return withUnsafeMutablePointer(to: &storage) { message in
            zmq_msg_init(message)
            defer { zmq_msg_close(message) }
            while true {
                // Each event is two frames: (uint16 event, uint32 value) in host order, then the endpoint.
                guard zmq_msg_recv(message, monitor, ZMQ_DONTWAIT) >= 0 else { return result }
                if zmq_msg_size(message) >= 6 {
                    let data = UnsafeRawPointer(zmq_msg_data(message)!)
                    let event = Int32(data.loadUnaligned(as: UInt16.self))
                    let value = data.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
                    if let reported = attemptEvent(event, value: value) { result.append(reported) }
                }
                while zmq_msg_more(message) != 0 {
                    if zmq_msg_recv(message, monitor, 0) < 0 { break }
                }
            }
        }
    }

    /// Follows the current attempt through one monitor event; returns what to report, if anything.
    private func attemptEvent(_ event: Int32, value: UInt32) -> ConnectionEvent? {
        let failure: HandshakeFailure
        switch event {
        case ZMQ_EVENT_CONNECTED:
            attempt = .handshaking
            return .handshakeStarted
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            attempt = .established
            return .connected
        case ZMQ_EVENT_DISCONNECTED:
            defer { attempt = .none }
            switch attempt {
            case .established: return .disconnected
            case .handshaking: return .handshakeFailed(.ended)
            case .failed, .none: return nil
            }
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            failure = .closed
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            failure =
                value == UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
                ? .mechanismMismatch : .protocolError(code: value)
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            failure = .refused(status: value)
        default:
            return nil  // not subscribed to
        }
        attempt = .failed
        return .handshakeFailed(failure)
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

    /// Closes the sockets and the context; unsent messages get up to the linger time to go out, or none with
    /// `discardingUnsent` (a connection the gateway no longer has a worker for: nobody would read them, and
    /// the node's loop would wait the linger time).
    package func close(discardingUnsent: Bool = false) {
        if closed { return }
        if discardingUnsent { try? setOption(socket, ZMQ_LINGER, 0) }
        closed = true
        frames.release()
        zmq_socket_monitor(socket, nil, 0)
        zmq_close(monitor)
        zmq_close(socket)
        zmq_ctx_term(context)
    }
}
