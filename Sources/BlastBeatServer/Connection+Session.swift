import BlastBeatCore
import BlastBeatSystem

/// The connection as the transport of its HTTP session (Sources/BlastBeatCore/Session/HTTPSession.swift):
/// it feeds the session events and carries out the actions they return.
extension Connection {
    /// Feeds the session one event and carries out the action it returns.
    @inline(__always)
    func sessionEvent(_ event: (inout HTTPSession) -> HTTPSessionAction) {
        let before = session.slotNode
        let action = event(&session)
        settleSlot(heldBefore: before)
        perform(action)
    }

    /// The one place node slots are taken and released: the session holds a slot of `slotNode` in the
    /// states that wait for or relay a response, so a change of `slotNode` across an event is a release
    /// of the old node's slot and a take of the new one's.
    func settleSlot(heldBefore before: Int?) {
        let after = session.slotNode
        if before == after { return }
        if let before { gateway.nodes.requestFinished(on: before) }
        if let after { gateway.nodes.requestStarted(on: after) }
    }

    /// Ends the session as the connection goes: the slot goes back and a node that knows the sid gets `end`.
    func endSession() {
        let before = session.slotNode
        let nodeToTell = session.clientGone()
        settleSlot(heldBefore: before)
        if let nodeToTell { gateway.sendEnd(to: nodeToTell, sid: sid) }
    }

    func perform(_ action: HTTPSessionAction) {
        switch action {
        case .none:
            return
        case .write(let bytes, let complete):
            enqueue(bytes)
            log.bytesSent += bytes.count
            if complete { responseFinished() }
        case .writeDroppingExcess(let bytes, let excess):
            enqueue(bytes)
            log.bytesSent += bytes.count
            gateway.counters.outOfOrderBackendMessages += 1
            gateway.logger.warning("node \(nodeName) sent \(excess) bytes past Content-Length; dropped")
            responseFinished()
        case .writeChunk(let payload, let complete):
            writeChunk(payload)
            if complete { responseFinished() }
        case .startResponse(let head, let status, let insertingChunkedAt, let complete):
            log.status = status
            log.bytesSent = 0
            if let blankLine = insertingChunkedAt {
                // Our framing header goes before the blank line; the rest goes out verbatim.
                enqueue(UnsafeRawBufferPointer(rebasing: head[0..<blankLine]))
                enqueue("Transfer-Encoding: chunked\r\n")
                enqueue(UnsafeRawBufferPointer(rebasing: head[blankLine...]))
            } else {
                enqueue(head)
            }
            if complete { responseFinished() }
        case .acceptUpgrade(let head):
            backendAcceptedUpgrade(head: head)
        case .finishAndClose(let lastChunk, let truncated):
            if lastChunk { enqueue("0\r\n\r\n") }
            if truncated { gateway.counters.backendErrors += 1 }
            responseFinished()
            closeAfterFlush()
        case .close:
            closeAfterFlush()
        case .resend(let preferred):
            // A replaced node's new connection may take the request again.
            if let preferred { triedNodes.removeAll { $0 == preferred } }
            dispatchToNode(preferring: preferred)
        case .answerError(let failure):
            report(failure)
            sendErrorAndClose(status: failure.status, message: failure.description, retryAfter: failure.retryAfter)
        case .abort(let failure):
            report(failure)
            if case .webSocketNodeGone = failure, let webSocket {
                return failWebSocket(.internalServerError, session: webSocket)
            }
            abort(failure.description)
        case .drop(let reason):
            gateway.counters.outOfOrderBackendMessages += 1
            if case .headersWithoutRequest = reason {
                gateway.logger.warning("node sent headers with no response pending on \(sid.hex); dropped")
            }
        }
    }

    /// Counts and logs a failure the backend, or the wait for it, caused.
    private func report(_ failure: SessionFailure) {
        if failure.isBackendError { gateway.counters.backendErrors += 1 }
        switch failure {
        case .invalidHead(let error):
            gateway.logger.warning("invalid response head from node \(nodeName): \(error)")
        case .invalidChunkedBody(let error):
            gateway.logger.warning("invalid chunked body from node \(nodeName): \(error)")
        case .retriedTooOften(let times):
            gateway.logger.warning("request on \(sid.hex) retried \(times) times; giving up")
        case .backendTimeout:
            gateway.logger.warning("node \(nodeName) did not answer within \(gateway.config.timeouts.backend)s")
        default:
            break
        }
    }
}
