@testable import BlastBeatCore

// The request-head table for `HTTPRequestHeadParserTests`: raw bytes → parsed head or error.
// Every row also runs one byte at a time and must give the same outcome.

let validHeads: [HeadCase] = [
    HeadCase("GET", crlfHead("GET / HTTP/1.1", "Host: a"), .head(ParsedHead(headers: ["Host: a"]))),
    HeadCase(
        "GET with query, mixed-case names, OWS",
        crlfHead("GET /p/a?x=1&y=%20#f HTTP/1.1", "hOsT: \t example.com:8080 \t", "User-Agent: t/1", "Accept: */*"),
        .head(
            ParsedHead(
                target: "/p/a?x=1&y=%20#f",
                headers: ["hOsT: example.com:8080", "User-Agent: t/1", "Accept: */*"],
                host: "example.com:8080"
            )
        )
    ),
    HeadCase(
        "POST with Content-Length, body not part of the head",
        crlfHead("POST /submit HTTP/1.1", "Host: a", "Content-Length: 5") + "hello",
        .head(
            ParsedHead(
                method: "POST",
                methodKind: .post,
                target: "/submit",
                length: crlfHead("POST /submit HTTP/1.1", "Host: a", "Content-Length: 5").utf8.count,
                contentLength: 5
            )
        )
    ),
    HeadCase(
        "HEAD",
        crlfHead("HEAD /x HTTP/1.1", "Host: a"),
        .head(ParsedHead(method: "HEAD", methodKind: .head, target: "/x"))
    ),
    HeadCase(
        "PUT",
        crlfHead("PUT /x HTTP/1.1", "Host: a", "Content-Length: 0"),
        .head(ParsedHead(method: "PUT", methodKind: .put, target: "/x", contentLength: 0))
    ),
    HeadCase(
        "OPTIONS *",
        crlfHead("OPTIONS * HTTP/1.1", "Host: a"),
        .head(ParsedHead(method: "OPTIONS", methodKind: .options, target: "*"))
    ),
    HeadCase(
        "CONNECT authority-form",
        crlfHead("CONNECT a:443 HTTP/1.1", "Host: a:443"),
        .head(ParsedHead(method: "CONNECT", methodKind: .connect, target: "a:443", host: "a:443"))
    ),
    HeadCase(
        "M-SEARCH is other",
        crlfHead("M-SEARCH / HTTP/1.1", "Host: a"),
        .head(ParsedHead(method: "M-SEARCH", methodKind: .other))
    ),
    HeadCase(
        "methods are case-sensitive",
        crlfHead("get / HTTP/1.1", "Host: a"),
        .head(ParsedHead(method: "get", methodKind: .other))
    ),
    HeadCase(
        "PATCH is other",
        crlfHead("PATCH / HTTP/1.1", "Host: a"),
        .head(ParsedHead(method: "PATCH", methodKind: .other))
    ),
    HeadCase(
        "HTTP/1.0 without Host closes",
        crlfHead("GET / HTTP/1.0"),
        .head(ParsedHead(version: .http10, headers: [], keepAlive: false, host: nil))
    ),
    HeadCase(
        "HTTP/1.0 keep-alive",
        crlfHead("GET / HTTP/1.0", "Connection: Keep-Alive"),
        .head(ParsedHead(version: .http10, keepAlive: true, host: nil))
    ),
    HeadCase(
        "HTTP/1.0 close beats keep-alive",
        crlfHead("GET / HTTP/1.0", "Host: a", "Connection: keep-alive, close"),
        .head(ParsedHead(version: .http10, keepAlive: false))
    ),
    HeadCase(
        "HTTP/1.1 close",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: close"),
        .head(ParsedHead(keepAlive: false))
    ),
    HeadCase(
        "Connection list with close",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: TE, CLOSE"),
        .head(ParsedHead(keepAlive: false))
    ),
    HeadCase(
        "Connection over two lines",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: keep-alive", "Connection: close"),
        .head(ParsedHead(keepAlive: false))
    ),
    HeadCase(
        "Connection empty elements",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: , ,close,"),
        .head(ParsedHead(keepAlive: false))
    ),
    HeadCase(
        "Connection: closed is not close",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: closed"),
        .head(ParsedHead(keepAlive: true))
    ),
    HeadCase(
        "leading empty lines count in length",
        "\r\n\r\n" + crlfHead("GET / HTTP/1.1", "Host: a"),
        .head(ParsedHead())
    ),
    HeadCase(
        "value trimmed of OWS, inner whitespace kept",
        crlfHead("GET / HTTP/1.1", "Host: a", "X-A: \t a b\tc \t "),
        .head(ParsedHead(headers: ["Host: a", "X-A: a b\tc"]))
    ),
    HeadCase(
        "empty values",
        crlfHead("GET / HTTP/1.1", "Host: a", "X-E:", "X-F:   "),
        .head(ParsedHead(headers: ["Host: a", "X-E: ", "X-F: "]))
    ),
    HeadCase(
        "obs-text in value",
        crlfHead("GET / HTTP/1.1", "Host: a", "X-U: café"),
        .head(ParsedHead(headers: ["Host: a", "X-U: café"]))
    ),
    HeadCase(
        "every tchar in a name",
        crlfHead("GET / HTTP/1.1", "Host: a", "X-!#$%&'*+-.^_`|~09azAZ: v"),
        .head(ParsedHead(headers: ["Host: a", "X-!#$%&'*+-.^_`|~09azAZ: v"]))
    ),
    HeadCase("empty Host is allowed", crlfHead("GET / HTTP/1.1", "Host:"), .head(ParsedHead(host: ""))),
    HeadCase(
        "chunked",
        crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"),
        .head(ParsedHead(method: "POST", methodKind: .post, isChunked: true))
    ),
    HeadCase(
        "chunked, any case, empty elements",
        crlfHead("POST / HTTP/1.1", "Host: a", "transfer-encoding: , CHUNKED ,"),
        .head(ParsedHead(method: "POST", methodKind: .post, isChunked: true))
    ),
    HeadCase(
        "Content-Length list of equal values",
        crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 5, 5"),
        .head(ParsedHead(method: "POST", methodKind: .post, contentLength: 5))
    ),
    HeadCase(
        "Content-Length repeated",
        crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "content-length: 005"),
        .head(ParsedHead(method: "POST", methodKind: .post, contentLength: 5))
    ),
    HeadCase(
        "Content-Length with OWS",
        crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length:  5 "),
        .head(ParsedHead(method: "POST", methodKind: .post, contentLength: 5))
    ),
    HeadCase(
        "Content-Length 0",
        crlfHead("GET / HTTP/1.1", "Host: a", "Content-Length: 0"),
        .head(ParsedHead(contentLength: 0))
    ),
    HeadCase(
        "Expect 100-continue",
        crlfHead("PUT / HTTP/1.1", "Host: a", "Expect: 100-Continue", "Content-Length: 1"),
        .head(ParsedHead(method: "PUT", methodKind: .put, contentLength: 1, expectContinue: true))
    ),
    HeadCase(
        "Expect ignored in HTTP/1.0",
        crlfHead("PUT / HTTP/1.0", "Expect: 100-continue"),
        .head(ParsedHead(method: "PUT", methodKind: .put, version: .http10, keepAlive: false, host: nil))
    ),
    HeadCase("other Expect ignored", crlfHead("GET / HTTP/1.1", "Host: a", "Expect: something"), .head(ParsedHead())),
    HeadCase(
        "websocket upgrade",
        crlfHead("GET /ws HTTP/1.1", "Host: a", "Connection: Upgrade", "Upgrade: websocket"),
        .head(ParsedHead(target: "/ws", isWebSocketUpgrade: true))
    ),
    HeadCase(
        "websocket with version, in lists",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: keep-alive, upgrade", "Upgrade: h2c, WebSocket/13"),
        .head(ParsedHead(isWebSocketUpgrade: true))
    ),
    HeadCase(
        "Upgrade without Connection: upgrade",
        crlfHead("GET / HTTP/1.1", "Host: a", "Upgrade: websocket"),
        .head(ParsedHead())
    ),
    HeadCase(
        "Connection: upgrade to h2c",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: upgrade", "Upgrade: h2c"),
        .head(ParsedHead())
    ),
    HeadCase(
        "websockets is not websocket",
        crlfHead("GET / HTTP/1.1", "Host: a", "Connection: upgrade", "Upgrade: websockets"),
        .head(ParsedHead())
    ),
    HeadCase(
        "no upgrade in HTTP/1.0",
        crlfHead("GET / HTTP/1.0", "Connection: upgrade", "Upgrade: websocket"),
        .head(ParsedHead(version: .http10, keepAlive: false, host: nil))
    ),
    HeadCase(
        "absolute-form matching Host",
        crlfHead("GET http://a/p?q HTTP/1.1", "Host: a"),
        .head(ParsedHead(target: "http://a/p?q"))
    ),
    HeadCase(
        "absolute-form https, case-insensitive",
        crlfHead("GET HTTPS://Example.COM:443 HTTP/1.1", "Host: example.com:443"),
        .head(ParsedHead(target: "HTTPS://Example.COM:443", host: "example.com:443"))
    ),
    HeadCase(
        "absolute-form HTTP/1.0 without Host",
        crlfHead("GET http://a/ HTTP/1.0"),
        .head(ParsedHead(target: "http://a/", version: .http10, keepAlive: false, host: nil))
    ),
]

