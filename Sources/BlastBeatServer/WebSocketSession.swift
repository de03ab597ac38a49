import BlastBeatCore
import BlastBeatSystem

/// The WebSocket half of a connection after its upgrade: frame reassembly, compression state and
/// the close handshake. One per upgraded connection (a class so the connection holds one pointer
/// while it speaks HTTP).
final class WebSocketSession {
    var assembler: WebSocketMessageAssembler
    let compression: PerMessageDeflateParameters?
    /// Created on first use: a zlib stream pair costs ~300 KiB, and many sockets never send a compressed message.
    private var deflateStream: DeflateStream?
    private var inflateStream: InflateStream?
    /// Scratch buffers reused for every message.
    var inflated: [UInt8] = []
    var frame: [UInt8] = []
    var closeSent = false
    var pingOutstanding = false

    init(maxMessageSize: Int, compression: PerMessageDeflateParameters?) {
        self.assembler = WebSocketMessageAssembler(
            maxFrameSize: maxMessageSize, maxMessageSize: maxMessageSize, requireMask: true,
            allowCompression: compression != nil)
        self.compression = compression
    }

    func inflater() throws(ZlibError) -> InflateStream {
        if let inflateStream { return inflateStream }
        let stream = try InflateStream(parameters: compression!)
        inflateStream = stream
        return stream
    }

    func deflater() throws(ZlibError) -> DeflateStream {
        if let deflateStream { return deflateStream }
        let stream = try DeflateStream(parameters: compression!)
        deflateStream = stream
        return stream
    }
}

/// What an accepted upgrade needs until the 101 goes out (at once, or when the backend agrees).
struct PendingUpgrade {
    var accept: [UInt8]
    var compression: PerMessageDeflateParameters?
    /// Subprotocols the client offered, in its order.
    var offeredProtocols: [[UInt8]]
    /// Chosen by the gateway (gateway mode) or by the backend's 101 (backend mode).
    var selectedProtocol: [UInt8]?
}

/// Why an upgrade request is refused, and how.
struct UpgradeRefusal: Error {
    var status: Int
    var message: String
    var extraHeaders = ""
}

extension PendingUpgrade {
    /// Checks the WebSocket fields of an upgrade request (HTTP/1.1, or an HTTP/2 extended CONNECT written out
    /// as one) and negotiates compression: version 13, one valid key, the offered subprotocols.
    static func prepare(
        head: HTTPRequestHead, headBytes: UnsafeRawBufferPointer, compression enabled: Bool
    ) -> Result<PendingUpgrade, UpgradeRefusal> {
        var key: UnsafeRawBufferPointer? = nil
        var versionOK = false
        var extensions: [UInt8] = []
        var offered: [[UInt8]] = []
        for field in head.headers {
            let value = UnsafeRawBufferPointer(rebasing: headBytes[field.value])
            switch field.known {
            case .secWebSocketKey:
                if key != nil { return .failure(UpgradeRefusal(status: 400, message: "more than one Sec-WebSocket-Key")) }
                key = value
            case .secWebSocketVersion:
                versionOK = WebSocketHandshake.isSupportedVersion(value)
            case .secWebSocketExtensions:
                if !extensions.isEmpty { extensions.appendBytes(", ") }
                extensions.appendBytes(value)
            case .secWebSocketProtocol:
                for token in value.split(separator: 0x2C) {
                    let trimmed = token.drop(while: { $0 == 0x20 || $0 == 0x09 }).reversed().drop(while: {
                        $0 == 0x20 || $0 == 0x09
                    }).reversed()
                    if !trimmed.isEmpty { offered.append(Array(trimmed)) }
                }
            default:
                break
            }
        }
        guard versionOK else {
            return .failure(
                UpgradeRefusal(
                    status: 426, message: "only WebSocket version 13 is supported",
                    extraHeaders: "Sec-WebSocket-Version: 13\r\n"))
        }
        guard let key, WebSocketHandshake.isValidKey(key) else {
            return .failure(UpgradeRefusal(status: 400, message: "missing or invalid Sec-WebSocket-Key"))
        }
        let compression = extensions.withUnsafeBytes {
            PerMessageDeflateOffer.negotiate(
                headerValue: $0, configuration: PerMessageDeflateConfiguration(isEnabled: enabled))
        }
        return .success(
            PendingUpgrade(
                accept: WebSocketHandshake.acceptValue(key: key), compression: compression, offeredProtocols: offered,
                selectedProtocol: nil))
    }
}
