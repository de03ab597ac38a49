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
