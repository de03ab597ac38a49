/// `GET /metrics` with several worker processes (README.md, "Worker processes"): the texts every worker
/// rendered, merged into one exposition. A sample present in several texts is summed (each worker counts its
/// own clients, requests and backend connections), except where every worker sees the same thing: those take
/// the largest value (`maximum`: a node's connected instances, which every worker sees through the mesh) or the
/// smallest (`minimum`: the start time). For the families in `perWorker` each worker's own samples follow the
/// merged ones, with a `worker` label.
///
/// The texts come from the gateway's own workers; a line that does not parse as a sample is left out.
package enum PrometheusMerge {
    package struct Rules {
        package var minimum: Set<String> = []
        package var maximum: Set<String> = []
        package var perWorker: Set<String> = []

        package init(minimum: Set<String> = [], maximum: Set<String> = [], perWorker: Set<String> = []) {
            self.minimum = minimum
            self.maximum = maximum
            self.perWorker = perWorker
        }
    }

    private struct Family {
        var name: String
        var header: [Substring] = []
        var keys: [Substring] = []
        var merged: [Substring: Double] = [:]
        var byWorker: [Substring: [(worker: Int, value: Double)]] = [:]
    }

    package static func merge(_ texts: [(worker: Int, text: [UInt8])], rules: Rules) -> [UInt8] {
        var families: [Family] = []
        var index: [String: Int] = [:]
        for (worker, bytes) in texts {
            let text = String(decoding: bytes, as: UTF8.self)
            var current: Int? = nil
            for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
                if line.hasPrefix("#") {
                    let words = line.split(separator: " ", maxSplits: 3)
                    guard words.count >= 3 else { continue }
                    let name = String(words[2])
                    let position: Int
                    if let known = index[name] {
                        position = known
                    } else {
                        position = families.count
                        index[name] = position
                        families.append(Family(name: name))
                    }
                    current = position
                    if families[position].header.count < 2 && !families[position].header.contains(line) {
                        families[position].header.append(line)
                    }
                    continue
                }
                guard let current, let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...])
                else { continue }
                let key = line[..<space]
                let name = String(key.prefix { $0 != "{" })
                let family = families[current].name
                if families[current].merged[key] == nil {
                    families[current].keys.append(key)
                    families[current].merged[key] = value
                } else if let old = families[current].merged[key] {
                    families[current].merged[key] =
                        rules.minimum.contains(family) || rules.minimum.contains(name) ? min(old, value)
                        : rules.maximum.contains(family) || rules.maximum.contains(name) ? max(old, value) : old + value
                }
                if rules.perWorker.contains(family) { families[current].byWorker[key, default: []].append((worker, value)) }
            }
        }
        var out = ""
        for family in families {
            for line in family.header { out += line + "\n" }
            for key in family.keys { out += "\(key) \(format(family.merged[key] ?? 0))\n" }
            for key in family.keys {
                for (worker, value) in family.byWorker[key] ?? [] {
                    let labelled = key.hasSuffix("}") ? "\(key.dropLast()),worker=\"\(worker)\"}" : "\(key){worker=\"\(worker)\"}"
                    out += "\(labelled) \(format(value))\n"
                }
            }
        }
        return Array(out.utf8)
    }

    /// As PrometheusText writes values: whole numbers without a fraction, others in Swift's shortest form.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return value.description
    }
}
