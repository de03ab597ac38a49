import Testing

@testable import BlastBeatCore

@Suite struct VirtualHostRouterTests {
    /// Listener on 8080 serving: 0 = localhost, 1 = localhost:8000, 2 = ::1, 3 = Example.COM (lowercased by config).
    static let router = VirtualHostRouter(
        entries: [
            .init(vhost: 0, hostName: Array("localhost".utf8), port: nil),
            .init(vhost: 1, hostName: Array("localhost".utf8), port: 8000),
            .init(vhost: 2, hostName: Array("::1".utf8), port: nil),
            .init(vhost: 3, hostName: Array("example.com".utf8), port: nil),
        ], defaultVhost: nil, listenerPort: 8080)

    static let cases: [(String, Int?)] = [
        ("localhost", 0),
        ("LOCALHOST", 0),
        ("localhost:8080", 0),
        ("localhost.", 0),
        ("localhost:8000", 1),
        ("localhost:9000", nil),
        ("[::1]", 2),
        ("[::1]:8080", 2),
        ("[::1]:8000", nil),
        ("Example.Com", 3),
        ("example.com:8080", 3),
        ("example.org", nil),
        ("", nil),
        ("localhost:", nil),
        ("localhost:0", nil),
        ("localhost:65536", nil),
        ("localhost:80a", nil),
        ("localhost:8080:8080", nil),
    ]

    @Test(arguments: cases)
    func routesHost(host: String, expected: Int?) {
        let bytes = Array(host.utf8)
        let result = bytes.withUnsafeBytes { Self.router.route(host: $0.bytes) }
        #expect(result == expected, "Host \(host)")
    }

    @Test func missingHostUsesDefault() {
        var router = Self.router
        #expect(router.route(host: nil) == nil)
        router.defaultVhost = 3
        #expect(router.route(host: nil) == 3)
        let other = Array("unknown.test".utf8)
        #expect(other.withUnsafeBytes { router.route(host: $0.bytes) } == 3)
    }

    @Test func portOnlyVhostMatchesBareHostOnItsOwnPort() {
        let router = VirtualHostRouter(
            entries: [.init(vhost: 0, hostName: Array("localhost".utf8), port: 8000)], defaultVhost: nil,
            listenerPort: 8000)
        let bare = Array("localhost".utf8)
        #expect(bare.withUnsafeBytes { router.route(host: $0.bytes) } == 0)
    }

    /// An ISP's configuration: every one of 10,000 vhosts routes, the first one of a name wins.
    @Test func tenThousandVhosts() {
        var entries = (0..<10_000).map { VirtualHostRouter.Entry(vhost: $0, hostName: Array("t\($0).example".utf8), port: nil) }
        entries.append(.init(vhost: 10_000, hostName: Array("t5.example".utf8), port: nil))
        let router = VirtualHostRouter(entries: entries, defaultVhost: nil, listenerPort: 80)
        func route(_ host: String) -> Int? { Array(host.utf8).withUnsafeBytes { router.route(host: $0.bytes) } }
        for i in [0, 5, 4_999, 9_999] { #expect(route("T\(i).example:80") == i) }
        #expect(route("t10000.example") == nil)
    }
}
