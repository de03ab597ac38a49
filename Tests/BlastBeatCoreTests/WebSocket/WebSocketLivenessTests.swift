import BlastBeatCore
import Testing

/// Every state × event pair of the WebSocket liveness machine, and the sequences the transports run.
@Suite struct WebSocketLivenessTests {
    enum Event: CustomStringConvertible, CaseIterable {
        case clientSpoke, closeStarted, quietHalfPeriod
        var description: String {
            switch self {
            case .clientSpoke: "client spoke"
            case .closeStarted: "close started"
            case .quietHalfPeriod: "quiet half-period"
            }
        }
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var from: WebSocketLiveness
        var event: Event
        var to: WebSocketLiveness
        var action: WebSocketLiveness.IdleAction?
        var testDescription: String { "\(from) + \(event) → \(to)" }
    }

    static let table: [Row] = [
        Row(from: .open, event: .clientSpoke, to: .open),
        Row(from: .open, event: .closeStarted, to: .closing),
        Row(from: .open, event: .quietHalfPeriod, to: .pinged, action: .ping),
        Row(from: .pinged, event: .clientSpoke, to: .open),
        Row(from: .pinged, event: .closeStarted, to: .closing),
        Row(from: .pinged, event: .quietHalfPeriod, to: .pinged, action: .closeGoingAway),
        // Client bytes after our close frame do not reopen the socket.
        Row(from: .closing, event: .clientSpoke, to: .closing),
        Row(from: .closing, event: .closeStarted, to: .closing),
        Row(from: .closing, event: .quietHalfPeriod, to: .closing, action: .abandon),
    ]

    @Test func theTableCoversEveryStateAndEvent() {
        let states: [WebSocketLiveness] = [.open, .pinged, .closing]
        for state in states {
            for event in Event.allCases {
                #expect(Self.table.filter { $0.from == state && "\($0.event)" == "\(event)" }.count == 1,
                        "\(state) + \(event)")
            }
        }
    }

    @Test(arguments: table) func row(_ row: Row) {
        var machine = row.from
        var action: WebSocketLiveness.IdleAction?
        switch row.event {
        case .clientSpoke: machine.clientSpoke()
        case .closeStarted: machine.closeStarted()
        case .quietHalfPeriod: action = machine.quietHalfPeriod()
        }
        #expect(machine == row.to)
        #expect(action == row.action)
        #expect(machine.isClosing == (row.to == .closing))
    }

    /// A client that answers every ping keeps the socket; one that stops is closed at the second quiet check.
    @Test func pingAnsweredThenUnanswered() {
        var machine = WebSocketLiveness.open
        #expect(machine.quietHalfPeriod() == .ping)
        machine.clientSpoke()
        #expect(machine.quietHalfPeriod() == .ping)
        #expect(machine.quietHalfPeriod() == .closeGoingAway)
        machine.closeStarted()
        #expect(machine.quietHalfPeriod() == .abandon)
    }
}
