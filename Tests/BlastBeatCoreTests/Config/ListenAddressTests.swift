import BlastBeatCore
import Testing

struct ListenAddressTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        var text: String
        var host: ListenAddress.Host
        var port: UInt16
        var canonical: String
        var testDescription: String { text }
    }

    static let valid: [Valid] = [
        // IPv4 and the wildcard.
        .init(text: "0.0.0.0:8080", host: .ipv4("0.0.0.0"), port: 8080, canonical: "0.0.0.0:8080"),
        .init(text: "127.0.0.1:1", host: .ipv4("127.0.0.1"), port: 1, canonical: "127.0.0.1:1"),
        .init(
            text: "255.255.255.255:65535", host: .ipv4("255.255.255.255"), port: 65535,
            canonical: "255.255.255.255:65535"),
        .init(text: "192.168.173.5:08443", host: .ipv4("192.168.173.5"), port: 8443, canonical: "192.168.173.5:8443"),
        .init(text: "*:8080", host: .any, port: 8080, canonical: "*:8080"),
        // IPv6, bracketed and the original's unbracketed form (split at the last colon).
        .init(text: "[::1]:8080", host: .ipv6("::1", scope: nil), port: 8080, canonical: "[::1]:8080"),
        .init(text: "::1:8080", host: .ipv6("::1", scope: nil), port: 8080, canonical: "[::1]:8080"),
        .init(text: "0::1:8080", host: .ipv6("::1", scope: nil), port: 8080, canonical: "[::1]:8080"),
        .init(text: "[::]:80", host: .ipv6("::", scope: nil), port: 80, canonical: "[::]:80"),
        .init(text: ":::80", host: .ipv6("::", scope: nil), port: 80, canonical: "[::]:80"),
        .init(
            text: "fe80::1%eth0:8085", host: .ipv6("fe80::1", scope: "eth0"), port: 8085,
            canonical: "[fe80::1%eth0]:8085"),
        .init(
            text: "fe80::a00:27ff:fe13:11ac%eth0:8085", host: .ipv6("fe80::a00:27ff:fe13:11ac", scope: "eth0"),
            port: 8085, canonical: "[fe80::a00:27ff:fe13:11ac%eth0]:8085"),
        .init(text: "[fe80::1%2]:80", host: .ipv6("fe80::1", scope: "2"), port: 80, canonical: "[fe80::1%2]:80"),
        .init(
            text: "[fe80::1%br-lan.10]:80", host: .ipv6("fe80::1", scope: "br-lan.10"), port: 80,
            canonical: "[fe80::1%br-lan.10]:80"),
        // RFC 5952 canonical form: lowercase, no leading zeros, longest zero run (first on a tie), no single "::".
        .init(
            text: "[2001:DB8:0:0:1:0:0:1]:443", host: .ipv6("2001:db8::1:0:0:1", scope: nil), port: 443,
            canonical: "[2001:db8::1:0:0:1]:443"),
        .init(
            text: "[2001:0db8:0000:0000:0000:0000:0002:0001]:443", host: .ipv6("2001:db8::2:1", scope: nil), port: 443,
            canonical: "[2001:db8::2:1]:443"),
        .init(
            text: "[2001:0:0:1:0:0:0:1]:1", host: .ipv6("2001:0:0:1::1", scope: nil), port: 1,
            canonical: "[2001:0:0:1::1]:1"),
        .init(
            text: "[2001:db8:0:1:1:1:1:1]:1", host: .ipv6("2001:db8:0:1:1:1:1:1", scope: nil), port: 1,
            canonical: "[2001:db8:0:1:1:1:1:1]:1"),
        .init(
            text: "[1:2:3:4:5:6:7::]:80", host: .ipv6("1:2:3:4:5:6:7:0", scope: nil), port: 80,
            canonical: "[1:2:3:4:5:6:7:0]:80"),
        .init(
            text: "[::2:3:4:5:6:7:8]:80", host: .ipv6("0:2:3:4:5:6:7:8", scope: nil), port: 80,
            canonical: "[0:2:3:4:5:6:7:8]:80"),
        .init(
            text: "[::ffff:192.0.2.1]:80", host: .ipv6("::ffff:192.0.2.1", scope: nil), port: 80,
            canonical: "[::ffff:192.0.2.1]:80"),
        .init(
            text: "[::FFFF:c000:0201]:80", host: .ipv6("::ffff:192.0.2.1", scope: nil), port: 80,
            canonical: "[::ffff:192.0.2.1]:80"),
        .init(
            text: "[64:ff9b::192.0.2.33]:80", host: .ipv6("64:ff9b::c000:221", scope: nil), port: 80,
            canonical: "[64:ff9b::c000:221]:80"),
        // Host names: resolved by the server, lowercased here.
        .init(text: "localhost:8080", host: .name("localhost"), port: 8080, canonical: "localhost:8080"),
        .init(text: "LocalHost:8080", host: .name("localhost"), port: 8080, canonical: "localhost:8080"),
        .init(
            text: "quantal64.local:8443", host: .name("quantal64.local"), port: 8443,
            canonical: "quantal64.local:8443"),
        .init(
            text: "my-host_1.example:443", host: .name("my-host_1.example"), port: 443,
            canonical: "my-host_1.example:443"),
    ]

    @Test(arguments: valid)
    func parsesValidAddress(_ row: Valid) {
        let address = ListenAddress.parse(row.text)
        #expect(address == ListenAddress(host: row.host, port: row.port))
        #expect(address?.description == row.canonical)
        #expect(ListenAddress.parse(row.canonical) == address, "description parses back to the same value")
    }

    @Test(arguments: [
        // Ports: digits only, 1-65535 (the original's atoi made "http" port 0).
        "0.0.0.0:http", "0.0.0.0:0", "0.0.0.0:65536", "0.0.0.0:123456", "0.0.0.0:", "0.0.0.0:-1", "0.0.0.0:+80",
        "0.0.0.0: 80", "0.0.0.0:80 ", "0.0.0.0", "8080", "",
        // Hosts: empty, bad IPv4 (no octal or short forms), brackets only around IPv6.
        ":8080", " :8080", "256.0.0.1:80", "1.2.3:80", "01.2.3.4:80", "1.2.3.4.5:80", "1.2.3.:80", "[1.2.3.4]:80",
        "[]:80", "**:80", "*.example.com:80", "-bad.example:80", "bad-.example:80", "a..b:80", ".example:80",
        "exa mple:80", "host/x:80", "\(String(repeating: "a", count: 64)).example:80",
        // IPv6: no port, bad brackets, bad groups, bad scope.
        "[::1]", "[::1]8080", "[::1:80", "::1]:80", "[::1]:", "::1", "fe80::1", "1:2:3:4:5:6:7:8:9:80",
        "[1:2:3:4:5:6:7:8:9]:80", "[1::2::3]:80", "[12345::1]:80", "[g::1]:80", "[1:2:3:4:5:6:7]:80", "[:1::2]:80",
        "[1::2:]:80", "[1.2.3.4::]:80", "[::1.2.3]:80", "fe80::1%:80", "fe80::1%eth0/x:80",
        "fe80::1%verylonginterface:80", "[fe80::1%]:80", "[fe80::1%eth 0]:80",
    ])
    func rejectsInvalidAddress(_ text: String) {
        #expect(ListenAddress.parse(text) == nil)
    }

    @Test func wildcardAndZeroAddressStayDistinctValues() {
        // Same socket, different spelling: the parser treats them as one listener (see ConfigParserTests).
        #expect(ListenAddress.parse("*:80") != ListenAddress.parse("0.0.0.0:80"))
    }
}
