// sdk-conformance-backend: the scripted exchanges of Tests/SDKTests/test_sdk_conformance.py on the Swift SDK.
// conformance_backend.py is the same script on the Python SDK; the test runs both behind the gateway and
// compares what the clients receive. Keep the two in step: one route here, one route there.
//
//     sdk-conformance-backend --connect ENDPOINT --node NAME      (BackendCommandLine's options)

import BlastBeatBackend
import Glibc

struct ScriptedFailure: Error {}

let text = [("Content-Type", "text/plain; charset=utf-8")]

final class Conformance: BackendHandler {
    let node: String
    private var bodies: [Session: [UInt8]] = [:]

    init(node: String) { self.node = node }

    func requestStarted(_ request: Request, session: Session) throws {
        if request.isWebSocket { return }
        if request.hasBody {
            bodies[session] = []
            return
        }
        try answer(request, body: [], session: session)
    }

    func requestBody(_ bytes: [UInt8], session: Session) throws {
        bodies[session]?.append(contentsOf: bytes)
    }

    func requestBodyEnded(session: Session) throws {
        guard let body = bodies.removeValue(forKey: session), let request = session.request else { return }
        try answer(request, body: body, session: session)
    }

    func answer(_ request: Request, body: [UInt8], session: Session) throws {
        switch request.path {
        case "/length":
            try session.respond(headers: text, body: "length body\n")
        case "/unframed":
            try session.sendHeaders(headers: text)
            try session.write("one\n")
            try session.write("two\n")
            try session.finish()
        case "/chunked":
            try session.sendHeaders(headers: text + [("Transfer-Encoding", "chunked")])
            try session.write("one\n")
            try session.write("two\n")
            try session.finish()
        case "/chunk-messages":
            try session.sendHeaders(headers: text)
            try session.chunk(Array("one\n".utf8))
            try session.chunk(Array("two\n".utf8))
            try session.finish()
        case "/empty-unframed":
            try session.sendHeaders(headers: text)
            try session.finish()
        case "/no-content":
            try session.respond(status: 204)
        case "/interim":
            try session.sendHeaders(status: 103, headers: [("Link", "</style.css>; rel=preload")])
            try session.respond(headers: text, body: "final\n")
        case "/interim-101":
            try session.sendHeaders(status: 101, headers: [("Upgrade", "websocket")])
        case "/respond-1xx":
            try session.respond(status: 103, headers: text, body: "not final\n")
        case "/echo":
            try session.respond(
                headers: [("Content-Type", request.header("content-type") ?? "application/octet-stream")], body: body)
        case "/raise":
            throw ScriptedFailure()
        case "/raise-after-head":
            try session.sendHeaders(headers: text)
            try session.write("partial\n")
            throw ScriptedFailure()
        case "/end-chunked":
            try session.sendHeaders(headers: text + [("Transfer-Encoding", "chunked")])
            try session.write("one\n")
            try session.end()
        case "/end-length-short":
            try session.sendHeaders(headers: text + [("Content-Length", "10")])
            try session.write("short\n")
            try session.finish()
        case "/retry":
            if node == "first" { return try session.retry() }
            try session.respond(
                headers: text, body: "answered by \(node): \(request.method) \(request.path), \(body.count) body bytes\n")
        default:
            try session.respond(status: 404, headers: text, body: "no route \(request.path)\n")
        }
    }

    func webSocketMessage(_ message: WebSocketMessage, session: Session) throws {
        switch message {
        case .text("close"):
            try session.close(code: 4000, reason: "bye")
        case .text("raise"):
            throw ScriptedFailure()
        default:
            try session.sendWebSocket(message)
        }
    }

    func sessionEnded(session: Session) {
        bodies[session] = nil
    }
}

let options = BackendCommandLine.parse(program: "sdk-conformance-backend", defaultNode: "conformance")
do {
    let node = try BackendNode(
        node: options.node, instance: options.instance, endpoints: options.endpoints, curve: options.curve)
    node.stopOnSignals()
    try node.run(handler: Conformance(node: options.node))
} catch {
    print("sdk-conformance-backend: \(error)")
    exit(1)
}
