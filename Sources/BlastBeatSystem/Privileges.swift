package import Glibc

/// Switches a root process to an unprivileged user and group after the sockets are bound.
package enum Privileges {
    /// Resolves names (or numbers) to the account to switch to; nil when not running as root (there is nothing
    /// to switch). Unknown names are an error, never uid 0 (the original turned an unknown name into 0 and
    /// stayed root).
    package static func target(user: String, group: String) throws(SystemError) -> (uid: uid_t, gid: gid_t)? {
        if getuid() != 0 && geteuid() != 0 { return nil }
        let gid: gid_t
        if let g = getgrnam(group) {
            gid = g.pointee.gr_gid
        } else if let n = UInt32(group) {
            gid = n
        } else {
            throw SystemError(call: "unknown group \"\(group)\" (set gid = NAME in [blastbeat])", errno: EINVAL)
        }
        let uid: uid_t
        if let u = getpwnam(user) {
            uid = u.pointee.pw_uid
        } else if let n = UInt32(user) {
            uid = n
        } else {
            throw SystemError(call: "unknown user \"\(user)\" (set uid = NAME in [blastbeat])", errno: EINVAL)
        }
        return (uid, gid)
    }

    /// Drops to `target` for good (supplementary groups cleared, and checked that root cannot be regained).
    package static func drop(to target: (uid: uid_t, gid: gid_t)) throws(SystemError) {
        let (uid, gid) = target
        if setgroups(0, nil) != 0 { throw SystemError(call: "setgroups", errno: errno) }
        if setgid(gid) != 0 { throw SystemError(call: "setgid(\(gid))", errno: errno) }
        if setuid(uid) != 0 { throw SystemError(call: "setuid(\(uid))", errno: errno) }
        if uid != 0 && setuid(0) == 0 { throw SystemError(call: "privilege drop could be undone", errno: EPERM) }
    }
}
