/// How many connections a node keeps to one gateway: one per gateway worker (README.md, "Backend libraries", and
/// "Worker processes").
///
/// A gateway with `workers = N` advertises N in the ZMTP metadata of its handshake (`X-BlastBeat-Workers`);
/// the node labels connection k with `X-BlastBeat-Worker: k`, and the gateway worker that accepts it hands
/// it to worker k. So each worker holds a connection of its own and no request is forwarded between workers.
/// Connection 0 always exists; `change` says which others to open or close when a message tells the count.
/// No I/O: `NodeCore` opens and closes the dealers the returned change names.
enum WorkerCount {
    /// The ZMTP property a gateway advertises its worker count in.
    static let countProperty = "X-BlastBeat-Workers"
    /// The ZMTP property a node's connection names its worker in.
    static let labelProperty = "X-BlastBeat-Worker"
    /// The most workers a gateway can have: a session id's first byte names the worker that made it.
    static let maxWorkers = 256

    /// What one received message said about the count.
    enum Advertised: Equatable {
        /// No property: an older gateway, or `zmq-engine = libzmq`, which cannot hand connections over.
        case absent
        case workers(Int)
        /// Not a decimal number in 1...maxWorkers.
        case malformed
    }

    /// What to do after a message.
    enum Change: Equatable {
        case unchanged
        /// Open the connections labelled with these worker indexes.
        case open(Range<Int>)
        /// Close the connections labelled with these worker indexes (their sessions are over).
        case close(Range<Int>)
        /// The property could not be read; the connections stay as they are.
        case ignored
    }

    /// Reads the property's value as the gateway sent it (nil: absent).
    static func parse(_ value: UnsafeRawBufferPointer?) -> Advertised {
        guard let value else { return .absent }
        // At most 3 digits: the largest valid count, 256, has 3, and a longer value cannot overflow here.
        guard (1...3).contains(value.count), value.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return .malformed }
        let count = value.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return (1...maxWorkers).contains(count) ? .workers(count) : .malformed
    }

    /// The node holds connections labelled `0..<open` to a gateway, and a message on one of them carried (or
    /// lacked) the count: which to open or close. Absent means one connection (an old gateway, or the libzmq
    /// engine); a malformed value changes nothing. Computed from what is open rather than from the last count
    /// told, so that a connection that could not be opened is tried again at the next message.
    static func change(open: Int, advertised: Advertised) -> Change {
        let wanted: Int
        switch advertised {
        case .absent: wanted = 1
        case .workers(let count): wanted = count
        case .malformed: return .ignored
        }
        if wanted > open { return .open(open..<wanted) }
        if wanted < open { return .close(wanted..<open) }
        return .unchanged
    }

    /// The label connection `worker` sends, as ZMQ_METADATA takes it (`X-BlastBeat-Worker:k`).
    static func label(worker: Int) -> String { "\(labelProperty):\(worker)" }
}
