/// Health and load of every configured backend node, and the choice of node for a new request.
///
/// A node is identified by its ZeroMQ identity. Nodes start `unknown` (we have not heard from
/// them, but a send may succeed); any message from a node makes it `alive`; a send that libzmq
/// reports unroutable, or silence longer than the ping timeout, makes it `dead` until it speaks
/// again. Only `unknown` and `alive` nodes get new requests. Pure bookkeeping: time comes in as
/// arguments and the gateway does the I/O.
///
/// Instances: several processes may serve one configured node name by connecting with the
/// identity `NAME#SUFFIX` (any suffix). An instance is registered when its connection is admitted
/// (native engine) or the first time it sends a message (libzmq engine: a backend announces itself
/// with an unsolicited `pong`), and is then a node entry of its own, authorised for exactly the
/// vhosts that list `NAME`. At most `max-instances` exist per node; a dead instance's slot is reused.
///
/// A class: the gateway owns the one table and calls into it several times per request; as a struct held by
/// the gateway every call copied it (a retain and release of each of its arrays).
package final class NodeTable {
    package enum Health: Sendable, Equatable {
        case unknown
        case alive
        case dead
    }

    package struct Node: Sendable {
        package var identity: [UInt8]
        /// The configured node this entry serves as (its own index for configured nodes).
        package var base: Int
        package var health: Health = .unknown
        /// Loop time of the last message received from the node.
        package var lastSeen: Double = 0
        /// Loop time of the last ping sent to the node (none yet: -infinity).
        package var lastPinged: Double = -.infinity
        /// Requests sent to the node whose response has not completed.
        package var inFlight: Int = 0
        /// Counters for logs and tests.
        package var requests: Int = 0
    }

    // Stored properties skip the dynamic exclusivity checks (Core is built with them on): the gateway touches the
    // table from its loop thread only, and the checks cost ~900 instructions per request (callgrind).
    @exclusivity(unchecked) package private(set) var nodes: [Node] = []
    /// Whether a node not heard from yet may get requests (a send to it may succeed). Off when only a
    /// message can prove who holds an identity (CURVE on the libzmq engine).
    @exclusivity(unchecked) package var unknownNodesAreUsable = true
    /// Identity byte that separates a node name from an instance suffix ("#").
    package static let instanceSeparator = NodeKey.instanceSeparator
    @exclusivity(unchecked) private var byIdentity = ByteKeyIndex(caseInsensitive: false)
    /// Times each configured node (or one of its instances) went dead, by configured node index: kept
    /// per configured node because an instance's entry is reused by the next instance (metrics).
    @exclusivity(unchecked) package private(set) var deaths: [Int] = []
    /// Rotates the starting point of the fewest-in-flight scan so ties are spread round-robin.
    @exclusivity(unchecked) private var rotation = 0

    package init() {}

    /// Adds a node if it is not known yet; returns its index.
    @discardableResult
    package func add(_ identity: [UInt8]) -> Int {
        if let i = index(of: identity) { return i }
        nodes.append(Node(identity: identity, base: nodes.count))
        byIdentity.insert(identity, value: nodes.count - 1)
        return nodes.count - 1
    }

    /// Outcome of registering an instance identity.
    package enum InstanceRegistration: Equatable {
        /// A new entry was added: the caller must make it a candidate wherever `base` is.
        case added(index: Int, base: Int)
        /// A dead instance's entry was given to this identity.
        case reused(index: Int)
        /// Registered already, at this index.
        case known(index: Int)
        /// Not `NAME#SUFFIX` of a configured node.
        case notAnInstance
        /// The node has `limit` instances and none of them is dead and idle.
        case full(base: Int)
    }

    /// The configured node an identity speaks for: `NAME` itself, or `NAME` of `NAME#SUFFIX`.
    package func configuredNode(for identity: RawSpan) -> Int? {
        identity.withUnsafeBytes { configuredNode(unchecked: $0) }
    }

    private func configuredNode(unchecked identity: UnsafeRawBufferPointer) -> Int? {
        if let i = byIdentity.value(unchecked: identity, tag: 0), nodes[i].base == i { return i }
        guard let separator = identity.firstIndex(of: Self.instanceSeparator), separator > 0,
            separator < identity.count - 1
        else { return nil }
        guard let base = byIdentity.value(unchecked: UnsafeRawBufferPointer(rebasing: identity[..<separator]), tag: 0),
            nodes[base].base == base
        else { return nil }
        return base
    }

    /// Registers `NAME#SUFFIX` as an instance of the configured node `NAME`, if it has fewer than
    /// `limit` instances (or a dead, idle one whose entry can be reused).
    package func registerInstance(_ identity: RawSpan, limit: Int) -> InstanceRegistration {
        guard let base = configuredNode(for: identity), identity.byteCount > nodes[base].identity.count else {
            return .notAnInstance
        }
        if let known = index(of: identity) { return .known(index: known) }
        let full = identity.withUnsafeBytes { Array($0) }
        var instances = 0
        var reusable: Int? = nil
        for i in nodes.indices where nodes[i].base == base && i != base {
            instances += 1
            if reusable == nil && nodes[i].health == .dead && nodes[i].inFlight == 0 { reusable = i }
        }
        if instances < limit {
            nodes.append(Node(identity: full, base: base))
            byIdentity.insert(full, value: nodes.count - 1)
            return .added(index: nodes.count - 1, base: base)
        }
        guard let slot = reusable else { return .full(base: base) }
        byIdentity.remove(nodes[slot].identity)
        nodes[slot] = Node(identity: full, base: base)
        byIdentity.insert(full, value: slot)
        return .reused(index: slot)
    }

    /// The entry of `identity`: a hash lookup in place, so a message's identity frame needs no copy.
    package func index(of identity: RawSpan) -> Int? { byIdentity.value(for: identity) }

    package func index(of identity: [UInt8]) -> Int? { byIdentity.value(for: identity) }

    /// Records a message from node `i`. Returns true when the node came back from `dead`.
    @discardableResult
    package func heard(from i: Int, now: Double) -> Bool {
        let revived = nodes[i].health == .dead
        nodes[i].health = .alive
        nodes[i].lastSeen = now
        return revived
    }

    /// Marks node `i` dead. Returns true when it was not dead before.
    @discardableResult
    package func markDead(_ i: Int) -> Bool {
        let changed = nodes[i].health != .dead
        nodes[i].health = .dead
        if changed {
            let base = nodes[i].base
            while deaths.count <= base { deaths.append(0) }
            deaths[base] += 1
        }
        return changed
    }

    package func isUsable(_ i: Int) -> Bool {
        switch nodes[i].health {
        case .alive: true
        case .unknown: unknownNodesAreUsable
        case .dead: false
        }
    }

    /// The usable node among `candidates` with the fewest requests in flight, skipping `excluded`.
    package func choose(from candidates: [Int], excluding excluded: [Int] = []) -> Int? {
        guard !candidates.isEmpty else { return nil }
        rotation &+= 1
        var best: Int? = nil
        let start = rotation % candidates.count
        for k in 0..<candidates.count {
            let i = candidates[(start + k) % candidates.count]
            if !isUsable(i) || excluded.contains(i) { continue }
            if best == nil || nodes[i].inFlight < nodes[best!].inFlight { best = i }
        }
        return best
    }

    package func requestStarted(on i: Int) {
        nodes[i].inFlight += 1
        nodes[i].requests += 1
    }

    package func requestFinished(on i: Int) {
        nodes[i].inFlight = max(0, nodes[i].inFlight - 1)
    }

    /// What the ping timer should do with node `i` at `now`.
    package enum PingAction: Equatable {
        case nothing
        case ping
        /// Silent past the timeout: declare it dead (and ping it, so it can come back).
        case declareDead
    }

    /// A node is pinged at most once per `frequency`: when silent that long (alive), or to find out whether it
    /// is there (unknown, dead).
    package func pingAction(for i: Int, now: Double, frequency: Double, timeout: Double) -> PingAction {
        let node = nodes[i]
        switch node.health {
        case .alive:
            if now - node.lastSeen > timeout { return .declareDead }
            return now - node.lastSeen >= frequency && now - node.lastPinged >= frequency ? .ping : .nothing
        case .unknown, .dead:
            return now - node.lastPinged >= frequency ? .ping : .nothing
        }
    }

    /// A ping went to node `i` at `now`.
    package func pinged(_ i: Int, now: Double) {
        nodes[i].lastPinged = now
    }
}
