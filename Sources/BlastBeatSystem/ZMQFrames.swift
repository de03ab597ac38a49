internal import CZeroMQ
import Glibc

/// Reusable `zmq_msg_t` storage for receiving one multipart message at a time, shared by the
/// ROUTER and DEALER wrappers.
///
/// Holds `expected` frames plus one scratch frame that absorbs the surplus frames of a malformed
/// message, so a message is always drained whole (a partial drain would shift the next message's
/// frames: the original did that, which let a backend forge the identity frame of the next message).
/// Views returned by `view` stay valid until the next `receive`.
final class ZMQFrames {
    private let frames: UnsafeMutablePointer<zmq_msg_t>
    private let capacity: Int
    private var held = 0

    init(expected: Int) {
        capacity = expected + 1
        frames = .allocate(capacity: capacity)
        for i in 0..<capacity { zmq_msg_init(frames + i) }
    }

    deinit {
        for i in 0..<capacity { zmq_msg_close(frames + i) }
        frames.deallocate()
    }

    /// Receives every frame of the next message without blocking; returns how many it had, or
    /// nil when no message is queued. Only the first `expected` frames are kept for `view`.
    func receive(from socket: UnsafeMutableRawPointer) -> Int? {
        release()
        var count = 0
        while true {
            let target = frames + min(count, capacity - 1)
            if zmq_msg_recv(target, socket, count == 0 ? ZMQ_DONTWAIT : 0) < 0 {
                let e = zmq_errno()
                if e == EINTR { continue }
                if count == 0 { return nil }
                break  // a failure mid-message: the caller treats what arrived as malformed
            }
            count += 1
            held = min(count, capacity)
            if zmq_msg_more(target) == 0 { break }
        }
        return count
    }

    func view(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(frames + i), count: zmq_msg_size(frames + i))
    }

    /// A metadata property of frame `i` ("User-Id", "Peer-Address"), as bytes valid until the next `receive`.
    func property(_ i: Int, _ name: String) -> UnsafeRawBufferPointer? {
        guard let value = zmq_msg_gets(frames + i, name) else { return nil }
        return UnsafeRawBufferPointer(start: value, count: strlen(value))
    }

    /// Gives the received payloads back to libzmq.
    func release() {
        for i in 0..<held {
            zmq_msg_close(frames + i)
            zmq_msg_init(frames + i)
        }
        held = 0
    }
}
