import BlastBeatCore
package import BlastBeatSystem

/// Backend connections labelled for a worker (README.md, "Worker processes"; docs/PROTOCOL.md): a backend that
/// opens a connection to every worker labels each with `X-BlastBeat-Worker`, and a connection that lands in
/// another worker is handed to the one it names (ZMTPRouter.handOver, WorkerMesh.swift). Counted for /metrics;
/// what goes wrong is logged, at most once a minute per identity (a refused libzmq peer reconnects every 100 ms).
/// Also here: messages another worker sent through this one past a connection's bound (WorkerMesh.swift).
extension Gateway {
    package func backendRouter(placement event: BackendPlacementEvent, identity: RawSpan) {
        let who = identity.isEmpty ? "a backend connection" : "the connection of \(Self.printable(identity))"
        let here = worker.map { "worker \($0.index)" } ?? "the gateway"
        switch event {
        case .mislabelled(let label, let address, let workers):
            counters.mislabelledBackendConnections += 1
            if warnings.allow("mislabelled", identity, now: loop.now, interval: 60) {
                logger.info(
                    "\(who) from \(address) asks for worker \(label.logText) (X-BlastBeat-Worker), but \(workers == 1 ? "1 worker serves" : "\(workers) workers serve (0 to \(workers - 1))"): it stays at \(here)")
            }
        case .handedOver(let worker):
            counters.backendHandovers += 1
            logger.debug("\(who) handed to worker \(worker), as its X-BlastBeat-Worker label asks")
        case .handoverFailed(let worker, let from, let address, let reason):
            counters.backendHandoverFailures += 1
            if warnings.allow("handover", identity, now: loop.now, interval: 60) {
                let what = from ? "could not adopt \(who) from worker \(worker)" : "could not hand \(who) from \(address) to worker \(worker)"
                logger.warning("\(what): \(reason); closed it (its libzmq connects again)")
            }
        }
    }

    package func backendRouter(droppedForwardedSendFrom worker: Int, identity: RawSpan, queuedBytes: Int) {
        if warnings.allow("mesh-drop", identity, now: loop.now, interval: 60) {
            logger.warning(
                "worker \(worker) sent a message for \(Self.printable(identity)) past twice max-node-queue (\(queuedBytes) bytes queued for its connection here): dropped, as are its next ones until the queue drains (blastbeat_worker_mesh_dropped_sends_total)")
        }
    }
}
