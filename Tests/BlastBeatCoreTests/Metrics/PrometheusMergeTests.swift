import BlastBeatCore
import Testing

/// Several workers' `/metrics` texts merged into one (README.md, "Worker processes").
struct PrometheusMergeTests {
    static let zero = """
        # HELP blastbeat_requests_total Request heads received.
        # TYPE blastbeat_requests_total counter
        blastbeat_requests_total 10
        # HELP blastbeat_responses_total Responses.
        # TYPE blastbeat_responses_total counter
        blastbeat_responses_total{vhost="a",code="2xx"} 7
        # HELP blastbeat_node_instances_connected Processes.
        # TYPE blastbeat_node_instances_connected gauge
        blastbeat_node_instances_connected{node="app"} 1
        # HELP blastbeat_start_time_seconds Start.
        # TYPE blastbeat_start_time_seconds gauge
        blastbeat_start_time_seconds 1000
        # HELP blastbeat_request_duration_seconds Duration.
        # TYPE blastbeat_request_duration_seconds histogram
        blastbeat_request_duration_seconds_bucket{vhost="a",le="0.001"} 3
        blastbeat_request_duration_seconds_sum{vhost="a"} 0.0125

        """
    static let one = """
        # HELP blastbeat_requests_total Request heads received.
        # TYPE blastbeat_requests_total counter
        blastbeat_requests_total 5
        # HELP blastbeat_responses_total Responses.
        # TYPE blastbeat_responses_total counter
        blastbeat_responses_total{vhost="a",code="2xx"} 4
        blastbeat_responses_total{vhost="a",code="5xx"} 1
        # HELP blastbeat_node_instances_connected Processes.
        # TYPE blastbeat_node_instances_connected gauge
        blastbeat_node_instances_connected{node="app"} 1
        # HELP blastbeat_start_time_seconds Start.
        # TYPE blastbeat_start_time_seconds gauge
        blastbeat_start_time_seconds 1042
        # HELP blastbeat_request_duration_seconds Duration.
        # TYPE blastbeat_request_duration_seconds histogram
        blastbeat_request_duration_seconds_bucket{vhost="a",le="0.001"} 2
        blastbeat_request_duration_seconds_sum{vhost="a"} 0.5
        garbage without a value

        """

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
