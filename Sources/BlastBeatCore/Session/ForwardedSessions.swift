/// The sessions of other workers in flight on a backend connection held by this one (README.md, "Worker
/// processes"): a `uwsgi` forwarded to it starts one, an `end` (from either side) or a `retry` from the backend
/// ends it. A reload that no longer admits the connection keeps it while this is not empty, as for the holder's
/// own requests in flight, so another worker's request to a removed vhost still finishes.
///
/// Bounded by `limit`: past it a session is not recorded (the connection may then be closed with it in flight
/// once the others end, the behaviour without this record).
package struct ForwardedSessions {
    private var sids = Set<SessionID>()
    package static let limit = 65_536

    package init() {}

    package var isEmpty: Bool { sids.isEmpty }
    package var count: Int { sids.count }

    package mutating func requestSent(_ sid: SessionID) {
        if sids.count < Self.limit { sids.insert(sid) }
    }

    package mutating func ended(_ sid: SessionID) {
        sids.remove(sid)
    }

    /// Every session of worker `worker` (its sids start with its index) is gone with it.
    package mutating func workerGone(_ worker: Int) {
        sids = sids.filter { sid in sid.withBytes { Int($0[0]) } != worker }
    }
}
