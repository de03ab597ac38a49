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
    static func messageSubkey(shared: UnsafeRawPointer, noncePrefix: UnsafeRawPointer, into subkey: UnsafeMutableRawPointer) {
        _ = crypto_core_hsalsa20(
            subkey.assumingMemoryBound(to: UInt8.self), noncePrefix.assumingMemoryBound(to: UInt8.self),
            shared.assumingMemoryBound(to: UInt8.self), nil)
    }

    /// crypto_secretbox (XSalsa20-Poly1305) with a direction's subkey, in place: `count` plaintext bytes at
    /// `at + macSize` become ciphertext there, and the MAC is written at `at`. Byte for byte what
    /// `crypto_box_easy_afternm` produces for the full nonce (the unit tests open it with that).
    package static func sealInPlace(_ at: UnsafeMutableRawPointer, count: Int, nonce: UInt64, stream: MessageKeystream) {
        let text = at + macSize
        // The MAC is over the ciphertext: block 0's Poly1305 key is kept on the stack until the text is sealed.
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 4) { keyWords in
            let key = UnsafeMutableRawPointer(keyWords.baseAddress!)
            _ = stream.xor(text, count: count, nonce: nonce) { block0 in
                key.copyMemory(from: block0, byteCount: 32)
                return true
            }
            Poly1305.authenticate(tag: at, message: text, count: count, key: key)
            sodium_memzero(key, 32)
        }
    }

    /// Opens what `sealInPlace` made: MAC at `at`, `count` ciphertext bytes at `at + macSize`, which become
    /// the plaintext there. False, with the bytes left as they were, when the MAC does not match.
    package static func openInPlace(_ at: UnsafeMutableRawPointer, count: Int, nonce: UInt64, stream: MessageKeystream) -> Bool {
        let text = at + macSize
        return stream.xor(text, count: count, nonce: nonce) { block0 in
            Poly1305.verify(tag: at, message: text, count: count, key: block0)
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