let smugglingAndSyntaxErrors: [HeadCase] = {
    var rows: [HeadCase] = [
        // Framing conflicts.
        HeadCase(
            "CL then TE",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 4", "Transfer-Encoding: chunked"),
            .error(.contentLengthWithTransferEncoding)
        ),
        HeadCase(
            "TE then CL",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Content-Length: 4"),
            .error(.contentLengthWithTransferEncoding)
        ),
        HeadCase(
            "differing duplicate CL",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 0", "Content-Length: 5"),
            .error(.invalidContentLength)
        ),
        HeadCase(
            "differing CL list",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 5, 6"),
            .error(.invalidContentLength)
        ),
        HeadCase("CL +5", crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: +5"), .error(.invalidContentLength)),
        HeadCase("CL -1", crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: -1"), .error(.invalidContentLength)),
        HeadCase(
            "CL 5 5",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 5 5"),
            .error(.invalidContentLength)
        ),
        HeadCase(
            "CL hex",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 0x5"),
            .error(.invalidContentLength)
        ),
        HeadCase("CL empty", crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length:"), .error(.invalidContentLength)),
        HeadCase(
            "CL empty element",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 5,"),
            .error(.invalidContentLength)
        ),
        HeadCase(
            "CL overflow",
            crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 99999999999999999999"),
            .error(.invalidContentLength)
        ),
        HeadCase(
            "TE chunked, identity",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, identity"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE gzip, chunked",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip, chunked"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE xchunked",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: xchunked"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE identity",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: identity"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE chunked with parameter",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked;q=1"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE chunked twice in a list",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, chunked"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE twice with chunked twice",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE chunked then gzip line",
            crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip"),
            .error(.unsupportedTransferEncoding)
        ),
        HeadCase(
            "TE in HTTP/1.0",
            crlfHead("POST / HTTP/1.0", "Host: a", "Transfer-Encoding: chunked"),
            .error(.invalidChunkFraming)
        ),
        HeadCase(
            "TE and CL in HTTP/1.0",
            crlfHead("POST / HTTP/1.0", "Transfer-Encoding: chunked", "Content-Length: 3"),
            .error(.contentLengthWithTransferEncoding)
        ),
        // Host.
        HeadCase("missing Host", crlfHead("GET / HTTP/1.1", "X: y"), .error(.missingHost)),
        HeadCase("two Hosts", crlfHead("GET / HTTP/1.1", "Host: a", "HOST: a"), .error(.multipleHosts)),
        HeadCase("two Hosts in HTTP/1.0", crlfHead("GET / HTTP/1.0", "Host: a", "Host: b"), .error(.multipleHosts)),
        // Target forms.
        HeadCase(
            "absolute-form Host mismatch",
            crlfHead("GET http://internal/admin HTTP/1.1", "Host: public"),
            .error(.invalidTarget)
        ),
        HeadCase("absolute-form userinfo", crlfHead("GET http://u@a/ HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase(
            "absolute-form empty authority",
            crlfHead("GET http:///x HTTP/1.1", "Host: a"),
            .error(.invalidTarget)
        ),
        HeadCase("absolute-form other scheme", crlfHead("GET ftp://a/ HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("relative target", crlfHead("GET foo HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("asterisk without OPTIONS", crlfHead("GET * HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        // Request line.
        HeadCase("double space before target", crlfHead("GET  / HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("double space before version", crlfHead("GET /  HTTP/1.1", "Host: a"), .error(.invalidVersion)),
        HeadCase("space before method", crlfHead(" GET / HTTP/1.1", "Host: a"), .error(.invalidMethod)),
        HeadCase("trailing space after version", crlfHead("GET / HTTP/1.1 ", "Host: a"), .error(.invalidVersion)),
        HeadCase("tab as separator", crlfHead("GET\t/ HTTP/1.1", "Host: a"), .error(.invalidMethod)),
        HeadCase("tab in target", crlfHead("GET /\tx HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("DEL in target", crlfHead("GET /\u{7F} HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("non-ASCII in target", crlfHead("GET /é HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("NUL in target", crlfHead("GET /\0 HTTP/1.1", "Host: a"), .error(.invalidTarget)),
        HeadCase("NUL in method", crlfHead("G\0T / HTTP/1.1", "Host: a"), .error(.invalidMethod)),
        HeadCase("non-token method", crlfHead("G(T / HTTP/1.1", "Host: a"), .error(.invalidMethod)),
        HeadCase("no version", crlfHead("GET /"), .error(.invalidLineEnding(offset: 5))),
        HeadCase("method only", crlfHead("GET"), .error(.invalidLineEnding(offset: 3))),
        HeadCase("lowercase http", crlfHead("GET / http/1.1", "Host: a"), .error(.invalidVersion)),
        HeadCase("HTTP/1.10", crlfHead("GET / HTTP/1.10", "Host: a"), .error(.invalidVersion)),
        HeadCase("HTTP/a.b", crlfHead("GET / HTTP/a.b", "Host: a"), .error(.invalidVersion)),
        HeadCase("HTTP/2.0", crlfHead("GET / HTTP/2.0", "Host: a"), .error(.unsupportedVersion)),
        HeadCase("HTTP/1.2", crlfHead("GET / HTTP/1.2", "Host: a"), .error(.unsupportedVersion)),
        HeadCase("HTTP/0.9", crlfHead("GET / HTTP/0.9", "Host: a"), .error(.unsupportedVersion)),
        // Line endings.
        HeadCase("bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", .error(.invalidLineEnding(offset: 14))),
        HeadCase(
            "bare LF ends a header",
            "GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n",
            .error(.invalidLineEnding(offset: 29))
        ),
        HeadCase(
            "bare LF as the blank line",
            "GET / HTTP/1.1\r\nHost: a\r\n\n",
            .error(.invalidLineEnding(offset: 25))
        ),
        HeadCase(
            "bare CR as the blank line",
            "GET / HTTP/1.1\r\nHost: a\r\n\rX",
            .error(.invalidLineEnding(offset: 25))
        ),
        HeadCase("leading bare LF", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", .error(.invalidLineEnding(offset: 0))),
        HeadCase("leading bare CR", "\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", .error(.invalidLineEnding(offset: 0))),
        HeadCase("CR CR LF ending", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", .error(.invalidLineEnding(offset: 23))),
    ]
    func add(_ name: String, _ text: String, _ error: (String) -> HTTPParseError) {
        rows.append(HeadCase(name, text, .error(error(text))))
    }
    add("bare CR inside a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Foo: bar\rTransfer-Encoding: chunked\r\n\r\n") {
        .invalidLineEnding(offset: byteOffset(of: "\rT", in: $0))
    }
    add("obs-fold", crlfHead("GET / HTTP/1.1", "Host: a", "X: b", " c")) {
        .obsoleteLineFolding(offset: byteOffset(of: " c", in: $0))
    }
    add("obs-fold with tab", crlfHead("GET / HTTP/1.1", "Host: a", "Transfer-Encoding: identity", "\tchunked")) {
        .obsoleteLineFolding(offset: byteOffset(of: "\tchunked", in: $0))
    }
    add("whitespace before the first header", crlfHead("GET / HTTP/1.1", " Host: a")) { _ in
        .obsoleteLineFolding(offset: 16)
    }
    add("NUL in value", crlfHead("GET / HTTP/1.1", "Host: a\0.evil")) {
        .invalidHeaderValue(offset: byteOffset(of: "\0", in: $0))
    }
    add("DEL in value", crlfHead("GET / HTTP/1.1", "Host: a", "X: a\u{7F}")) {
        .invalidHeaderValue(offset: byteOffset(of: "\u{7F}", in: $0))
    }
    add("ESC in value", crlfHead("GET / HTTP/1.1", "Host: a", "X: \u{1B}[31m")) {
        .invalidHeaderValue(offset: byteOffset(of: "\u{1B}", in: $0))
    }
    add("vertical tab in value", crlfHead("GET / HTTP/1.1", "Host: a", "X: a\u{0B}b")) {
        .invalidHeaderValue(offset: byteOffset(of: "\u{0B}", in: $0))
    }
    add("space before colon", crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding : chunked")) {
        .invalidHeaderName(offset: byteOffset(of: " :", in: $0))
    }
    add("tab before colon", crlfHead("GET / HTTP/1.1", "Host\t: a")) {
        .invalidHeaderName(offset: byteOffset(of: "\t", in: $0))
    }
    add("NUL in name", crlfHead("GET / HTTP/1.1", "Host: a", "X\0Y: b")) {
        .invalidHeaderName(offset: byteOffset(of: "\0", in: $0))
    }
    for bad in ["(", ")", "\"", "/", "@", "[", "]", "=", "{", "}", "?", ",", ";", "\\", "é"] {
        add("'\(bad)' in name", crlfHead("GET / HTTP/1.1", "Host: a", "X\(bad)Y: b")) {
            .invalidHeaderName(offset: byteOffset(of: "X\(bad)", in: $0, plus: 1))
        }
    }
    add("empty name", crlfHead("GET / HTTP/1.1", "Host: a", ": b")) {
        .invalidHeaderName(offset: byteOffset(of: "\r\n:", in: $0, plus: 2))
    }
    add("no colon", crlfHead("GET / HTTP/1.1", "Host: a", "NoColon")) {
        .invalidHeaderName(offset: byteOffset(of: "n\r\n\r\n", in: $0, plus: 1))
    }
    add("empty Transfer-Encoding", crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: ")) {
        .invalidHeaderValue(offset: byteOffset(of: "Encoding: ", in: $0, plus: 10))
    }
    add("Transfer-Encoding with no coding", crlfHead("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: ,")) {
        .invalidHeaderValue(offset: byteOffset(of: ",", in: $0))
    }
    return rows
}()

let incompleteHeads: [HeadCase] = [
    HeadCase("empty", "", .incomplete),
    HeadCase("only empty lines", "\r\n\r\n\r", .incomplete),
    HeadCase("request line without LF", "GET / HTTP/1.1\r", .incomplete),
    HeadCase("no blank line", "GET / HTTP/1.1\r\nHost: a\r\n", .incomplete),
    HeadCase("blank line without LF", "GET / HTTP/1.1\r\nHost: a\r\n\r", .incomplete),
]

/// A request line of exactly `length` bytes (without CRLF).
func requestLineOf(length: Int) -> String { "GET /" + String(repeating: "a", count: length - 14) + " HTTP/1.1" }

/// A head of exactly `length` bytes: request line, Host, one padding header, blank line.
func paddedHeadOf(length: Int) -> String {
    crlfHead("GET / HTTP/1.1", "Host: a", "X: " + String(repeating: "v", count: length - 32))
}

let headLimitRows: [HeadCase] = [
    HeadCase(
        "no limits at all",
        crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 9223372036854775807"),
        limits: headLimits(requestLine: .max, head: .max, headers: .max, body: .max),
        .head(ParsedHead(method: "POST", methodKind: .post, contentLength: .max))
    ),
    HeadCase(
        "request line at the limit",
        crlfHead(requestLineOf(length: 64), "Host: a"),
        limits: headLimits(requestLine: 64),
        .head(ParsedHead(target: "/" + String(repeating: "a", count: 50)))
    ),
    HeadCase(
        "request line one over",
        crlfHead(requestLineOf(length: 65), "Host: a"),
        limits: headLimits(requestLine: 64),
        .error(.requestLineTooLong(limit: 64))
    ),
    HeadCase(
        "request line over, no CRLF yet",
        requestLineOf(length: 65),
        limits: headLimits(requestLine: 64),
        .error(.requestLineTooLong(limit: 64))
    ),
    HeadCase(
        "request line over, no line end at all",
        String(repeating: "A", count: 65),
        limits: headLimits(requestLine: 64),
        .error(.requestLineTooLong(limit: 64))
    ),
    HeadCase(
        "request line bounded by the head limit",
        crlfHead(requestLineOf(length: 50), "Host: a"),
        limits: headLimits(head: 40),
        .error(.headTooLarge(limit: 40))
    ),
    HeadCase("head at the limit", paddedHeadOf(length: 128), limits: headLimits(head: 128), .head(ParsedHead())),
    HeadCase(
        "head at the limit after empty lines",
        "\r\n\r\n" + paddedHeadOf(length: 128),
        limits: headLimits(head: 128),
        .head(ParsedHead())
    ),
    HeadCase(
        "head one byte short of the limit is incomplete",
        String(paddedHeadOf(length: 128).dropLast()),
        limits: headLimits(head: 128),
        .incomplete
    ),
    HeadCase(
        "request line at the limit, CR pending",
        requestLineOf(length: 64) + "\r",
        limits: headLimits(requestLine: 64),
        .incomplete
    ),
    HeadCase(
        "head one over",
        paddedHeadOf(length: 129),
        limits: headLimits(head: 128),
        .error(.headTooLarge(limit: 128))
    ),
    HeadCase(
        "head over, no blank line yet",
        String(paddedHeadOf(length: 140).dropLast(10)),
        limits: headLimits(head: 128),
        .error(.headTooLarge(limit: 128))
    ),
    HeadCase(
        "header count at the limit",
        crlfHead("GET / HTTP/1.1", "Host: a", "X: 1", "X: 2", "X: 3"),
        limits: headLimits(headers: 4),
        .head(ParsedHead())
    ),
    HeadCase(
        "header count one over",
        crlfHead("GET / HTTP/1.1", "Host: a", "X: 1", "X: 2", "X: 3", "X: 4"),
        limits: headLimits(headers: 4),
        .error(.tooManyHeaders(limit: 4))
    ),
    HeadCase(
        "header count over, detected early",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nX: 2\r\nX: 3\r\nX",
        limits: headLimits(headers: 4),
        .error(.tooManyHeaders(limit: 4))
    ),
    HeadCase(
        "Content-Length at maxBodySize",
        crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 100"),
        limits: headLimits(body: 100),
        .head(ParsedHead(method: "POST", methodKind: .post, contentLength: 100))
    ),
    HeadCase(
        "Content-Length one over maxBodySize",
        crlfHead("POST / HTTP/1.1", "Host: a", "Content-Length: 101"),
        limits: headLimits(body: 100),
        .error(.bodyTooLarge(limit: 100))
    ),
    HeadCase(
        "2047 leading empty lines",
        String(repeating: "\r\n", count: 2047) + crlfHead("GET / HTTP/1.1", "Host: a"),
        .head(ParsedHead())
    ),
    HeadCase(
        "2048 leading empty lines",
        String(repeating: "\r\n", count: 2048) + crlfHead("GET / HTTP/1.1", "Host: a"),
        .error(.invalidLineEnding(offset: 4096))
    ),
]
