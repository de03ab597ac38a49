// swift-tools-version:6.1
// libFuzzer drivers for BlastBeat's parsers and codecs: one executable per driver, each a thin
// LLVMFuzzerTestOneInput over a check in the main package's BlastBeatFuzzChecks library.
// Build only with the fuzzer flags (see README.md and `make fuzz`); a plain `swift build` here has no
// main() to link.
import PackageDescription

let drivers = [
    "http-request-head",
    "http-body",
    "http-response-head",
    "websocket-frames",
    "websocket-messages",
    "inflate",
    "uwsgi",
    "backend-message",
    "zmtp",
    "curve-server",
    "curve-keys",
    "config",
    "file-bundle",
    "worker-message",
    "worker-reports",
    "http2-server",
]

let package = Package(
    name: "BlastBeatFuzz",
    dependencies: [.package(name: "BlastBeat", path: "../..")],
    targets: [
        .target(name: "CLibFuzzer", path: "Sources/CLibFuzzer")
    ]
        + drivers.map { name in
            .executableTarget(
                name: name,
                dependencies: ["CLibFuzzer", .product(name: "BlastBeatFuzzChecks", package: "BlastBeat")],
                path: "Sources/\(name)")
        }
)
