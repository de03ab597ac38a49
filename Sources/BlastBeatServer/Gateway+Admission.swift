package import BlastBeatCore
package import BlastBeatSystem

/// Who may speak for which node (native engine): every finished ZMTP handshake claims an identity, and
/// the claim is admitted or refused here before the connection is used.
///
/// - The identity must be a configured node `NAME` or an instance `NAME#SUFFIX` of one; anything else
///   could never serve a vhost and would only hold a connection slot.
/// - With `curve-key`, the key the connection proved must be listed (`node-key`) for `NAME` by a vhost,
///   and an identity already connected with another key stays with its holder: a tenant's key cannot
///   take another tenant's node, and a key rotation works by listing both keys for a while.
/// - Without CURVE the newer connection takes the identity over (a restarted process is reachable at
///   once), and two live processes doing that to each other are reported, at most once a minute.
/// - `NAME#SUFFIX` instances beyond `max-instances` are refused.
///
/// Refusals are counted and logged at warning with the peer's address, at most once per identity
/// and reason every 10 seconds (a refused libzmq peer reconnects ten times a second).
extension Gateway {
    package func backendRouterAdmit(
        identity: RawSpan, key: CurveKey?, address: String, holder: BackendIdentityHolder?
    ) -> String? {
        let name = Self.printable(identity)
        guard !identity.isEmpty else {
            return refuseClaim(identity, "a backend connection from \(address) has no identity (set ZMQ_IDENTITY to a node name)")
        }
        guard let base = nodes.configuredNode(for: identity), nodeIsListed[base] else {
            return refuseClaim(identity, "\(address) claims identity \(name), which no vhost lists as a node (or NODE#INSTANCE of one)")
        }
        if backendKeys.server != nil {
            guard let key, backendKeys.byNode[nodes.nodes[base].identity]?.contains(key) == true else {
                return refuseClaim(
                    identity, "\(address) claims \(name) with key \(key?.z85 ?? "none"), which no vhost lists for node \(nodeName(base)) (node-key)")
            }
            if let holder, holder.key != key {
                return refuseClaim(
                    identity, "\(address) claims \(name) with key \(key.z85), but it is connected from \(holder.address) with another key")
            }
        }
        if let holder, warnings.allow("takeover", identity, now: loop.now, interval: 60) {
            // A restarted process finds no holder (its old connection closed with it); a live holder means
            // two processes (or a hung one), which take the identity from each other on every reconnect.
            logger.warning(
                "two processes connect as \(name) (\(holder.address), now \(address)\(key == nil ? "" : ", same key")), taking the connection from each other; give each its own NODE#INSTANCE (the SDKs pick one unless told --plain-identity)\(key == nil ? ", or set curve-key" : "")")
        }
        if nodes.index(of: identity) == nil {
            switch nodes.registerInstance(identity, limit: instanceLimit(base)) {
            case .known, .notAnInstance:
                break
            case .full:
                return refuseClaim(
                    identity, "\(address) claims \(name): node \(nodeName(base)) has \(instanceLimit(base)) live instances (max-instances)")
            case .reused(let index):
                logger.info("node instance \(name) joined from \(address) (reusing a dead instance's slot)")
                _ = index
            case .added(let index, let base):
                addInstanceToVhosts(index, base: base)
                logger.info("node instance \(name) joined node \(nodeName(base)) from \(address)")
            }
        }
        return nil
    }

    /// After a reload (see ZMTPRouter.recheckConnectedPeers): the claim checks that depend on the configuration.
    package func backendRouterRecheck(identity: RawSpan, key: CurveKey?) -> (refusal: String?, busy: Bool) {
        let busy = nodes.index(of: identity).map { nodes.nodes[$0].inFlight > 0 } ?? false
        guard let base = nodes.configuredNode(for: identity), nodeIsListed[base] else {
            return ("no vhost lists \(Self.printable(identity)) any more", busy)
        }
        if backendKeys.server != nil,
            key.map({ backendKeys.byNode[nodes.nodes[base].identity]?.contains($0) == true }) != true
        {
            return ("key \(key?.z85 ?? "none") is no longer listed for node \(nodeName(base)) (node-key)", busy)
        }
        return (nil, busy)
    }

