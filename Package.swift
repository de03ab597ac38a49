// swift-tools-version:6.1
import PackageDescription

// Settings for every target. No unsafe flags here: SwiftPM refuses a versioned dependency
// (`.package(url:from:)`) on a package whose products contain a target built with one.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// The gateway's own targets (no library product exposes them). Every connection is touched by one thread
// only, so the runtime's dynamic exclusivity checks buy nothing in release builds; callgrind showed them at
// ~12% of the instructions per request. Debug builds (and so every test) keep them on. The hot stored
// properties of the library targets the gateway uses are marked `@exclusivity(unchecked)` instead.
let gatewaySwiftSettings: [SwiftSetting] = swiftSettings + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "BlastBeat",
    products: [
        .executable(name: "blastbeat", targets: ["blastbeat"]),
        .library(name: "BlastBeatBackend", targets: ["BlastBeatBackend"]),
        // For the libFuzzer drivers in Tests/Fuzz (a separate package, which sees only products).
        .library(name: "BlastBeatFuzzChecks", targets: ["BlastBeatFuzzChecks"]),
    ],
    targets: [
        // System libraries: module map + shim.h only (the shim wraps C macros Swift cannot call).
        .systemLibrary(name: "CSystem", path: "Sources/CSystem"),
        .systemLibrary(name: "CLibEV", path: "Sources/CLibEV", providers: [.apt(["libev-dev"])]),
        .systemLibrary(
            name: "CZeroMQ", path: "Sources/CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(
            name: "CNGHTTP2", path: "Sources/CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),

        // Pure protocol code: stdlib only, no I/O.
        .target(name: "BlastBeatCore", swiftSettings: swiftSettings),
        // The only target that talks to C libraries and syscalls.
        .target(
            name: "BlastBeatSystem",
            dependencies: ["BlastBeatCore", "CSystem", "CLibEV", "CZeroMQ", "CZlib", "COpenSSL", "CSodium", "CNGHTTP2"],
            swiftSettings: swiftSettings),
        // The gateway itself.
        .target(
            name: "BlastBeatServer",
            dependencies: ["BlastBeatCore", "BlastBeatSystem"],
            swiftSettings: gatewaySwiftSettings),
        .executableTarget(
            name: "blastbeat",
            dependencies: ["BlastBeatCore", "BlastBeatServer"],
            swiftSettings: gatewaySwiftSettings),

        // Backend SDK for Swift nodes, and the Swift examples built on it.
        .target(
            name: "BlastBeatBackend", dependencies: ["BlastBeatCore", "BlastBeatSystem"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "swift-hello", dependencies: ["BlastBeatBackend"], path: "examples/SwiftHello",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "swift-echo", dependencies: ["BlastBeatBackend"], path: "examples/SwiftEcho",
            swiftSettings: swiftSettings),

        // The Swift side of the SDK conformance suite (Tests/SDKTests/test_sdk_conformance.py); no product.
        .executableTarget(
            name: "sdk-conformance-backend", dependencies: ["BlastBeatBackend"],
            path: "Tests/SDKTests/ConformanceBackend", swiftSettings: swiftSettings),

        // Invariant checks shared by the fuzz drivers (Tests/Fuzz) and the crash replay (FuzzRegressionTests).
        .target(
            name: "BlastBeatFuzzChecks", dependencies: ["BlastBeatCore", "BlastBeatSystem"],
            swiftSettings: swiftSettings),

        .testTarget(
            name: "BlastBeatBackendTests", dependencies: ["BlastBeatBackend", "BlastBeatCore", "CZeroMQ"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BlastBeatCoreTests", dependencies: ["BlastBeatCore"], exclude: ["Corpus"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BlastBeatSystemTests", dependencies: ["BlastBeatCore", "BlastBeatSystem", "COpenSSL", "CSodium"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "FuzzRegressionTests", dependencies: ["BlastBeatFuzzChecks"], swiftSettings: swiftSettings),
    ]
)
