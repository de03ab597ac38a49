// swift-hello: the smallest Swift backend node for BlastBeat. Every request gets "Hello, World!".
//
//     swift build && .build/debug/swift-hello [--connect tcp://127.0.0.1:5000]... [--node hello-swift]
//         [--instance ID | --plain-identity] [--curve-key FILE --server-key KEY]     (--help for details)
//
// Gateway config to go with it:
//
//     [blastbeat]
//     bind = 127.0.0.1:8080
//     zmq = tcp://127.0.0.1:5000
//
//     [blastbeat:localhost]
//     node = hello-swift
//
// `--connect` may repeat (one DEALER per gateway). Each process connects as an instance of its own,
// `hello-swift#<pid>-<8 random hex digits>`, so starting it twice gives the node two processes, and the
// gateway balances requests between them. `--instance 2` connects as `hello-swift#2` (as does
// `--node hello-swift#2`); `--plain-identity` as exactly `hello-swift` (one process at a time).
//
// With CURVE (the connection encrypted, and the gateway accepting this node only with its key):
//
//     python3 -c 'import zmq.auth; zmq.auth.create_certificates("keys", "hello-swift")'
//     .build/debug/swift-hello --curve-key keys/hello-swift.key_secret --server-key keys/gateway.key
//
// and on the gateway `curve-key = keys/gateway.key_secret` under [blastbeat], and
// `node-key = hello-swift <public-key of keys/hello-swift.key>` in the vhost.

import BlastBeatBackend
import Glibc

struct Hello: BackendHandler {
    func requestStarted(_ request: Request, session: Session) throws {
        // respond() adds Content-Length, and sends only the head to a HEAD request.
        try session.respond(
            status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")], body: "Hello, World!")
    }
}

let options = BackendCommandLine.parse(program: "swift-hello", defaultNode: "hello-swift")
do {
    // The SDK logs the identity it connects with (NAME#<pid>-<random> unless --instance or --plain-identity).
    let node = try BackendNode(
        node: options.node, instance: options.instance, endpoints: options.endpoints, curve: options.curve)
    node.stopOnSignals()
    try node.run(handler: Hello())
} catch {
    print("swift-hello: \(error)")
    exit(1)
}
