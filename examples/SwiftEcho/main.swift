// swift-echo: a Swift backend node for BlastBeat that echoes request bodies and WebSocket messages.
//
//     swift build && .build/debug/swift-echo [--connect tcp://127.0.0.1:5000]... [--node echo-swift]
//         [--instance ID | --plain-identity] [--curve-key FILE --server-key KEY]     (see swift-hello)
//
// * A request with a body (POST, PUT...; Content-Length or chunked) gets its body back, byte for byte, with
//   the request's Content-Type. The body arrives in `requestBody` pieces up to `requestBodyEnded`.
// * A request without a body gets a short text page.
// * A WebSocket (the gateway does the handshake) gets each message back: text as text, binary as binary.
//
//     curl --data-binary @file http://localhost:8080/
//     python3 -m websockets ws://127.0.0.1:8080/

import BlastBeatBackend
import Glibc

/// Per-session body buffers: the node calls every callback on one thread, so a plain class is enough.
final class Echo: BackendHandler {
    /// Bodies larger than this are refused with 413 (the echo keeps the whole body in memory).
    let maxBody = 64 << 20
    private var bodies: [Session: [UInt8]] = [:]

    func requestStarted(_ request: Request, session: Session) throws {
        if request.isWebSocket { return }  // the gateway has accepted the upgrade; messages follow
        if request.hasBody {
            bodies[session] = []
            return
        }
        try session.respond(
            headers: [("Content-Type", "text/plain; charset=utf-8")],
            body: "swift-echo: send a body (\(request.method) \(request.path)) or open a WebSocket\n")
    }

    func requestBody(_ bytes: [UInt8], session: Session) throws {
        guard bodies[session] != nil else { return }  // already refused
        if bodies[session]!.count + bytes.count > maxBody {
            bodies[session] = nil
            try session.respond(status: 413, headers: [("Content-Type", "text/plain")], body: "body too large\n")
            return
        }
        bodies[session]!.append(contentsOf: bytes)
    }

    func requestBodyEnded(session: Session) throws {
        guard let body = bodies.removeValue(forKey: session) else { return }
        let type = session.request?.header("content-type") ?? "application/octet-stream"
        try session.respond(headers: [("Content-Type", type)], body: body)
    }

    func webSocketMessage(_ message: WebSocketMessage, session: Session) throws {
        try session.sendWebSocket(message)
    }

    func sessionEnded(session: Session) {
        bodies[session] = nil
    }
}

let options = BackendCommandLine.parse(program: "swift-echo", defaultNode: "echo-swift")
do {
    // The SDK logs the identity it connects with (NAME#<pid>-<random> unless --instance or --plain-identity).
    let node = try BackendNode(
        node: options.node, instance: options.instance, endpoints: options.endpoints, curve: options.curve)
    node.stopOnSignals()
    try node.run(handler: Echo())
} catch {
    print("swift-echo: \(error)")
    exit(1)
}
