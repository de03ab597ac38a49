/// Calls `body` with the ASCII decimal digits of `value` (no sign: `value` must be >= 0), formatted
/// on the stack. The one decimal formatter of the hot path (uwsgi `CONTENT_LENGTH`, `REMOTE_ADDR`
/// octets, `REMOTE_PORT`): no String, no allocation.
/// The four big-endian bytes of `value` (a `credit` message's count), lent as a span, without an allocation.
@inlinable
package func withBigEndianBytes<R>(of value: UInt32, _ body: (RawSpan) -> R) -> R {
    withUnsafeBytes(of: value.bigEndian) { body($0.bytes) }
}

/// The same digits lent as a span.
@inlinable
package func withDecimalDigitSpan<R>(_ value: Int, _ body: (RawSpan) -> R) -> R {
    withDecimalDigits(value) { body($0.bytes) }
}

@inlinable
package func withDecimalDigits<R>(_ value: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    precondition(value >= 0, "negative decimal")
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: Int.max has 19 digits
    return try withUnsafeMutableBytes(of: &digits) { scratch in
        var rest = value
        var start = scratch.count
        repeat {
            start -= 1
            scratch[start] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        } while rest > 0
        return try body(UnsafeRawBufferPointer(rebasing: scratch[start...]))
    }
}
