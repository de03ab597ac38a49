import BlastBeatCore
import Testing

/// Several workers' `/metrics` texts merged into one (README.md, "Worker processes").
struct PrometheusMergeTests {
    /// One worker's text: the same families with that worker's values (`extra`: lines added at the end).
    static func text(requests: Int, ok: Int, failed: Int?, start: Int, bucket: Int, sum: String, extra: String = "") -> String {
        """
        # HELP blastbeat_requests_total Request heads received.
        # TYPE blastbeat_requests_total counter
        blastbeat_requests_total \(requests)
        # HELP blastbeat_responses_total Responses.
        # TYPE blastbeat_responses_total counter
        blastbeat_responses_total{vhost="a",code="2xx"} \(ok)

        """ + (failed.map { "blastbeat_responses_total{vhost=\"a\",code=\"5xx\"} \($0)\n" } ?? "") + """
        # HELP blastbeat_node_instances_connected Processes.
        # TYPE blastbeat_node_instances_connected gauge
        blastbeat_node_instances_connected{node="app"} 1
        # HELP blastbeat_start_time_seconds Start.
        # TYPE blastbeat_start_time_seconds gauge
        blastbeat_start_time_seconds \(start)
        # HELP blastbeat_request_duration_seconds Duration.
        # TYPE blastbeat_request_duration_seconds histogram
        blastbeat_request_duration_seconds_bucket{vhost="a",le="0.001"} \(bucket)
        blastbeat_request_duration_seconds_sum{vhost="a"} \(sum)

        """ + extra
    }
    static let zero = text(requests: 10, ok: 7, failed: nil, start: 1000, bucket: 3, sum: "0.0125")
    static let one = text(requests: 5, ok: 4, failed: 1, start: 1042, bucket: 2, sum: "0.5", extra: "garbage without a value\n")

    @Test func sumsExceptWhereEveryWorkerSeesTheSameAndLabelsPerWorkerSeries() {
        let rules = PrometheusMerge.Rules(
            minimum: ["blastbeat_start_time_seconds"], maximum: ["blastbeat_node_instances_connected"],
            perWorker: ["blastbeat_requests_total", "blastbeat_start_time_seconds"])
        let merged = PrometheusMerge.merge([(0, Array(Self.zero.utf8)), (1, Array(Self.one.utf8))], rules: rules)
        #expect(String(decoding: merged, as: UTF8.self) == """
            # HELP blastbeat_requests_total Request heads received.
            # TYPE blastbeat_requests_total counter
            blastbeat_requests_total 15
            blastbeat_requests_total{worker="0"} 10
            blastbeat_requests_total{worker="1"} 5
            # HELP blastbeat_responses_total Responses.
            # TYPE blastbeat_responses_total counter
            blastbeat_responses_total{vhost="a",code="2xx"} 11
            blastbeat_responses_total{vhost="a",code="5xx"} 1
            # HELP blastbeat_node_instances_connected Processes.
            # TYPE blastbeat_node_instances_connected gauge
            blastbeat_node_instances_connected{node="app"} 1
            # HELP blastbeat_start_time_seconds Start.
            # TYPE blastbeat_start_time_seconds gauge
            blastbeat_start_time_seconds 1000
            blastbeat_start_time_seconds{worker="0"} 1000
            blastbeat_start_time_seconds{worker="1"} 1042
            # HELP blastbeat_request_duration_seconds Duration.
            # TYPE blastbeat_request_duration_seconds histogram
            blastbeat_request_duration_seconds_bucket{vhost="a",le="0.001"} 5
            blastbeat_request_duration_seconds_sum{vhost="a"} 0.5125

            """)
    }

    @Test func oneTextComesBackAsItWas() {
        let merged = PrometheusMerge.merge([(0, Array(Self.zero.utf8))], rules: PrometheusMerge.Rules())
        #expect(String(decoding: merged, as: UTF8.self) == Self.zero)
    }
}
