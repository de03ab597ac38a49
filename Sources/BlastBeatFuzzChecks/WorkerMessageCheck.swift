import BlastBeatCore

extension FuzzChecks {
    /// `WorkerMessage.decode`, a worker's parser of what the other workers send over the worker mesh
    /// (Sources/BlastBeatCore/Workers/WorkerMessage.swift, Sources/BlastBeatSystem/WorkerMesh.swift), with the body of
    /// a connection handover (`H`, Sources/BlastBeatCore/Workers/BackendHandover.swift). Input: any
    /// bytes, decoded message after message as a link does. Every decoded message's fields lie inside it and in
    /// order, it consumes at least its 5-byte head, and encoding its fields again gives exactly its bytes;
    /// anything else is an error, never a crash or a read past the input.
    /// The body of a handover (`BackendHandover`): decoded strictly (every length bounded, nothing after the last
    /// field) or refused; what decodes encodes again to the same bytes.
    static func handover(_ body: UnsafeRawBufferPointer) {
        guard let state = try? BackendHandover.decode(body) else { return }
        invariant(state.unsentOutput.count <= BackendHandover.maxUnsentOutput, "unsent output over its bound")
        invariant(state.pendingInput.count <= BackendHandover.maxPendingInput, "input read ahead over its bound")
        invariant(state.encoded().elementsEqual(body), "encoding a decoded handover gives other bytes")
    }

    @Sendable public static func workerMessage(_ data: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < data.count {
            let rest = UnsafeRawBufferPointer(rebasing: data[offset...])
            guard let (message, consumed) = try? WorkerMessage.decode(rest, limit: 4096) else { return }
            invariant(consumed >= 5 && consumed <= rest.count, "a message consumed \(consumed) of \(rest.count) bytes")
            invariant(
                message.identity.lowerBound >= 6 && message.identity.upperBound < message.sid.lowerBound
                    && message.sid.upperBound < message.type.lowerBound && message.type.upperBound == message.body.lowerBound
                    && message.body.upperBound == consumed, "fields out of order or outside the message")
            let field = { (range: Range<Int>) in UnsafeRawBufferPointer(rebasing: rest[range]) }
            let size = WorkerMessage.headerSize(
                identity: message.identity.count, sid: message.sid.count, type: message.type.count)
            var again = [UInt8](repeating: 0, count: size)
            again.withUnsafeMutableBytes {
                WorkerMessage.encodeHeader(
                    kind: message.kind, identity: field(message.identity), sid: field(message.sid),
                    type: field(message.type), bodyCount: message.body.count, into: $0.baseAddress!)
            }
            invariant(again.elementsEqual(rest[0..<size]), "encoding the decoded fields gives other bytes")
            if message.kind == .handover { handover(field(message.body)) }
            offset += consumed
        }
    }
}
