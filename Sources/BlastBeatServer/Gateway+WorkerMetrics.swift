import BlastBeatCore
import BlastBeatSystem

/// `GET /metrics` with several workers (README.md, "Worker processes"): the admin listener is shared, so the
/// worker that accepts a scrape asks the others for their texts over the worker mesh and answers with the
/// merge (PrometheusMerge.swift): sums, plus each worker's own value of a few series under a `worker` label.
/// A worker that has not answered within a second is left out (a restarting worker, say).
extension Gateway: WorkerMeshDelegate {
    static let metricsMergeRules = PrometheusMerge.Rules(
        // The earliest start is the gateway's.
        minimum: ["blastbeat_start_time_seconds"],
        // Every worker sees a node's processes, deaths and pings through the mesh, and reloads all together.
        maximum: [
            "blastbeat_node_instances_connected", "blastbeat_node_deaths_total", "blastbeat_node_ping_rtt_seconds",
            "blastbeat_config_reloads_total", "blastbeat_config_reload_failures_total",
        ],
        perWorker: [
            "blastbeat_connections_open", "blastbeat_connections_accepted_total", "blastbeat_requests_total",
            "blastbeat_resident_memory_bytes", "blastbeat_start_time_seconds",
        ])
    /// How long a scrape waits for the other workers.
    static let metricsQueryTimeout = 1.0

    /// Answers `connection`'s scrape once the other workers' texts are in (or after `metricsQueryTimeout`).
    func collectMetrics(for connection: AdminConnection, omitBody: Bool) {
        renderMetrics()
        let own = (worker: worker?.index ?? 0, text: metrics.text.bytes)
        let id = nextMetricsQuery
        nextMetricsQuery &+= 1
        let asked = router.queryWorkerMetrics(id)
        let query = MetricsQuery(
            id: id, connection: connection, omitBody: omitBody, waiting: asked, texts: [own],
            deadline: loop.now + Self.metricsQueryTimeout)
        if asked == 0 { return finish(query) }
        metricsQueries.append(query)
    }

    package func workerMeshMetricsText() -> [UInt8] {
        renderMetrics()
        return metrics.text.bytes
    }

    package func workerMesh(metrics text: RawSpan, from worker: Int, query id: UInt64) {
        guard let position = metricsQueries.firstIndex(where: { $0.id == id }) else { return }  // timed out
        let query = metricsQueries[position]
        query.texts.append((worker, [UInt8](copying: text)))
        query.waiting -= 1
        if query.waiting > 0 { return }
        metricsQueries.remove(at: position)
        finish(query)
    }


    /// Answers the scrapes whose wait is over with what arrived (from the housekeeping timer).
    func expireMetricsQueries() {
        let now = loop.now
        let expired = metricsQueries.filter { $0.deadline <= now }
        if expired.isEmpty { return }
        metricsQueries.removeAll { $0.deadline <= now }
        for query in expired { finish(query) }
    }

    private func finish(_ query: MetricsQuery) {
        let texts = query.texts.sorted { $0.worker < $1.worker }
        query.connection.respondMetrics(PrometheusMerge.merge(texts, rules: Self.metricsMergeRules), omitBody: query.omitBody)
    }
}

/// One scrape waiting for the other workers' texts.
final class MetricsQuery {
    let id: UInt64
    let connection: AdminConnection
    let omitBody: Bool
    var waiting: Int
    var texts: [(worker: Int, text: [UInt8])]
    let deadline: Double

    init(id: UInt64, connection: AdminConnection, omitBody: Bool, waiting: Int, texts: [(worker: Int, text: [UInt8])], deadline: Double) {
        self.id = id
        self.connection = connection
        self.omitBody = omitBody
        self.waiting = waiting
        self.texts = texts
        self.deadline = deadline
    }
}
