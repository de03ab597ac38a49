/// Writes the Prometheus text exposition format, version 0.0.4 (the format of
/// https://prometheus.io/docs/instrumenting/exposition_formats/), into a byte array that is reused from
/// one scrape to the next: after the first scrape a render appends into capacity it already has.
///
/// A sample is written in three steps, so no label list is ever built: `start` (name), `label` (each
/// pair), `value`. Label values are escaped here (backslash, double quote and line feed, as the format
/// requires); `escapedLabelValue` does it once for values that are written on every scrape.
package struct PrometheusText {
    package enum MetricType: String {
        case counter, gauge, histogram
    }

    package private(set) var bytes: [UInt8] = []
    private var labelsOpen = false

    package init() {}

    /// Forgets the previous text and keeps its storage.
    package mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        labelsOpen = false
    }

    /// `# HELP` and `# TYPE` lines: once per metric family, before its samples. `help` is ours (no
    /// backslash or line feed to escape).
    package mutating func family(_ name: StaticString, _ type: MetricType, _ help: StaticString) {
        bytes.appendBytes("# HELP ")
        bytes.appendBytes(name)
        bytes.append(0x20)
        bytes.appendBytes(help)
        bytes.appendBytes("\n# TYPE ")
        bytes.appendBytes(name)
        bytes.append(0x20)
        bytes.append(contentsOf: type.rawValue.utf8)
        bytes.append(0x0A)
    }

    /// Starts a sample of `name` followed by `suffix` (`_bucket`, `_sum`, `_count` of a histogram).
    package mutating func start(_ name: StaticString, _ suffix: StaticString = "") {
        bytes.appendBytes(name)
        bytes.appendBytes(suffix)
        labelsOpen = false
    }

    /// One `name="value"` pair; `value` is escaped here.
    package mutating func label(_ name: StaticString, _ value: some Sequence<UInt8>) {
        openLabel(name)
        Self.appendEscaped(value, to: &bytes)
        bytes.append(0x22)
    }

    /// One pair whose value is already escaped (see `escapedLabelValue`) or needs no escaping.
    package mutating func label(_ name: StaticString, escaped value: [UInt8]) {
        openLabel(name)
        bytes.append(contentsOf: value)
        bytes.append(0x22)
    }

    package mutating func label(_ name: StaticString, _ value: StaticString) {
        openLabel(name)
        bytes.appendBytes(value)
        bytes.append(0x22)
    }

    private mutating func openLabel(_ name: StaticString) {
        bytes.append(labelsOpen ? 0x2C : 0x7B)  // "," or "{"
        labelsOpen = true
        bytes.appendBytes(name)
        bytes.appendBytes("=\"")
    }

    /// Ends the sample with an integer value.
    package mutating func value(_ value: Int) {
        endLabels()
        if value < 0 {
            bytes.append(0x2D)
            withDecimalDigits(value == Int.min ? Int.max : -value) { bytes.appendBytes($0) }
        } else {
            withDecimalDigits(value) { bytes.appendBytes($0) }
        }
        bytes.append(0x0A)
    }

    /// Ends the sample with a floating-point value (`+Inf`, `-Inf` and `NaN` spelled as the format wants).
    package mutating func value(_ value: Double) {
        endLabels()
        if value.isNaN {
            bytes.appendBytes("NaN")
        } else if value.isInfinite {
            bytes.appendBytes(value > 0 ? "+Inf" : "-Inf")
        } else if value == value.rounded(), abs(value) < 1e15 {
            self.bytes.append(contentsOf: String(Int(value)).utf8)
        } else {
            // Swift's shortest round-trip form ("0.0125", "1e-05"), which Prometheus' Go parser reads back.
            self.bytes.append(contentsOf: value.description.utf8)
        }
        bytes.append(0x0A)
    }

    private mutating func endLabels() {
        if labelsOpen { bytes.append(0x7D) }
        bytes.append(0x20)
        labelsOpen = false
    }

    /// A label value escaped for the text format: `\` → `\\`, `"` → `\"`, line feed → `\n`.
    package static func escapedLabelValue(_ value: some Sequence<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        appendEscaped(value, to: &out)
        return out
    }

    private static func appendEscaped(_ value: some Sequence<UInt8>, to out: inout [UInt8]) {
        for byte in value {
            switch byte {
            case 0x5C:
                out.append(0x5C)
                out.append(0x5C)
            case 0x22:
                out.append(0x5C)
                out.append(0x22)
            case 0x0A:
                out.append(0x5C)
                out.append(0x6E)
            default: out.append(byte)
            }
        }
    }
}
