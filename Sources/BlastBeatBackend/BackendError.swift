/// An error from the backend SDK: a bad argument or key, a ZeroMQ failure, or a response API used out of order.
///
/// A struct around a private enum, so that kinds can be added without breaking callers' `switch`es. Compare
/// with the static members (`error == .responseAlreadyStarted`); equality looks at the kind only, not at
/// the detail text.
public struct BackendError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Kind: Hashable, Sendable {
        case invalidIdentity
        case invalidEndpoint
        case invalidArgument
        case curveKeyUnreadable
        case invalidCurveKey
        case curveUnavailable
        case socket
        case alreadyRunning
        case invalidStatus
        case invalidHeader
        case responseAlreadyStarted
        case responseNotStarted
        case sessionEnded
        case notWebSocket
        case sendTimedOut
    }

    private var kind: Kind
    private var detail: String

    private init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public static func == (lhs: BackendError, rhs: BackendError) -> Bool { lhs.kind == rhs.kind }
    public func hash(into hasher: inout Hasher) { hasher.combine(kind) }

    public var description: String { detail }

    /// The node identity is empty, longer than 255 bytes, or starts with a 0 byte (reserved by ZeroMQ); or a
    /// node name is empty or contains `#`, or an instance name is empty.
    public static var invalidIdentity: BackendError { BackendError(.invalidIdentity, "invalid node identity") }
    /// No endpoint was given, or ZeroMQ refused one.
    public static var invalidEndpoint: BackendError { BackendError(.invalidEndpoint, "invalid gateway endpoint") }
    /// A command-line argument is unknown, lacks its value, or contradicts another one (`BackendCommandLine`).
    public static var invalidArgument: BackendError { BackendError(.invalidArgument, "invalid argument") }
    /// A CURVE key file could not be read (missing, not readable, a directory, far too large); the
    /// description names the file and the reason.
    public static var curveKeyUnreadable: BackendError {
        BackendError(.curveKeyUnreadable, "cannot read a CURVE key file")
    }
    /// A CURVE key or certificate is not usable: not a ZeroMQ certificate, no secret key in the node's
    /// certificate, a public key that does not belong to the secret key, a server key that is neither a
    /// certificate file nor 40 Z85 characters, or a server certificate holding the gateway's secret key.
    public static var invalidCurveKey: BackendError { BackendError(.invalidCurveKey, "invalid CURVE key") }
    /// The linked libzmq was built without CURVE support.
    public static var curveUnavailable: BackendError {
        BackendError(.curveUnavailable, "libzmq has no CURVE support")
    }
    /// A ZeroMQ call failed (other than connecting).
    public static var socket: BackendError { BackendError(.socket, "ZeroMQ call failed") }
    /// `run` was called while the node was already running.
    public static var alreadyRunning: BackendError { BackendError(.alreadyRunning, "the node is already running") }
    /// A status code outside 100...999.
    public static var invalidStatus: BackendError { BackendError(.invalidStatus, "invalid HTTP status") }
    /// A header name that is not an HTTP token, a value with a control byte (CR, LF, NUL...), or conflicting
    /// framing headers; the gateway would refuse the head with a 502.
    public static var invalidHeader: BackendError { BackendError(.invalidHeader, "invalid response header") }
    /// The response head was already sent (or the request was handed on with `retry`).
    public static var responseAlreadyStarted: BackendError {
        BackendError(.responseAlreadyStarted, "the response has already started")
    }
    /// Body bytes before the response head.
    public static var responseNotStarted: BackendError {
        BackendError(.responseNotStarted, "the response head has not been sent")
    }
    /// The session is over (the gateway sent `end`, the node sent `end`, or the node stopped).
    public static var sessionEnded: BackendError { BackendError(.sessionEnded, "the session has ended") }
    /// A WebSocket message on a session that is not a WebSocket.
    public static var notWebSocket: BackendError { BackendError(.notWebSocket, "the session is not a WebSocket") }
    /// The gateway did not take the message within the send timeout (its queue stayed full); nothing was sent.
    public static var sendTimedOut: BackendError { BackendError(.sendTimedOut, "send to the gateway timed out") }

    /// The same kind with a more precise description.
    func with(_ detail: String) -> BackendError { BackendError(kind, detail) }
}
