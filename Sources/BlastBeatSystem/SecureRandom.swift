import Glibc

/// Cryptographically random bytes from the kernel, fetched in blocks so that a new session id
/// costs no system call in the common case.
package struct SecureRandom {
    private var pool = [UInt8](repeating: 0, count: 4096)
    private var index = 4096

    package init() {}

    /// Sixteen fresh random bytes as two words.
    package mutating func next128() -> (UInt64, UInt64) {
        if index + 16 > pool.count { refill() }
        let words = pool.withUnsafeBytes { raw in
            (raw.loadUnaligned(fromByteOffset: index, as: UInt64.self),
             raw.loadUnaligned(fromByteOffset: index + 8, as: UInt64.self))
        }
        index += 16
        return words
    }

    /// `count` fresh random bytes (TLS ticket keys, a WebSocket key).
    package mutating func bytes(_ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            if index == pool.count { refill() }
            let n = min(count - result.count, pool.count - index)
            result += pool[index..<index + n]
            index += n
        }
        return result
    }

    private mutating func refill() {
        // /dev/urandom never blocks once the kernel is seeded and is always present on Linux.
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if fd < 0 { fatalError("cannot open /dev/urandom: errno \(errno); session ids would not be random") }
        defer { close(fd) }
        var filled = 0
        pool.withUnsafeMutableBytes { raw in
            while filled < raw.count {
                let n = read(fd, raw.baseAddress! + filled, raw.count - filled)
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    fatalError("reading /dev/urandom failed: errno \(errno)")
                }
                filled += n
            }
        }
        index = 0
    }
}
