import FuzzSupport
import WeftDNS

/// DNS capture's reading of a captured message (UDP datagram or TCP frame):
/// any bytes are either refused or a query, whose answer echoes its id and
/// question, is a response (so never read as a query again), and states
/// exactly the records it carries.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDNS(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = Array(FuzzInput(data, count).remaining)
    guard let query = try? DNSQuery(parsing: bytes) else { return 0 }
    require(query.name.utf8.count <= 255, "a name longer than DNS allows was accepted")
    let addresses: [[UInt8]] = query.type == DNSQuery.typeAAAA ? [Array(repeating: 1, count: 16)] : [[198, 19, 0, 1]]
    let answer = query.answer(addresses: addresses, ttl: 30)
    require(answer[0] == bytes[0] && answer[1] == bytes[1], "the answer lost the query's id")
    require(answer[2] & 0x80 != 0, "the answer is not a response")
    require(Array(answer[12..<12 + query.question.count]) == Array(query.question), "the question was not echoed")
    require(answer.count == 12 + query.question.count + addresses.count * (12 + addresses[0].count),
            "the answer's length does not match its records")
    do {
        _ = try DNSQuery(parsing: answer)
        require(false, "an answer was read as a query")
    } catch {
        require(error == .notAQuery, "an answer was refused for the wrong reason")
    }
    // The root (an empty name) is never one of ours; any other name added
    // is found again, as asked and with a search domain.
    var names = DNSNames()
    names.add(query.name, .init(v4: [198, 19, 0, 1]), searchDomains: ["corp.lab"])
    if !query.name.isEmpty {
        require(names.lookup(query.name) != nil, "a name added was not found")
        require(names.lookup(query.name + ".corp.lab") != nil, "a name added was not found with its search domain")
    }
    return 0
}
