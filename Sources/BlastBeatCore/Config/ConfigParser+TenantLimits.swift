/// Keys that keep one tenant's clients from taking what belongs to the others (issue #15; README "Limits per
/// vhost"): `client-rate` and `client-burst`, in `[blastbeat]` as the default and in a vhost for its own, and a
/// vhost's own `max-connections` and `access-log`.
extension ConfigParser.Builder {
    /// Returns false when `key` is not one of these.
    mutating func applyMainTenantLimit(key: String, value: String, line: Int) throws(ConfigError) -> Bool {
        switch key {
        case "client-rate":
            let rate = try requestRate(value, key, line)
            config.clientRate = rate == 0 ? nil : rate
        case "client-burst":
            config.clientBurst = try integer(value, key, line, minimum: 1, what: "a whole number of requests >= 1")
        default:
            return false
        }
        return true
    }

    /// Returns false when `key` is not one of these.
    mutating func applyVhostTenantLimit(_ index: Int, key: String, value: String, line: Int) throws(ConfigError) -> Bool {
        switch key {
        case "client-rate":
            vhosts[index].clientRate = try requestRate(value, key, line)
        case "client-burst":
            vhosts[index].clientBurst = try integer(value, key, line, minimum: 1, what: "a whole number of requests >= 1")
            vhosts[index].clientBurstLine = line
        case "max-connections":
            vhosts[index].maxConnections = try integer(value, key, line, minimum: 1, what: "a whole number >= 1")
            vhosts[index].maxConnectionsLine = line
        case "access-log":
            vhosts[index].host.accessLog =
                value == "off" ? .off : .file(try path(value, key, line, what: "a file path, - (stdout) or off"))
            vhosts[index].host.accessLogLine = line
        default:
            return false
        }
        return true
    }

    /// Requests per second: a decimal number greater than 0 (`0.5` is one request every two seconds), or `off`
    /// (returned as 0) so a vhost can turn off the default of `[blastbeat]`.
    func requestRate(_ value: String, _ key: String, _ line: Int) throws(ConfigError) -> Double {
        if value.lowercased() == "off" { return 0 }
        let parts = value.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        let wellFormed =
            (1...2).contains(parts.count) && value.utf8.count <= 20
            && parts.allSatisfy { $0.allSatisfy(IPAddressText.isDigit) } && !parts.allSatisfy(\.isEmpty)
            && !(parts.count == 2 && parts[1].isEmpty)
        guard wellFormed, let rate = Double(value), rate > 0, rate <= 1_000_000 else {
            throw error(
                line, key,
                "expected requests per second per client address, a number greater than 0 and at most 1000000 "
                    + "(like 10 or 0.5), or off, got \(value.debugDescription)")
        }
        return rate
    }

    /// A vhost's rate and burst: its own, else `[blastbeat]`'s; the burst defaults to one second's worth of
    /// requests (at least 1).
    func resolveTenantLimits(_ draft: ConfigParser.VhostDraft, into limits: inout VhostLimits) {
        limits.maxConnections = draft.maxConnections
        let rate = draft.clientRate ?? config.clientRate
        limits.clientRate = rate == 0 ? nil : rate
        if let rate = limits.clientRate {
            limits.clientBurst = draft.clientBurst ?? config.clientBurst ?? max(1, Int(rate.rounded(.up)))
        }
    }

    /// A `client-burst` with no rate to go with it would silently do nothing. A vhost's `max-connections` above
    /// the total could never be reached: that is a mistake in the file (a value per vhost above `[blastbeat]`'s
    /// makes sense only for the per-request limits).
    func checkTenantLimits() throws(ConfigError) {
        for draft in vhosts {
            if let own = draft.maxConnections, own > config.maxConnections {
                throw error(
                    draft.maxConnectionsLine, "max-connections",
                    "expected at most [blastbeat]'s max-connections (\(config.maxConnections)), the total for all "
                        + "vhosts, got \(own) for vhost \(draft.host.name)")
            }
        }
        for (index, draft) in vhosts.enumerated() where draft.clientBurst != nil && config.vhosts[index].limits.clientRate == nil {
            throw error(
                draft.clientBurstLine, "client-burst",
                "client-burst needs a client-rate (in this section or in [blastbeat]); vhost \(draft.host.name) has none")
        }
        if config.clientBurst != nil && config.clientRate == nil && !config.vhosts.contains(where: { $0.limits.clientRate != nil }) {
            throw error(
                mainKeyLines["client-burst"] ?? 0, "client-burst", "client-burst needs a client-rate (in [blastbeat] or a vhost)")
        }
    }
}
