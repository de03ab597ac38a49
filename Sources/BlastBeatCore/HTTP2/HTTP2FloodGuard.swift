/// Counts what an HTTP/2 client makes the gateway do without asking for a response: stream resets
/// (CVE-2023-44487 "rapid reset": open a stream, reset it, repeat — each reset stream still cost a backend
/// request), PING and SETTINGS frames (each needs an ACK), and frames that carry nothing (empty DATA or
/// CONTINUATION, CVE-2019-9518). Past a budget per window the connection is told GOAWAY ENHANCE_YOUR_CALM
/// and closed, as nginx (`http2_max_concurrent_streams` plus its reset accounting) and H2O
/// (`http2-max-concurrent-streaming-requests`, its "dos mitigation" reset budget) do in their own ways.
package struct HTTP2FloodGuard: Sendable {
    package enum Event: Int, CaseIterable, Sendable {
        case reset, ping, settings, emptyFrame
    }

    package struct Budget: Sendable, Equatable {
        /// Events of each kind allowed per window.
        package var resets: Int
        package var pings: Int
        package var settings: Int
        package var emptyFrames: Int
        /// Seconds.
        package var window: Double

        package init(resets: Int = 200, pings: Int = 100, settings: Int = 100, emptyFrames: Int = 200, window: Double = 10) {
            self.resets = resets
            self.pings = pings
            self.settings = settings
            self.emptyFrames = emptyFrames
            self.window = window
        }

        func limit(_ event: Event) -> Int {
            switch event {
            case .reset: resets
            case .ping: pings
            case .settings: settings
            case .emptyFrame: emptyFrames
            }
        }
    }

    package let budget: Budget
    private var counts = [0, 0, 0, 0]
    private var windowStart = -Double.infinity

    package init(budget: Budget = Budget()) {
        self.budget = budget
    }

    /// Counts one event at `now` (seconds); returns true once the client went over the budget for it.
    package mutating func record(_ event: Event, now: Double) -> Bool {
        if now - windowStart >= budget.window {
            windowStart = now
            counts = [0, 0, 0, 0]
        }
        counts[event.rawValue] += 1
        return counts[event.rawValue] > budget.limit(event)
    }

    package func count(_ event: Event) -> Int { counts[event.rawValue] }
}
