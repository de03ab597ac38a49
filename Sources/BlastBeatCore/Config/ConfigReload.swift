/// What a reload (SIGHUP) changes: the running configuration and the one just read, merged so that every
/// vhost keeps its index (no I/O here; Gateway+Reload.swift applies the result).
///
/// Requests in flight hold their vhost's index (its in-flight count, its limits, its name in logs), so
/// indices never move: a vhost still configured keeps its index with its new settings, a removed one stays
/// in its place marked `isRetired` (served nowhere), and a new one takes the slot of a retired vhost that
/// has nothing in flight any more, else a new index at the end. A vhost removed and added again gets its
/// old index back. Listeners are matched by address and kind (`bind` or `bind-ssl`).
package struct ConfigReload {
    /// The configuration to run from now on: the new file's settings in the running index space.
    package var merged: Configuration
    /// For each vhost of the new file (in its order), its index in `merged`.
    package var indexOfNewVhost: [Int]
    package var addedVhosts: [String] = []
    package var removedVhosts: [String] = []
    package var changedVhosts: [String] = []
    /// Indices in `merged.listeners` of listeners to open, and running listener indices to close.
    package var addedListeners: [Int] = []
    package var removedListeners: [Int] = []
    /// For each listener of `merged`, the running listener it continues (nil for a new one).
    package var runningListener: [Int?] = []
    /// Whether a `[blastbeat]` setting other than listeners changed (limits, timeouts, logs, …).
    package var globalsChanged = false

    /// Settings that name resources the running process holds (the ROUTER's socket and key, the user it runs
    /// as) and that a reload therefore cannot change; a restart applies them.
    package static let restartOnlyKeys = ["zmq", "zmq-engine", "curve-key", "uid", "gid", "workers"]

    /// Merges `next` into `running`. `isIdle(i)` says whether running vhost `i` has nothing in flight (only
    /// then may a retired slot be given to another vhost). Throws, at the key's line in `next`, when a
    /// restart-only key changed.
    package static func plan(
        running: Configuration, next: Configuration, isIdle: (Int) -> Bool
    ) throws(ConfigError) -> ConfigReload {
        try checkRestartOnlyKeys(running: running, next: next)
        var merged = next
        var vhosts = running.vhosts
        var slotByName: [String: Int] = [:]
        for (index, vhost) in vhosts.enumerated() { slotByName[vhost.name] = index }
        let nextNames = Set(next.vhosts.map(\.name))
        var freeSlots = vhosts.indices.filter {
            vhosts[$0].isRetired && !nextNames.contains(vhosts[$0].name) && isIdle($0)
        }.reversed() as [Int]
        var plan = ConfigReload(merged: next, indexOfNewVhost: [])
        var placed = [Bool](repeating: false, count: vhosts.count)
        for vhost in next.vhosts {
            let index: Int
            if let existing = slotByName[vhost.name] {
                index = existing
                if vhosts[existing].isRetired {
                    plan.addedVhosts.append(vhost.name)
                } else if !sameSettings(vhosts[existing], vhost) {
                    plan.changedVhosts.append(vhost.name)
                }
                vhosts[existing] = vhost
            } else if let free = freeSlots.popLast() {
                index = free
                plan.addedVhosts.append(vhost.name)
                vhosts[free] = vhost
            } else {
                index = vhosts.count
                plan.addedVhosts.append(vhost.name)
                vhosts.append(vhost)
                placed.append(false)
            }
            placed[index] = true
            plan.indexOfNewVhost.append(index)
        }
        for index in vhosts.indices where !placed[index] && !vhosts[index].isRetired {
            plan.removedVhosts.append(vhosts[index].name)
            vhosts[index].isRetired = true
        }
        merged.vhosts = vhosts
        for index in merged.listeners.indices {
            merged.listeners[index].dedicatedVhosts = merged.listeners[index].dedicatedVhosts?
                .map { plan.indexOfNewVhost[$0] }.sorted()
        }
        plan.matchListeners(running: running.listeners, next: merged.listeners)
        plan.globalsChanged = !sameGlobals(running, next)
        plan.merged = merged
        return plan
    }

    private mutating func matchListeners(running: [ListenerConfig], next: [ListenerConfig]) {
        var unmatched = Array(running.indices)
        for (index, listener) in next.enumerated() {
            if let position = unmatched.firstIndex(where: {
                running[$0].address == listener.address && running[$0].tls == listener.tls
            }) {
                runningListener.append(unmatched.remove(at: position))
            } else {
                runningListener.append(nil)
                addedListeners.append(index)
            }
        }
        removedListeners = unmatched
    }

    private static func checkRestartOnlyKeys(running: Configuration, next: Configuration) throws(ConfigError) {
        let changed: String?
        if running.zmqEndpoint != next.zmqEndpoint {
            changed = "zmq"
        } else if running.zmqEngine != next.zmqEngine {
            changed = "zmq-engine"
        } else if running.curveKeyFile != next.curveKeyFile {
            changed = "curve-key"
        } else if running.uid != next.uid {
            changed = "uid"
        } else if running.gid != next.gid {
            changed = "gid"
        } else if running.workers != next.workers {
            changed = "workers"
        } else {
            changed = nil
        }
        guard let changed else { return }
        let line = changed == "curve-key" ? next.curveKeyLine : changed == "workers" ? next.workersLine : 0
        throw next.error(
            at: line, key: changed,
            "changed, but a reload cannot change \(restartOnlyKeys.joined(separator: ", ")) (the running process "
                + "holds what they name): restart the gateway to apply it, or put the old value back")
    }

    /// Whether two versions of a vhost serve the same way; where their lines are does not matter.
    private static func sameSettings(_ a: VirtualHost, _ b: VirtualHost) -> Bool {
        var (a, b) = (a, b)
        (a.line, a.certificateLine, a.keyLine) = (0, 0, 0)
        (b.line, b.certificateLine, b.keyLine) = (0, 0, 0)
        a.nodeKeys = a.nodeKeys.map { var key = $0; key.line = 0; return key }
        b.nodeKeys = b.nodeKeys.map { var key = $0; key.line = 0; return key }
        return a == b
    }

    /// Whether the `[blastbeat]` settings other than listeners and vhosts are the same.
    private static func sameGlobals(_ a: Configuration, _ b: Configuration) -> Bool {
        var (a, b) = (a, b)
        for c in [\Configuration.curveKeyLine, \.certificateLine, \.keyLine] {
            a[keyPath: c] = 0
            b[keyPath: c] = 0
        }
        (a.vhosts, a.listeners, a.sources) = ([], [], ConfigSources())
        (b.vhosts, b.listeners, b.sources) = ([], [], ConfigSources())
        return a == b
    }

    /// One line for the log: what the reload changed.
    package var summary: String {
        func names(_ list: [String]) -> String {
            let shown = list.prefix(5).joined(separator: ", ")
            return list.count > 5 ? "\(shown), … (\(list.count))" : shown
        }
        var parts: [String] = []
        if !addedVhosts.isEmpty { parts.append("vhosts added: \(names(addedVhosts))") }
        if !removedVhosts.isEmpty { parts.append("vhosts removed: \(names(removedVhosts))") }
        if !changedVhosts.isEmpty { parts.append("vhosts changed: \(names(changedVhosts))") }
        let opened = addedListeners.map { "\(merged.listeners[$0].tls ? "bind-ssl" : "bind") \(merged.listeners[$0].address)" }
        if !opened.isEmpty { parts.append("listeners opened: \(names(opened))") }
        if !removedListeners.isEmpty { parts.append("listeners closed: \(removedListeners.count)") }
        if globalsChanged { parts.append("[blastbeat] settings changed") }
        return parts.isEmpty ? "no change in the configuration" : parts.joined(separator: "; ")
    }
}
