import BlastBeatCore
import Testing

struct HTTP2ResponseHeadTests {
    static func convert(_ text: String, status: Int = 200) -> ([(String, String)], HTTP2ResponseHead) {
        var head = HTTP2ResponseHead()
        Array(text.utf8).withUnsafeBytes { head.convert($0, status: status) }
        let fields = head.fields.map {
            (String(decoding: head.storage[$0.name], as: UTF8.self), String(decoding: head.storage[$0.value], as: UTF8.self))
        }
        return (fields, head)
    }

    @Test func statusFirstNamesLowercasedValuesTrimmed() {
        let (fields, head) = Self.convert("HTTP/1.1 201 Created\r\nContent-Type:  text/plain \r\nX-A: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", status: 201)
        #expect(fields.map { "\($0.0)=\($0.1)" } == [":status=201", "content-type=text/plain", "x-a=1", "set-cookie=a=1", "set-cookie=b=2"])
        #expect(!head.isChunked && head.status == 201)
    }

    @Test func connectionSpecificFieldsAndTheOnesConnectionNamesAreDropped() {
        let (fields, head) = Self.convert(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\n"
                + "Transfer-Encoding: chunked\r\nUpgrade: h2c\r\nTE: trailers\r\nx-hop: 1\r\nX-Kept: yes\r\n\r\n")
        #expect(fields.map(\.0) == [":status", "x-kept"])
        #expect(head.isChunked)
    }

    @Test func chunkedAmongOtherCodings() {
        #expect(Self.convert("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").1.isChunked)
        #expect(!Self.convert("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").1.isChunked)
    }

    @Test func bareLineFeedsAndReuse() {
        var head = HTTP2ResponseHead()
        Array("HTTP/1.1 200 OK\nA: 1\n\n".utf8).withUnsafeBytes { head.convert($0, status: 200) }
        #expect(head.fields.count == 2)
        Array("HTTP/1.1 404 Not Found\r\n\r\n".utf8).withUnsafeBytes { head.convert($0, status: 404) }
        #expect(head.fields.count == 1 && String(decoding: head.storage[head.fields[0].value], as: UTF8.self) == "404")
    }
}

extension HTTP2ResponseHeadTests {
    @Test func contentLengthIsRead() {
        #expect(Self.convert("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n").1.contentLength == 1234)
        #expect(Self.convert("HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n").1.contentLength == nil)
    }
}
