/// One client's allowance under `client-rate` / `client-burst`: it holds up to `burst` tokens, gains `rate`
/// of them per second, and each request takes one.
///
/// Time is passed in (seconds on the loop's monotonic clock), so the arithmetic is tested without waiting.
/// A bucket starts full: a new client may send `burst` requests at once, then `rate` per second.
package struct TokenBucket: Sendable, Equatable {
    /// Tokens held at `updated`, 0...burst (fractional between requests).
    package private(set) var tokens: Double
    /// When `tokens` was last brought up to date.
    package private(set) var updated: Double

    package init(burst: Int, now: Double) {
        self.tokens = Double(burst)
        self.updated = now
    }

    /// Takes one token if there is one. Returns nil when the request may go on, else the whole seconds until
    /// a token will be there (at least 1: `Retry-After` counts whole seconds, and 0 would invite a retry loop).
    package mutating func take(now: Double, rate: Double, burst: Int) -> Int? {
        refill(now: now, rate: rate, burst: burst)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        let wait = (1 - tokens) / rate
        return max(1, Int(wait.rounded(.up)))
    }

    /// Whether the bucket is full again at `now`: it is then the same as no bucket at all (a new one starts
    /// full), so the table may forget it.
    package func isFull(now: Double, rate: Double, burst: Int) -> Bool {
        tokens + max(0, now - updated) * rate >= Double(burst)
    }

    private mutating func refill(now: Double, rate: Double, burst: Int) {
        // The loop clock never goes back, but a bucket created later than a cached `now` must not lose tokens.
        let elapsed = max(0, now - updated)
        tokens = min(Double(burst), tokens + elapsed * rate)
        updated = max(updated, now)
    }
}
