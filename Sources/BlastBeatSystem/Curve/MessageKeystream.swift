internal import CSodium

/// The Salsa20 keystream of one direction of a CURVE connection's MESSAGEs: its subkey (see
/// `CurveCrypto.messageSubkey`), and keystream blocks computed four at a time (`Salsa20.blocks`) and kept
/// until the frames they belong to are sealed or opened.
///
/// Why a cache: a message is three frames, each sealed under its own nonce, and most frames need one or two
/// blocks. So when a block is missing, the four lanes compute it, the next blocks of its frame, and then the
/// first blocks of the two frames after it (nonces n + 1 and n + 2): the rest of the message, in one pass
/// instead of one per block. A guess that turns out wrong costs nothing but the lane. Each block is wiped as
/// it is used; nonces never repeat, so no block is used twice. Long streams (512 bytes and more) go to
/// libsodium, whose eight-block code is faster there.
package final class MessageKeystream {
    /// Subkey (32 bytes), then four 64-byte blocks.
    private let storage: UnsafeMutableRawPointer
    private static let storageSize = 32 + 4 * Salsa20.blockSize
    /// What each lane holds: (nonce, counter), and whether it is still unused.
    private var nonces = SIMD4<UInt64>(repeating: 0)
    private var counters = SIMD4<UInt64>(repeating: 0)
    private var kept = SIMD4<UInt64>(repeating: 0)  // all ones: unused block

    /// Rest of a frame's stream, in bytes, from which libsodium computes it instead of the lanes.
    private static let longStream = 512

    /// The stream of the MESSAGEs whose nonces start with `noncePrefix`, under the precomputed key `shared`.
    package init(shared: UnsafeRawPointer, noncePrefix: StaticString) {
        storage = .allocate(byteCount: Self.storageSize, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: Self.storageSize)
        CurveCrypto.messageSubkey(shared: shared, noncePrefix: noncePrefix.utf8Start, into: storage)
    }

    deinit {
        sodium_memzero(storage, Self.storageSize)
        storage.deallocate()
    }

    /// XORs `count` bytes at `text` with the stream of `nonce` from byte 32 on (block 0's last 32 bytes,
    /// then blocks 1, 2, ...). `useBlock0` sees block 0 first (its first 32 bytes key Poly1305); when it
    /// returns false nothing is XORed and false is returned.
    package func xor(
        _ text: UnsafeMutableRawPointer, count: Int, nonce: UInt64, useBlock0: (_ block0: UnsafeRawPointer) -> Bool
    ) -> Bool {
        let lastBlock = UInt64((32 + count + Salsa20.blockSize - 1) / Salsa20.blockSize - 1)
        var lane = self.lane(nonce: nonce, counter: 0, lastBlock: lastBlock)
        var block = storage + 32 + lane * Salsa20.blockSize
        guard useBlock0(UnsafeRawPointer(block)) else {
            take(lane)
            return false
        }
        let head = min(count, 32)
        Self.xor(text, block + 32, count: head)
        take(lane)
        var offset = head
        var counter: UInt64 = 1
        while offset < count {
            let rest = count - offset
            if rest >= Self.longStream {
                withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 1) { nonceBytes in
                    nonceBytes[0] = nonce.bigEndian
                    _ = crypto_stream_salsa20_xor_ic(
                        (text + offset).assumingMemoryBound(to: UInt8.self), (text + offset).assumingMemoryBound(to: UInt8.self),
                        UInt64(rest), UnsafeRawPointer(nonceBytes.baseAddress!).assumingMemoryBound(to: UInt8.self), counter,
                        storage.assumingMemoryBound(to: UInt8.self))
                }
                return true
            }
            lane = self.lane(nonce: nonce, counter: counter, lastBlock: lastBlock)
            block = storage + 32 + lane * Salsa20.blockSize
            Self.xor(text + offset, block, count: min(rest, Salsa20.blockSize))
            take(lane)
            offset += Salsa20.blockSize
            counter += 1
        }
        return true
    }

    /// The lane holding block `counter` of `nonce`, computing it first (with the blocks after it, up to the
    /// frame's `lastBlock`, then the next two frames' first blocks) when no lane does.
    private func lane(nonce: UInt64, counter: UInt64, lastBlock: UInt64) -> Int {
        let hit = (nonces .== SIMD4(repeating: nonce)) .& (counters .== SIMD4(repeating: counter))
            .& (kept .== SIMD4(repeating: UInt64.max))
        for lane in 0..<4 where hit[lane] { return lane }
        var wanted = 0
        var n = nonce, c = counter
        while wanted < 4 {
            nonces[wanted] = n
            counters[wanted] = c
            wanted += 1
            if n == nonce && c < lastBlock {
                c += 1
            } else if n == nonce {
                (n, c) = (nonce &+ 1, 0)  // the next frame's block 0
            } else {
                (n, c) = n == nonce &+ 1 ? (nonce &+ 2, 0) : (n, c + 1)  // then the frame after it
            }
        }
        // The lanes' nonce words: the 8 nonce bytes as sent (big-endian), read little-endian.
        var words = SIMD4<UInt64>(repeating: 0)
        for lane in 0..<4 { words[lane] = UInt64(littleEndian: nonces[lane].bigEndian) }
        Salsa20.blocks(key: storage, nonces: words, counters: counters, count: 4, into: storage + 32)
        kept = SIMD4(repeating: UInt64.max)
        return 0
    }

    /// Wipes a used block and marks its lane empty.
    @inline(__always)
    private func take(_ lane: Int) {
        sodium_memzero(storage + 32 + lane * Salsa20.blockSize, Salsa20.blockSize)
        kept[lane] = 0
    }

    @inline(__always)
    private static func xor(_ text: UnsafeMutableRawPointer, _ stream: UnsafeRawPointer, count: Int) {
        var i = 0
        while i + 8 <= count {
            let word = text.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ stream.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            text.storeBytes(of: word, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            text.storeBytes(of: text.load(fromByteOffset: i, as: UInt8.self) ^ stream.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }
}
