import BlastBeatCore
import Testing

/// The exposition format writer: exact bytes for families, labels, escaping and values.
struct PrometheusTextTests {
    @Test func familyAndSamples() {
        var text = PrometheusText()
        text.family("blastbeat_x_total", .counter, "Things.")
        text.start("blastbeat_x_total")
        text.label("vhost", Array("a.test".utf8))
        text.label("code", "2xx")
        text.value(42)
        text.start("blastbeat_x_total")
        text.value(0)
        #expect(
            String(decoding: text.bytes, as: UTF8.self)
                == "# HELP blastbeat_x_total Things.\n# TYPE blastbeat_x_total counter\n"
                + "blastbeat_x_total{vhost=\"a.test\",code=\"2xx\"} 42\nblastbeat_x_total 0\n")
    }

    @Test(arguments: [
        ("plain", "plain"),
        ("a\"b", "a\\\"b"),
        ("back\\slash", "back\\\\slash"),
        ("line\nfeed", "line\\nfeed"),
        ("", ""),
    ])
    func labelValuesAreEscaped(_ row: (String, String)) {
        var text = PrometheusText()
        text.start("m")
        text.label("l", Array(row.0.utf8))
        text.value(1)
        #expect(String(decoding: text.bytes, as: UTF8.self) == "m{l=\"\(row.1)\"} 1\n")
        #expect(PrometheusText.escapedLabelValue(row.0.utf8) == Array(row.1.utf8))
    }

    @Test(arguments: [
        (0.0, "0"), (3.0, "3"), (0.0125, "0.0125"), (1e-05, "1e-05"), (Double.infinity, "+Inf"),
        (-Double.infinity, "-Inf"), (Double.nan, "NaN"), (-2.5, "-2.5"),
    ])
    func doubles(_ row: (Double, String)) {
        var text = PrometheusText()
        text.start("m", "_sum")
        text.value(row.0)
        #expect(String(decoding: text.bytes, as: UTF8.self) == "m_sum \(row.1)\n")
    }

    @Test func resetKeepsNothingButCapacity() {
        var text = PrometheusText()
        text.start("m")
        text.label("a", "b")
        text.value(-7)
        #expect(String(decoding: text.bytes, as: UTF8.self) == "m{a=\"b\"} -7\n")
        text.reset()
        #expect(text.bytes.isEmpty)
        text.start("n")
        text.value(1)
        #expect(String(decoding: text.bytes, as: UTF8.self) == "n 1\n")
    }

    @Test(arguments: [
        (0.0, 0), (0.001, 0), (0.0011, 1), (0.3, 8), (60.0, 14), (60.5, 15), (1e9, 15),
    ])
    func latencyBuckets(_ row: (Double, Int)) {
        #expect(LatencyBuckets.index(of: row.0) == row.1)
        #expect(LatencyBuckets.labels.count == LatencyBuckets.count)
    }
}
