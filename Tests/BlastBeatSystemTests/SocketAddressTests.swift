import BlastBeatCore
import BlastBeatSystem
import Testing

@Suite struct SocketAddressTests {
    /// REMOTE_ADDR / REMOTE_PORT bytes: IPv4 is formatted by our own code, IPv6 by inet_ntop.
    @Test(arguments: [
        ("127.0.0.1:8080", "127.0.0.1", "8080"),
        ("0.0.0.0:1", "0.0.0.0", "1"),
        ("255.255.255.255:65535", "255.255.255.255", "65535"),
        ("10.200.3.40:80", "10.200.3.40", "80"),
        ("192.168.100.9:10", "192.168.100.9", "10"),
        ("[::1]:443", "::1", "443"),
        ("[2001:db8::8:800:200c:417a]:9", "2001:db8::8:800:200c:417a", "9"),
    ])
    func numericHostAndPortBytes(listen: String, host: String, port: String) throws {
        let address = try #require(ListenAddress.parse(listen))
        let resolved = try SocketAddress.resolve(address)
        #expect(resolved.count == 1)
        #expect(resolved.first?.hostBytes == Array(host.utf8))
        #expect(resolved.first?.portBytes == Array(port.utf8))
    }
}
