import BlastBeatCore

extension FuzzChecks {
    /// `FileBundle.decode`, the serving process's parser of what the privileged parent sends on a reload
    /// (Sources/BlastBeatCore/Config/FileBundle.swift). Input: any bytes. A bundle that decodes encodes again
    /// to bytes that decode to the same bundle, and its socket count is the sum of its listeners'; anything
    /// else must be refused with an error, never a crash or an unbounded allocation. (The encoding may be longer
    /// than the input: a name's invalid UTF-8 decodes to U+FFFD, three bytes.)
    @Sendable public static func fileBundle(_ data: UnsafeRawBufferPointer) {
        guard let bundle = try? FileBundle.decode(Array(data)) else { return }
        let again = bundle.encoded()
        guard let decoded = try? FileBundle.decode(again) else {
            fatalError("fuzz invariant: a decoded bundle's own encoding does not decode")
        }
        invariant(decoded == bundle, "encode then decode changed the bundle")
        let sockets = bundle.listeners.reduce(0) { total, listener in
            if case .value(let count) = listener.sockets { return total + count }
            return total
        }
        invariant(bundle.socketCount == sockets, "socketCount is not the sum of the listeners' sockets")
    }
}
