extension StaticString {
    /// The string's UTF-8 bytes lent as a span (a literal's bytes live for the whole program).
    @inlinable
    package func withBytes<R>(_ body: (RawSpan) -> R) -> R {
        withUTF8Buffer { body(UnsafeRawBufferPointer($0).bytes) }
    }
}