    func refuseClaim(_ identity: RawSpan, _ reason: String) -> String {
        counters.refusedBackendClaims += 1
        if warnings.allow("refused", identity, now: loop.now, interval: 10) {
            logger.warning("refused a backend connection: \(reason)")
        }
        return reason
    }

    /// `max-instances` for a configured node: the smallest of the vhosts that list it (each tenant's
    /// limit holds), else the `[blastbeat]` value.
    func instanceLimit(_ base: Int) -> Int {
        var limit: Int? = nil
        for (v, vhost) in config.vhosts.enumerated() where vhostNodes[v].contains(base) {
            if let own = vhost.maxInstances { limit = min(limit ?? own, own) }
        }
        return limit ?? config.maxInstances
    }

    func addInstanceToVhosts(_ index: Int, base: Int) {
        for v in vhostNodes.indices where vhostNodes[v].contains(base) { vhostNodes[v].append(index) }
    }

    /// Without CURVE any process that reaches the ROUTER may claim any node: say so once at start when
    /// that matters, i.e. when vhosts are served by different nodes (several tenants).
    func warnIfTenantsAreUnauthenticated() {
        guard backendKeys.server == nil else { return }
        let distinct = Set(config.vhosts.filter { !$0.isRetired }.map { Set($0.nodes) })
        if distinct.count > 1 {
            logger.warning(
                "vhosts served by different nodes share the ROUTER \(config.zmqEndpoint) without authentication: any backend that reaches it can claim any node; set curve-key and node-key (README, Multi-tenant hosting)")
        }
    }
}

// MARK: libzmq engine

/// libzmq cannot ask who may claim an identity: its ZAP request names only the key, and the identity is
/// the peer's choice. So with CURVE on the libzmq engine, ZAP lets in the keys that some vhost lists, each
/// connection's messages carry its key as User-Id, and every message is checked against the node it
/// comes from: a listed key claiming another node's identity is cut off from that node (its messages are
/// dropped, the node gets no requests until a message with a listed key arrives), counted and logged.
/// Hand-over is off, so a connected node keeps its identity against later claimants.
extension Gateway {
    /// ZAP: a connection that proved `key` gets in when some vhost lists the key.
    package func backendRouterAdmitKey(_ key: CurveKey?, address: String) -> String? {
        if let key, backendKeys.byNode.values.contains(where: { $0.contains(key) }) { return nil }
        let reason = "CURVE key \(key?.z85 ?? "(none)") from \(address) is not listed by any node-key"
        let keyBytes = key?.bytes ?? []
        return refuseClaim(keyBytes.span.bytes, reason)
    }

    /// Whether a message from a connection with `key` may speak for `identity`.
    package func backendRouterAllowsClaim(identity: RawSpan, key: CurveKey?) -> Bool {
        guard backendKeys.server != nil, let base = nodes.configuredNode(for: identity) else {
            return true  // an unconfigured identity is dropped (and counted) when it is delivered
        }
        if let key, backendKeys.byNode[nodes.nodes[base].identity]?.contains(key) == true { return true }
        _ = refuseClaim(identity, "a connection with key \(key?.z85 ?? "none") speaks as \(Self.printable(identity)), which no vhost lists for node \(nodeName(base)) (node-key); its messages are dropped")
        if let node = nodes.index(of: identity), nodes.markDead(node) {
            logger.warning("node \(nodeName(node)) gets no requests until a connection with its own key holds its identity")
            scheduleNodeFailure(node)
        }
        return false
    }
}

/// Rate limits for warnings a peer can trigger over and over: one line per (kind, identity) per
/// interval. Bounded: past 4,096 entries the old ones are forgotten.
struct WarningLimiter {
    private var lastWarned: [[UInt8]: Double] = [:]

    mutating func allow(_ kind: StaticString, _ identity: RawSpan, now: Double, interval: Double) -> Bool {
        var key: [UInt8] = []
        key.appendBytes(kind)
        key.append(0)
        key.appendBytes(identity)
        if let last = lastWarned[key], now - last < interval { return false }
        if lastWarned.count >= 4096 { lastWarned = lastWarned.filter { now - $0.value < interval } }
        if lastWarned.count >= 4096 { lastWarned.removeAll() }
        lastWarned[key] = now
        return true
    }
}
