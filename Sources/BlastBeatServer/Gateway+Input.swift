import BlastBeatCore
import BlastBeatSystem

/// The shared read buffer (`input`, Core's `ReadBuffer`): every read of a client socket fills it anew, and
/// the bytes are lent to the connection as a span until the next read. Reads of different connections never
/// nest (each runs from its own watcher), which the debug build's exclusivity checks would catch.
extension Gateway {
    /// Most bytes one read takes from a socket (the buffer's size).
    static let inputCapacity = 64 * 1024

    func readInput(_ fd: Int32) throws(SystemError) -> IOResult {
        try Posix.read(fd, into: &input)
    }

    /// Decrypts into the buffer what OpenSSL holds.
    func readPlaintext(_ tls: TLSConnection) -> TLSConnection.ReadResult {
        tls.readPlaintext(into: &input)
    }
}
