/// The upper bounds (seconds) of the request duration histogram, and which bucket a duration falls in.
///
/// From a millisecond (a keep-alive request to a local backend) to a minute (the default
/// `backend-timeout`): a request that waits the whole timeout lands in the last finite bucket, and
/// anything longer (a slow upload, a streamed response) in `+Inf`.
package enum LatencyBuckets {
    package static let bounds: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]
    /// The `le` label of each bound, then `+Inf`: written on every scrape, so made once.
    package static let labels: [StaticString] = [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
        "+Inf",
    ]
    /// Buckets per histogram: one per bound, plus `+Inf`.
    package static var count: Int { bounds.count + 1 }

    /// The first bucket whose bound is at least `seconds` (`bounds.count` for `+Inf`). A linear scan of
    /// 15 doubles: most requests stop in the first few.
    package static func index(of seconds: Double) -> Int {
        var i = 0
        while i < bounds.count && seconds > bounds[i] { i += 1 }
        return i
    }
}
