import BlastBeatCore
import BlastBeatSystem

/// Credit for the session's node (docs/PROTOCOL.md, "Credit"): the bytes it may send for this sid, kept so
/// that the session's response bytes queued plus credit outstanding stay within its share of the budget.
extension GatewaySession {
    /// The request went to `node`: the credit starts over, and a node that takes credit gets the first share.
    func startCredit(node: Int) {
        gateway.budget.reservedCreditChanged(by: credit.start(credited: gateway.flowControl(of: node) == .credit))
        if credit.isCredited { grantCredit(afterMessage: false) }
    }

    /// Grants what the session's share, its client's queue and the budget allow. `afterMessage`: called for a
    /// message the node sent, so a share found full is counted as a session throttled.
    func grantCredit(afterMessage: Bool) {
        guard let node, nodeKnowsSession, !transport.closed else { return }
        let budget = gateway.budget
        let share = budget.share(
            sessions: gateway.sessions.count + gateway.http2Streams.count, maxOutputBuffer: transport.outputLimit)
        switch credit.grant(queued: transport.queuedResponseBytes, share: share, room: budget.room(nodeBytes: gateway.nodeBytes)) {
        case .none:
            if afterMessage, case .credited(let outstanding) = credit.state, outstanding <= 0 {
                gateway.counters.sessionsThrottled += 1
            }
        case .grant(let bytes, let reservationChange):
            gateway.budget.reservedCreditChanged(by: reservationChange)
            gateway.sendCredit(bytes, to: node, sid: sid)
        case .waitForRoom:
            gateway.waitForCreditRoom(self)
        }
    }

    /// The exchange is over (response complete, client gone): the unused credit's reservation goes back.
    func finishCredit() {
        gateway.budget.reservedCreditChanged(by: credit.finish())
    }
}
