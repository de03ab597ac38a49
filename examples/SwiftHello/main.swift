// swift-hello: the smallest Swift backend node for BlastBeat. Every request gets "Hello, World!".
//
//     swift build && .build/debug/swift-hello [--connect tcp://127.0.0.1:5000]... [--node hello-swift]
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
// `--connect` may repeat (one DEALER per gateway). `--node hello-swift#2` starts one more process of the same
// node: the gateway balances requests between every `hello-swift` and `hello-swift#...` process.

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
let (nodeName, endpoints) = (options.node, options.endpoints)
do {
    let node = try BackendNode(identity: nodeName, endpoints: endpoints)
    node.stopOnSignals()
    print("swift-hello: node \(nodeName) serving for \(endpoints.joined(separator: ", "))")
    try node.run(handler: Hello())
} catch {
    print("swift-hello: \(error)")
    exit(1)
}
