import Foundation
import Testing

@testable import BlastBeatCore

/// Runs the request files in `Tests/BlastBeatCoreTests/Corpus/` through the head parser and body decoder.
///
/// `ok-*.http` are real requests (captured from curl 7.88.1, or written to match what Firefox and
/// Chrome send): the head must parse, whole and one byte at a time, and its body must be exactly
/// the rest of the file. `bad-*.http` are hostile requests: both ways must throw the same error.
@Suite("HTTP request corpus")
struct HTTPRequestCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Corpus")

    static let files: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".http") }.sorted()
    }()

    @Test func corpusIsPresent() {
        #expect(Self.files.contains { $0.hasPrefix("ok-") })
        #expect(Self.files.contains { $0.hasPrefix("bad-") })
    }

    @Test(arguments: files)
    func corpusFile(_ name: String) throws {
        let bytes = [UInt8](try Data(contentsOf: Self.directory.appendingPathComponent(name)))
        let whole = parseHeadWhole(bytes, limits: HTTPLimits())
        #expect(parseHeadGrowing(bytes, limits: HTTPLimits()) == whole)

        if name.hasPrefix("bad-") {
            guard case .error = whole else {
                Issue.record("\(name) was accepted: \(whole)")
                return
            }
            return
        }
        guard case .head(let head) = whole, let length = head.length else {
            Issue.record("\(name) was rejected: \(whole)")
            return
        }
        let body = Array(bytes[length...])
        if head.isChunked {
            let decoded = decodeBody(body, framing: .chunked, limits: HTTPLimits(), pieceSize: 1)
            guard case .finished(_, let rest) = decoded else {
                Issue.record("\(name): chunked body did not decode: \(decoded)")
                return
            }
            #expect(rest.isEmpty)
        } else {
            #expect(body.count == head.contentLength ?? 0)
        }
    }
}
