internal import COpenSSL
import Glibc

/// One certificate chain and its private key, loaded from PEM files and checked at load time, so
/// that a bad file is a configuration error at startup (or SIGHUP) instead of a failing handshake.
///
/// `certificateFile` holds the leaf certificate first, then any intermediates (they are all sent to
/// the client; the original sent the leaf only); other PEM blocks in it are skipped, so a combined
/// cert+key file works for both arguments. Keys must not be encrypted (there is nobody to type a passphrase).
///
/// Immutable once loaded. Connections take their own references to the X509/EVP_PKEY objects
/// (`SSL_use_cert_and_key` up-refs them), so dropping a `TLSCertificate` after a reload does not
/// affect connections that were using it.
package final class TLSCertificate {
    /// X509*, the leaf certificate. Owned: freed in deinit.
    let certificate: OpaquePointer
    /// STACK_OF(X509)*, the intermediates (possibly empty). Owned with its elements: freed in deinit.
    let chain: OpaquePointer
    /// EVP_PKEY*. Owned: freed in deinit.
    let privateKey: OpaquePointer

    package let certificateFile: String
    package let keyFile: String
    /// DNS subjectAltNames and hostname-like subject CNs, lowercased, for SNI matching; wildcards
    /// stay as written ("*.example.com").
    package let names: [String]
    /// Number of intermediate certificates sent after the leaf.
    package var chainLength: Int { Int(COpenSSL_sk_X509_num(chain)) }

    package init(certificateFile: String, keyFile: String, files: FileSource = .direct) throws(TLSError) {
        TLSError.clearQueue()
        let leaf: OpaquePointer
        let chain: OpaquePointer
        do throws(TLSError) {
            (leaf, chain) = try Self.readCertificates(certificateFile, files)
        } catch {
            var error = error
            error.file = .certificate
            throw error
        }
        let key: OpaquePointer
        do throws(TLSError) {
            key = try Self.readPrivateKey(keyFile, files)
        } catch {
            X509_free(leaf)
            COpenSSL_sk_X509_pop_free(chain)
            var error = error
            error.file = .key
            throw error
        }
        self.certificate = leaf
        self.chain = chain
        self.privateKey = key
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.names = Self.hostNames(of: leaf)
        // From here on deinit frees the three objects if we throw.
        if X509_check_private_key(leaf, key) != 1 {
            var error = TLSError("key in \(keyFile) does not match certificate in \(certificateFile)")
            error.file = .key
            throw error
        }
    }

    deinit {
        X509_free(certificate)
        COpenSSL_sk_X509_pop_free(chain)
        EVP_PKEY_free(privateKey)
    }

    // MARK: Loading

    /// PEM files larger than this are not certificates or keys (a chain of ten 4096-bit certificates
    /// is about 20 KiB).
    private static let maximumFileSize = 1 << 20

    /// The whole file ("cannot read FILE: Is a directory"), from the file system or the privileged parent's copy.
    private static func readFile(_ path: String, _ files: FileSource) throws(TLSError) -> [UInt8] {
        do { return try files.read(path, limit: maximumFileSize) } catch {
            if error.errno == EFBIG {
                throw TLSError("\(path) is larger than \(maximumFileSize) bytes: not a PEM certificate or key")
            }
            throw TLSError("cannot read \(path): " + String(cString: strerror(error.errno)))
        }
    }

    /// A memory BIO holding a copy of `contents`; the caller frees it.
    private static func memoryBIO(_ contents: [UInt8]) throws(TLSError) -> OpaquePointer {
        guard let bio = BIO_new(BIO_s_mem()) else { throw TLSError("out of memory") }
        // Reading past the end is end of file (PEM's "no start line"), not "retry later".
        _ = COpenSSL_BIO_set_mem_eof_return(bio, 0)
        let written = contents.withUnsafeBytes { BIO_write(bio, $0.baseAddress, Int32($0.count)) }
        if Int(written) != contents.count {
            BIO_free(bio)
            throw TLSError("out of memory")
        }
        return bio
    }

    /// Whether the text holds a PEM block whose label ends with `label` ("-----BEGIN ... PRIVATE KEY-----").
    private static func containsPEMBlock(_ contents: [UInt8], labelSuffix: String) -> Bool {
        let marker = Array((labelSuffix + "-----").utf8)
        let begin = Array("-----BEGIN ".utf8)
        var i = 0
        while let start = find(begin, in: contents, from: i) {
            // The label runs to the end of the line.
            var end = start + begin.count
            while end < contents.count && contents[end] != UInt8(ascii: "\n") && contents[end] != UInt8(ascii: "\r") {
                end += 1
            }
            if end - start >= begin.count + marker.count, Array(contents[(end - marker.count)..<end]) == marker {
                return true
            }
            i = end
        }
        return false
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        for i in from...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }

    private static func readCertificates(_ path: String, _ files: FileSource) throws(TLSError) -> (OpaquePointer, OpaquePointer) {
        let contents = try readFile(path, files)
        if !containsPEMBlock(contents, labelSuffix: "CERTIFICATE") {
            throw TLSError("no certificate found in \(path)")
        }
        let bio = try memoryBIO(contents)
        defer { BIO_free(bio) }
        guard let leaf = PEM_read_bio_X509(bio, nil, refusePassphrase, nil) else {
            throw TLSError("cannot parse the certificate in \(path)")
        }
        guard let chain = COpenSSL_sk_X509_new_null() else {
            X509_free(leaf)
            throw TLSError("out of memory loading \(path)")
        }
        while true {
            guard let next = PEM_read_bio_X509(bio, nil, refusePassphrase, nil) else {
                // No further CERTIFICATE block is the normal end of the chain.
                let code = ERR_peek_last_error()
                if ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE {
                    TLSError.clearQueue()
                    return (leaf, chain)
                }
                let index = COpenSSL_sk_X509_num(chain) + 2
                X509_free(leaf)
                COpenSSL_sk_X509_pop_free(chain)
                throw TLSError("cannot parse certificate #\(index) of the chain in \(path)")
            }
            if COpenSSL_sk_X509_push(chain, next) <= 0 {
                X509_free(next)
                X509_free(leaf)
                COpenSSL_sk_X509_pop_free(chain)
                throw TLSError("out of memory loading \(path)")
            }
        }
    }

    private static func readPrivateKey(_ path: String, _ files: FileSource) throws(TLSError) -> OpaquePointer {
        let contents = try readFile(path, files)
        if !containsPEMBlock(contents, labelSuffix: "PRIVATE KEY") {
            throw TLSError("no private key found in \(path)")
        }
        let bio = try memoryBIO(contents)
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, refusePassphrase, nil) else {
            if containsPEMBlock(contents, labelSuffix: "ENCRYPTED PRIVATE KEY")
                || find(Array("Proc-Type: 4,ENCRYPTED".utf8), in: contents, from: 0) != nil
            {
                var error = TLSError("the private key in \(path) is encrypted; store it without a passphrase")
                error.openSSLErrors = []
                throw error
            }
            throw TLSError("cannot parse the private key in \(path)")
        }
        return key
    }

    // MARK: Names

    private static func hostNames(of certificate: OpaquePointer) -> [String] {
        var names: [String] = []
        func add(_ string: UnsafePointer<ASN1_STRING>?) {
            guard let string, let name = hostName(string), !names.contains(name) else { return }
            names.append(name)
        }
        if let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) {
            let sans = OpaquePointer(raw)
            for i in 0..<COpenSSL_sk_GENERAL_NAME_num(sans) {
                add(COpenSSL_GENERAL_NAME_dns(sans, i))
            }
            GENERAL_NAMES_free(sans)
        }
        if let subject = X509_get_subject_name(certificate) {
            var index: Int32 = -1
            while true {
                index = X509_NAME_get_index_by_NID(subject, NID_commonName, index)
                if index < 0 { break }
                add(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)))
            }
        }
        TLSError.clearQueue()
        return names
    }

    /// The string as a lowercased host name, or nil when it cannot be one (a CN such as
    /// "Example Corp", or bytes outside printable ASCII).
    private static func hostName(_ string: UnsafePointer<ASN1_STRING>) -> String? {
        let count = Int(ASN1_STRING_length(string))
        guard count > 0, count <= 253, let data = ASN1_STRING_get0_data(string) else { return nil }
        var bytes = [UInt8](UnsafeBufferPointer(start: data, count: count))
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        for (i, b) in bytes.enumerated() {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
                continue
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                bytes[i] = b + 32
            case UInt8(ascii: "*"):
                continue
            default:
                return nil
            }
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }
}

/// Passphrase callback that refuses, so OpenSSL never prompts on the terminal (which would block
/// the process at startup or SIGHUP) and an encrypted key fails to load instead.
private func refusePassphrase(
    _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int32, _ rwflag: Int32, _ userdata: UnsafeMutableRawPointer?
) -> Int32 {
    -1
}
