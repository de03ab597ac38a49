import BlastBeatCore
import Testing

@Suite struct PerMessageDeflateOfferTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var header: String
        var configuration = PerMessageDeflateConfiguration()
        /// The response value, or nil when every offer is declined.
        var response: String?
        /// Agreed (server, client) window bits, checked when a response is expected.
        var windows: (server: Int, client: Int) = (15, 15)
        var testDescription: String { self.header.debugDescription }
    }

    static let cases: [Case] = [
        // What browsers send.
        Case(header: "permessage-deflate; client_max_window_bits", response: "permessage-deflate"),
        Case(header: "permessage-deflate", response: "permessage-deflate"),
        Case(
            header: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        // server_max_window_bits: answered with the same or a smaller value.
        Case(
            header: "permessage-deflate; server_max_window_bits=10",
            response: "permessage-deflate; server_max_window_bits=10",
            windows: (10, 15)
        ),
        Case(
            header: "permessage-deflate; server_max_window_bits=8",
            response: "permessage-deflate; server_max_window_bits=8",
            windows: (8, 15)
        ),
        Case(
            header: "permessage-deflate; server_max_window_bits=15",
            configuration: PerMessageDeflateConfiguration(allowedServerWindowBits: 8...12),
            response: "permessage-deflate; server_max_window_bits=12",
            windows: (12, 15)
        ),
        Case(
            header: "permessage-deflate",
            configuration: PerMessageDeflateConfiguration(allowedServerWindowBits: 8...11),
            response: "permessage-deflate; server_max_window_bits=11",
            windows: (11, 15)
        ),
        Case(
            header: "permessage-deflate; server_max_window_bits=8",
            configuration: PerMessageDeflateConfiguration(allowedServerWindowBits: 9...15),
            response: nil
        ),
        Case(
            header: "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            configuration: PerMessageDeflateConfiguration(allowedServerWindowBits: 9...15),
            response: "permessage-deflate"
        ),
        // client_max_window_bits.
        Case(
            header: "permessage-deflate; client_max_window_bits",
            configuration: PerMessageDeflateConfiguration(clientMaxWindowBits: 10),
            response: "permessage-deflate; client_max_window_bits=10",
            windows: (15, 10)
        ),
        Case(
            header: "permessage-deflate; client_max_window_bits=12",
            response: "permessage-deflate",
            windows: (15, 12)
        ),
        Case(
            header: "permessage-deflate; client_max_window_bits=12",
            configuration: PerMessageDeflateConfiguration(clientMaxWindowBits: 10),
            response: "permessage-deflate; client_max_window_bits=10",
            windows: (15, 10)
        ),
        Case(
            header: "permessage-deflate",
            configuration: PerMessageDeflateConfiguration(clientMaxWindowBits: 10),
            response: "permessage-deflate",
            windows: (15, 15)
        ),
        Case(
            header: "permessage-deflate; client_max_window_bits=\"9\"",
            response: "permessage-deflate",
            windows: (15, 9)
        ),
        // Server preferences.
        Case(
            header: "permessage-deflate",
            configuration: PerMessageDeflateConfiguration(serverNoContextTakeover: true, clientNoContextTakeover: true),
            response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        Case(
            header: "permessage-deflate; client_max_window_bits",
            configuration: PerMessageDeflateConfiguration(isEnabled: false),
            response: nil
        ),
        // Syntax: spacing, case, quoting, other extensions, empty elements.
        Case(header: "permessage-deflate;client_max_window_bits", response: "permessage-deflate"),
        Case(header: "  permessage-deflate \t;\t client_max_window_bits  ", response: "permessage-deflate"),
        Case(
            header: "PerMessage-Deflate; Server_Max_Window_Bits=\"11\"",
            response: "permessage-deflate; server_max_window_bits=11",
            windows: (11, 15)
        ),
        Case(header: "x-webkit-deflate-frame, permessage-deflate", response: "permessage-deflate"),
        Case(header: "foo; bar=\"a,b;c\", permessage-deflate", response: "permessage-deflate"),
        Case(header: ", ,permessage-deflate,,", response: "permessage-deflate"),
        Case(header: "", response: nil),
        Case(header: "x-webkit-deflate-frame", response: nil),
        Case(header: "permessage-deflate-x", response: nil),
        // Invalid offers are declined, and the next offer is tried.
        Case(header: "permessage-deflate; server_no_context_takeover; server_no_context_takeover", response: nil),
        Case(header: "permessage-deflate; client_no_context_takeover; client_no_context_takeover", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", response: nil),
        Case(header: "permessage-deflate; client_max_window_bits; client_max_window_bits=10", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=7", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=16", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=08", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=1O", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=\"\"", response: nil),
        Case(header: "permessage-deflate; client_max_window_bits=0", response: nil),
        Case(header: "permessage-deflate; client_max_window_bits=", response: nil),
        Case(header: "permessage-deflate; server_no_context_takeover=true", response: nil),
        Case(header: "permessage-deflate; client_no_context_takeover=\"\"", response: nil),
        Case(header: "permessage-deflate; mystery", response: nil),
        Case(header: "permessage-deflate;", response: nil),
        Case(header: "permessage-deflate;;client_max_window_bits", response: nil),
        Case(header: "permessage-deflate client_max_window_bits", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=\"10", response: nil),
        Case(header: "permessage-deflate; server_max_window_bits=10 11", response: nil),
        Case(
            header:
                "permessage-deflate; server_max_window_bits=10; mystery, permessage-deflate; client_no_context_takeover",
            response: "permessage-deflate; client_no_context_takeover"
        ),
        Case(
            header: "permessage-deflate; x=\"a,b\", permessage-deflate; server_max_window_bits=9",
            response: "permessage-deflate; server_max_window_bits=9",
            windows: (9, 15)
        ),
        Case(
            header: "permessage-deflate; bad=\"unterminated, permessage-deflate",
            response: nil
        ),
    ]

    @Test(arguments: cases)
    func negotiates(_ row: Case) {
        let header = Array(row.header.utf8)
        let parameters = header.withUnsafeBytes {
            PerMessageDeflateOffer.negotiate(headerValue: $0, configuration: row.configuration)
        }
        #expect(parameters.map { String(decoding: $0.responseHeaderValue, as: UTF8.self) } == row.response)
        if let parameters, row.response != nil {
            #expect(parameters.serverMaxWindowBits == row.windows.server)
            #expect(parameters.clientMaxWindowBits == row.windows.client)
        }
    }

    @Test func parsesOffersInOrder() {
        let header = Array(
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover, foo, permessage-deflate; bad, permessage-deflate; server_max_window_bits=12; client_max_window_bits; client_no_context_takeover"
                .utf8
        )
        let offers = header.withUnsafeBytes { PerMessageDeflateOffer.parse($0) }
        #expect(
            offers == [
                PerMessageDeflateOffer(serverNoContextTakeover: true, clientMaxWindowBits: .limit(10)),
                PerMessageDeflateOffer(
                    clientNoContextTakeover: true,
                    serverMaxWindowBits: 12,
                    clientMaxWindowBits: .supported
                ),
            ]
        )
    }

    /// zlib cannot deflate with an 8-bit window; 9 is used and stays decodable by an 8-bit inflater.
    @Test(arguments: [(8, 9), (9, 9), (10, 10), (15, 15)])
    func deflateWindowBitsForZlib(agreed: Int, zlib: Int) {
        let parameters = PerMessageDeflateParameters(
            serverNoContextTakeover: false,
            clientNoContextTakeover: false,
            serverMaxWindowBits: agreed,
            clientMaxWindowBits: 8,
            announcesServerMaxWindowBits: true,
            announcesClientMaxWindowBits: false
        )
        #expect(parameters.deflateWindowBits == zlib)
        #expect(parameters.inflateWindowBits == 8)
    }
}
