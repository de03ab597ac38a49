/// How the gateway is willing to use permessage-deflate (RFC 7692); the input to `PerMessageDeflateOffer.negotiate`.
package struct PerMessageDeflateConfiguration: Equatable, Sendable {
    /// Off: every offer is declined and no `Sec-WebSocket-Extensions` header is sent.
    package var isEnabled: Bool
    /// LZ77 window sizes (base-2 logarithm, within 8...15) the server's compressor may use. `upperBound` is what it
    /// uses unless the client asks for less; an offer with `server_max_window_bits` below `lowerBound` is declined.
    /// Each connection's deflate state costs about 2^(bits+2) bytes plus 2^(memLevel+9), so this bounds memory.
    package var allowedServerWindowBits: ClosedRange<Int>
    /// Always answer `server_no_context_takeover`: the compressor starts afresh for each message. Worse
    /// compression, but no message's contents can be inferred from the next one's size (CRIME-style attacks).
    package var serverNoContextTakeover: Bool
    /// Always answer `client_no_context_takeover` (ask the client to start afresh for each message).
    package var clientNoContextTakeover: Bool
    /// Largest client window accepted when the offer lets the server choose (`client_max_window_bits`); the
    /// inflater needs 2^bits bytes of window per connection.
    package var clientMaxWindowBits: Int

    package init(
        isEnabled: Bool = true,
        allowedServerWindowBits: ClosedRange<Int> = 8...15,
        serverNoContextTakeover: Bool = false,
        clientNoContextTakeover: Bool = false,
        clientMaxWindowBits: Int = 15
    ) {
        precondition(allowedServerWindowBits.clamped(to: 8...15) == allowedServerWindowBits, "window bits are 8...15")
        precondition((8...15).contains(clientMaxWindowBits), "window bits are 8...15")
        self.isEnabled = isEnabled
        self.allowedServerWindowBits = allowedServerWindowBits
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.clientMaxWindowBits = clientMaxWindowBits
    }

    package static let disabled = Self(isEnabled: false)
}

/// The permessage-deflate parameters agreed for one connection, and the response header that states them.
///
/// "Server" is our side: the server's compressor (DeflateStream) and the client's decompressor; "client" is the
/// client's compressor and our inflater (InflateStream).
package struct PerMessageDeflateParameters: Equatable, Sendable {
    /// The server resets its compressor after every message.
    package var serverNoContextTakeover: Bool
    /// The client resets its compressor after every message, so our inflater may reset too.
    package var clientNoContextTakeover: Bool
    /// Largest LZ77 window (bits, 8...15) the server's compressor may use.
    package var serverMaxWindowBits: Int
    /// Largest LZ77 window (bits, 8...15) the client's compressor will use: 15 when the offer did not say.
    package var clientMaxWindowBits: Int
    /// Whether the response names `server_max_window_bits` / `client_max_window_bits` (RFC 7692 §7.1.2: the first
    /// may always be sent, the second only when the offer had it).
    package var announcesServerMaxWindowBits: Bool
    package var announcesClientMaxWindowBits: Bool

    package init(
        serverNoContextTakeover: Bool,
        clientNoContextTakeover: Bool,
        serverMaxWindowBits: Int,
        clientMaxWindowBits: Int,
        announcesServerMaxWindowBits: Bool,
        announcesClientMaxWindowBits: Bool
    ) {
        precondition((8...15).contains(serverMaxWindowBits) && (8...15).contains(clientMaxWindowBits))
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
        self.announcesServerMaxWindowBits = announcesServerMaxWindowBits
        self.announcesClientMaxWindowBits = announcesClientMaxWindowBits
    }

    /// The windowBits to give zlib's deflateInit2 (negated there for raw deflate).
    ///
    /// zlib refuses 8 for raw deflate (since 1.2.9; earlier versions silently used 9), so 8 becomes 9. That stays
    /// within an agreed 256-byte window: zlib's deflate never emits a match distance above the window size minus
    /// MIN_LOOKAHEAD (262), i.e. 250 bytes for a 512-byte window, so a client inflating with 8 bits can always
    /// decode it.
    package var deflateWindowBits: Int {
        max(self.serverMaxWindowBits, 9)
    }

    /// The windowBits to give zlib's inflateInit2 (negated there): the client's window, which zlib accepts down to 8.
    package var inflateWindowBits: Int {
        self.clientMaxWindowBits
    }

    /// The `Sec-WebSocket-Extensions` response value, e.g. `permessage-deflate; server_max_window_bits=10`.
    package var responseHeaderValue: [UInt8] {
        var value = Array("permessage-deflate".utf8)
        if self.serverNoContextTakeover {
            value += "; server_no_context_takeover".utf8
        }
        if self.clientNoContextTakeover {
            value += "; client_no_context_takeover".utf8
        }
        if self.announcesServerMaxWindowBits {
            value += "; server_max_window_bits=\(self.serverMaxWindowBits)".utf8
        }
        if self.announcesClientMaxWindowBits {
            value += "; client_max_window_bits=\(self.clientMaxWindowBits)".utf8
        }
        return value
    }
}
