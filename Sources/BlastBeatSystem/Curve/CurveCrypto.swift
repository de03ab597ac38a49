package import BlastBeatCore
internal import CSodium

/// The libsodium calls CurveZMQ needs (crypto_box: Curve25519 + XSalsa20 + Poly1305, and
/// crypto_secretbox for the cookie), the only file that touches libsodium. Nonces are 24 bytes,
/// keys 32, MACs 16; the `_easy` forms put the MAC in front of the ciphertext and work in place
/// (libsodium moves overlapping input first), which the message path relies on.
package enum CurveCrypto {
    package static let macSize = 16
    package static let nonceSize = 24
    package static let keySize = 32

    /// libsodium must be initialised once before use (it picks implementations and seeds its RNG).
    private static let initialised: Bool = sodium_init() >= 0

    /// A long-term or transient key pair.
    package struct KeyPair: Sendable {
        package var publicKey: CurveKey
        package var secretKey: CurveKey

        package init(publicKey: CurveKey, secretKey: CurveKey) {
            self.publicKey = publicKey
            self.secretKey = secretKey
        }

        /// A fresh random pair.
        package static func generate() -> KeyPair {
            precondition(initialised, "sodium_init failed")
            var publicKey = [UInt8](repeating: 0, count: keySize)
            var secretKey = [UInt8](repeating: 0, count: keySize)
            _ = crypto_box_keypair(&publicKey, &secretKey)
            return KeyPair(publicKey: CurveKey(bytes: publicKey)!, secretKey: CurveKey(bytes: secretKey)!)
        }

        /// Whether `secretKey` is the secret half of `publicKey` (a certificate file could pair them wrongly).
        package var isConsistent: Bool { CurveCrypto.publicKey(forSecret: secretKey) == publicKey }
    }

    /// The public key that belongs to a secret key (Curve25519 base-point multiplication).
    package static func publicKey(forSecret secretKey: CurveKey) -> CurveKey {
        precondition(initialised, "sodium_init failed")
        var derived = [UInt8](repeating: 0, count: keySize)
        _ = crypto_scalarmult_base(&derived, secretKey.bytes)
        return CurveKey(bytes: derived)!
    }

    package static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(initialised, "sodium_init failed")
        var bytes = [UInt8](repeating: 0, count: count)
        randombytes_buf(&bytes, count)
        return bytes
    }

    /// The shared key of a (their public, our secret) pair, for the `afternm` calls.
    package static func precompute(theirPublic: CurveKey, ourSecret: CurveKey) -> [UInt8]? {
        var shared = [UInt8](repeating: 0, count: keySize)
        return crypto_box_beforenm(&shared, theirPublic.bytes, ourSecret.bytes) == 0 ? shared : nil
    }

    /// Box[plaintext](our secret → their public): MAC + ciphertext.
    package static func box(_ plaintext: [UInt8], nonce: [UInt8], theirPublic: CurveKey, ourSecret: CurveKey) -> [UInt8]? {
        var sealed = [UInt8](repeating: 0, count: plaintext.count + macSize)
        let rc = crypto_box_easy(&sealed, plaintext, UInt64(plaintext.count), nonce, theirPublic.bytes, ourSecret.bytes)
        return rc == 0 ? sealed : nil
    }

    /// Opens a Box; nil when it does not authenticate.
    package static func open(_ sealed: UnsafeRawBufferPointer, nonce: [UInt8], theirPublic: CurveKey, ourSecret: CurveKey) -> [UInt8]? {
        guard sealed.count >= macSize, let source = sealed.baseAddress else { return nil }
        var plaintext = [UInt8](repeating: 0, count: sealed.count - macSize)
        let rc = crypto_box_open_easy(
            &plaintext, source.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count), nonce, theirPublic.bytes,
            ourSecret.bytes)
        return rc == 0 ? plaintext : nil
    }

    /// Box with a precomputed key.
    package static func box(_ plaintext: [UInt8], nonce: [UInt8], shared: [UInt8]) -> [UInt8] {
        var sealed = [UInt8](repeating: 0, count: plaintext.count + macSize)
        _ = crypto_box_easy_afternm(&sealed, plaintext, UInt64(plaintext.count), nonce, shared)
        return sealed
    }

    package static func open(_ sealed: UnsafeRawBufferPointer, nonce: [UInt8], shared: [UInt8]) -> [UInt8]? {
        guard sealed.count >= macSize, let source = sealed.baseAddress else { return nil }
        var plaintext = [UInt8](repeating: 0, count: sealed.count - macSize)
        let rc = crypto_box_open_easy_afternm(
            &plaintext, source.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count), nonce, shared)
        return rc == 0 ? plaintext : nil
    }

    // MARK: message stream

    /// The XSalsa20 subkey of a message direction. CurveZMQ's MESSAGE nonces are a fixed 16-byte prefix
    /// ("CurveZMQMESSAGEC" / "...S") plus an 8-byte counter, and XSalsa20 derives its Salsa20 key from the
    /// key and the nonce's first 16 bytes only (HSalsa20). So the derivation is done once per connection and
    /// direction instead of once per frame (it was a quarter of the CURVE cost per request in perf).
    package static func messageSubkey(shared: UnsafeRawPointer, noncePrefix: UnsafeRawPointer, into subkey: UnsafeMutableRawPointer) {
        _ = crypto_core_hsalsa20(
            subkey.assumingMemoryBound(to: UInt8.self), noncePrefix.assumingMemoryBound(to: UInt8.self),
            shared.assumingMemoryBound(to: UInt8.self), nil)
    }

    /// crypto_secretbox (XSalsa20-Poly1305) with the subkey above, in place: `count` plaintext bytes at
    /// `at + macSize` become ciphertext there, and the MAC is written at `at`. Byte for byte what
    /// `crypto_box_easy_afternm` produces for the full nonce (the unit tests open it with that).
    package static func sealInPlace(_ at: UnsafeMutableRawPointer, count: Int, shortNonce: UnsafeRawPointer, subkey: UnsafeRawPointer) {
        let text = (at + macSize).assumingMemoryBound(to: UInt8.self)
        withFirstBlock(shortNonce: shortNonce, subkey: subkey) { block in
            xorKeystream(text, count: count, firstBlock: block, shortNonce: shortNonce, subkey: subkey)
            Poly1305.authenticate(tag: at, message: text, count: count, key: block)
        }
    }

    /// Opens what `sealInPlace` made: MAC at `at`, `count` ciphertext bytes at `at + macSize`, which become
    /// the plaintext there. False, with the bytes left as they were, when the MAC does not match.
    package static func openInPlace(_ at: UnsafeMutableRawPointer, count: Int, shortNonce: UnsafeRawPointer, subkey: UnsafeRawPointer) -> Bool {
        let text = (at + macSize).assumingMemoryBound(to: UInt8.self)
        return withFirstBlock(shortNonce: shortNonce, subkey: subkey) { block in
            guard Poly1305.verify(tag: at, message: text, count: count, key: block) else {
                return false
            }
            xorKeystream(text, count: count, firstBlock: block, shortNonce: shortNonce, subkey: subkey)
            return true
        }
    }

    /// XSalsa20 en/decryption in place: block 0's first 32 bytes key Poly1305, its last 32 cover the first
    /// 32 bytes of the text, and the keystream from block 1 on covers the rest.
    @inline(__always)
    private static func xorKeystream(
        _ text: UnsafeMutablePointer<UInt8>, count: Int, firstBlock block: UnsafeMutablePointer<UInt8>,
        shortNonce: UnsafeRawPointer, subkey: UnsafeRawPointer
    ) {
        let head = min(count, 32)
        for i in 0..<head { text[i] ^= block[32 + i] }
        if count > head {
            _ = crypto_stream_salsa20_xor_ic(
                text + head, text + head, UInt64(count - head), shortNonce.assumingMemoryBound(to: UInt8.self), 1,
                subkey.assumingMemoryBound(to: UInt8.self))
        }
    }

    /// Salsa20 keystream block 0 for the nonce, on the stack and wiped after use.
    @inline(__always)
    private static func withFirstBlock<R>(shortNonce: UnsafeRawPointer, subkey: UnsafeRawPointer, _ body: (UnsafeMutablePointer<UInt8>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { block in
            let base = block.baseAddress!
            _ = crypto_stream_salsa20(
                base, 64, shortNonce.assumingMemoryBound(to: UInt8.self), subkey.assumingMemoryBound(to: UInt8.self))
            defer { sodium_memzero(base, 64) }
            return body(base)
        }
    }

    package static func secretBox(_ plaintext: [UInt8], nonce: [UInt8], key: [UInt8]) -> [UInt8] {
        var sealed = [UInt8](repeating: 0, count: plaintext.count + macSize)
        _ = crypto_secretbox_easy(&sealed, plaintext, UInt64(plaintext.count), nonce, key)
        return sealed
    }

    package static func secretOpen(_ sealed: UnsafeRawBufferPointer, nonce: [UInt8], key: [UInt8]) -> [UInt8]? {
        guard sealed.count >= macSize, let source = sealed.baseAddress else { return nil }
        var plaintext = [UInt8](repeating: 0, count: sealed.count - macSize)
        let rc = crypto_secretbox_open_easy(
            &plaintext, source.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count), nonce, key)
        return rc == 0 ? plaintext : nil
    }

    /// Overwrites secret material before its memory is given back.
    package static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { if let base = $0.baseAddress { sodium_memzero(base, $0.count) } }
    }
}
