/// Things that went wrong without taking anything down, counted for logs and `--stats` output.
package struct Counters {
    /// Backend messages dropped: wrong frame count, unknown type, unknown sid, wrong identity,
    /// or a message that makes no sense in the session's state.
    package var malformedBackendMessages = 0
    package var unknownSessionMessages = 0
    package var forgedIdentityMessages = 0
    package var outOfOrderBackendMessages = 0
    /// Backend connections closed for breaking ZMTP (native engine): bad greeting, oversized message, …
    package var backendProtocolErrors = 0
    /// Backend connections refused at the handshake: an identity no vhost lists, a CURVE key not
    /// listed for the node, an identity held by another key, or past `max-instances`.
    package var refusedBackendClaims = 0
    /// Backend connections handed to the worker their `X-BlastBeat-Worker` label names (Gateway+Handover.swift),
    /// handovers that failed (the connection was closed), and labels that named no worker.
    package var backendHandovers = 0
    package var backendHandoverFailures = 0
    package var mislabelledBackendConnections = 0
    package var clientErrors = 0
    package var backendErrors = 0
    package var timeouts = 0
    package var acceptedConnections = 0
    package var requests = 0
    /// Requests answered 503 because their vhost's nodes held `max-in-flight` requests already.
    package var vhostBusyRefusals = 0
    /// Connections closed at once because their client address held `max-client-connections` already.
    package var clientConnectionRefusals = 0
    /// Requests answered 429 because their client address was past its vhost's `client-rate`.
    package var clientRateRefusals = 0
    /// Requests answered 503 (and their connections closed) because their vhost held its `max-connections`.
    package var vhostConnectionRefusals = 0
    /// Connections closed at `max-connections` to make room for a new one: ones refused by an admission check
    /// first, then idle keep-alive ones (oldest first), then the slowest senders of a request head.
    package var connectionsClosedForRoom = 0
    /// New connections refused at once at `max-connections` because their address held its share already.
    package var connectionsOverShare = 0
    /// Requests that waited for a node right after the start (Gateway+NodeWait.swift).
    package var requestsWaitedForNode = 0
    /// Times a connection stopped reading its client because its node's queue was full.
    package var readPausesForNodeQueue = 0
    /// Times a backend connection (libzmq: every backend) was not read because it sent uncredited bytes at
    /// `max-buffered`.
    package var backendReadPauses = 0
    /// `credit` messages sent, and messages that came after the session's credit was used up.
    package var creditGrants = 0
    package var creditOverruns = 0
    /// Times a credited session was left without credit: its share full, or the budget.
    package var sessionsThrottled = 0
}
