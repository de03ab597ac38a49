import BlastBeatCore

extension FuzzChecks {
    /// `BackendMessageType` and `GatewayMessageType` (frame 2 of a backend message): a type frame is
    /// recognised exactly when its bytes are one of the names, and a recognised type's `bytes` are the
    /// input (no prefix, case or NUL tolerance: the original's D9).
    @Sendable public static func backendMessage(_ data: UnsafeRawBufferPointer) {
        func text(_ s: StaticString) -> [UInt8] { Array(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)) }
        let input = Array(data)
        if let type = BackendMessageType(data) {
            invariant(text(type.bytes) == input, "\(type) decoded from other bytes")
        } else {
            invariant(!BackendMessageType.allCases.contains { text($0.bytes) == input }, "a backend type name not recognised")
        }
        if let type = GatewayMessageType(data) {
            invariant(text(type.bytes) == input, "\(type) decoded from other bytes")
        } else {
            invariant(!GatewayMessageType.allCases.contains { text($0.bytes) == input }, "a gateway type name not recognised")
        }
    }
}
