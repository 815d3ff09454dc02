#if canImport(Glibc)
import Glibc
#endif
import CNetfilter
import WeftCore

/// The kernel's connection tracking table, asked over netlink: where a
/// redirected UDP datagram was going before iptables REDIRECT rewrote it.
/// A UDP socket has no `SO_ORIGINAL_DST`; the flow's conntrack entry has
/// it, found by the tuple of the reply (from the local address the
/// datagram arrived at, to its sender). Asking needs CAP_NET_ADMIN in the
/// network namespace. One table per event loop: queries are synchronous
/// netlink round trips (the kernel answers within the send) on its own
/// socket, so not thread-safe.
public final class ConntrackTable {
    private let socket: OpaquePointer
    private let portID: UInt32
    private var sequence: UInt32 = 0
    /// A query stopped before reading its whole answer (an error, a
    /// signal): what it left unread must go before the next query's.
    private var unread = false
    /// One request or answer at a time.
    private let buffer: UnsafeMutableRawPointer
    private static let bufferSize = 8192

    /// Opens a netlink socket to conntrack.
    public init() throws(ConntrackError) {
        guard let socket = mnl_socket_open(NETLINK_NETFILTER) else {
            throw ConntrackError.unavailable(String(cString: strerror(errno)))
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let reason = String(cString: strerror(errno))
            mnl_socket_close(socket)
            throw ConntrackError.unavailable(reason)
        }
        self.socket = socket
        portID = mnl_socket_get_portid(socket)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.bufferSize, alignment: 16)
    }

    deinit {
        mnl_socket_close(socket)
        buffer.deallocate()
    }

    /// The original destination of the UDP flow whose reply goes from
    /// `local` (where the datagram was received) to `peer` (its sender).
    /// IPv4 only (DNS capture redirects IPv4).
    ///
    /// The request is built here rather than with libnetfilter_conntrack's
    /// query, which always sends an original-direction tuple once the
    /// family is set: a GET by the reply tuple alone needs the family in
    /// the netfilter header and only `CTA_TUPLE_REPLY`. The answer is
    /// parsed by libnetfilter_conntrack.
    public func originalDestination(udpReceivedAt local: IPEndpoint, from peer: IPEndpoint) throws(ConntrackError) -> IPEndpoint {
        guard case .v4(let localAddress) = local.address, case .v4(let peerAddress) = peer.address else {
            throw ConntrackError.notIPv4
        }
        if unread {
            let descriptor = mnl_socket_get_fd(socket)
            while recv(descriptor, buffer, Self.bufferSize, Int32(MSG_DONTWAIT)) > 0 {}
        }
        unread = true
        sequence &+= 1
        guard let header = mnl_nlmsg_put_header(buffer) else { throw ConntrackError.unavailable("no buffer") }
        header.pointee.nlmsg_type = UInt16((NFNL_SUBSYS_CTNETLINK << 8) | Int32(IPCTNL_MSG_CT_GET.rawValue))
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_ACK)
        header.pointee.nlmsg_seq = sequence
        let netfilter = mnl_nlmsg_put_extra_header(header, MemoryLayout<nfgenmsg>.size)
            .assumingMemoryBound(to: nfgenmsg.self)
        netfilter.pointee.nfgen_family = UInt8(AF_INET)
        netfilter.pointee.version = UInt8(NFNETLINK_V0)
        netfilter.pointee.res_id = 0
        let tuple = mnl_attr_nest_start(header, UInt16(CTA_TUPLE_REPLY.rawValue))
        let addresses = mnl_attr_nest_start(header, UInt16(CTA_TUPLE_IP.rawValue))
        mnl_attr_put_u32(header, UInt16(CTA_IP_V4_SRC.rawValue), localAddress.bigEndian)
        mnl_attr_put_u32(header, UInt16(CTA_IP_V4_DST.rawValue), peerAddress.bigEndian)
        mnl_attr_nest_end(header, addresses)
        let ports = mnl_attr_nest_start(header, UInt16(CTA_TUPLE_PROTO.rawValue))
        mnl_attr_put_u8(header, UInt16(CTA_PROTO_NUM.rawValue), UInt8(IPPROTO_UDP))
        mnl_attr_put_u16(header, UInt16(CTA_PROTO_SRC_PORT.rawValue), local.port.bigEndian)
        mnl_attr_put_u16(header, UInt16(CTA_PROTO_DST_PORT.rawValue), peer.port.bigEndian)
        mnl_attr_nest_end(header, ports)
        mnl_attr_nest_end(header, tuple)
        guard mnl_socket_sendto(socket, header, Int(header.pointee.nlmsg_len)) >= 0 else {
            throw Self.error(errno)
        }

        let answer = Answer()
        let context = Unmanaged.passUnretained(answer).toOpaque()
        while true {
            let received = mnl_socket_recvfrom(socket, buffer, Self.bufferSize)
            guard received > 0 else { throw Self.error(errno) }
            let result = withExtendedLifetime(answer) {
                mnl_cb_run(buffer, received, sequence, portID, onConntrackMessage, context)
            }
            if result == MNL_CB_ERROR {
                let code = errno
                // The kernel's refusal (no entry, not permitted) is the whole answer.
                if code == ENOENT || code == EPERM { unread = false }
                throw Self.error(code)
            }
            if result <= MNL_CB_STOP { break }
        }
        unread = false
        guard let destination = answer.destination else { throw ConntrackError.noEntry }
        return destination
    }

    private static func error(_ code: Int32) -> ConntrackError {
        switch code {
        case ENOENT: .noEntry
        case EPERM: .notPermitted
        default: .unavailable(String(cString: strerror(code)))
        }
    }

    fileprivate final class Answer {
        var destination: IPEndpoint?
    }
}

/// One conntrack entry of the answer: its original destination, IPv4.
private func onConntrackMessage(_ header: UnsafePointer<nlmsghdr>?, _ context: UnsafeMutableRawPointer?) -> CInt {
    guard let header, let context, let entry = nfct_new() else { return MNL_CB_ERROR }
    defer { nfct_destroy(entry) }
    guard nfct_nlmsg_parse(header, entry) == 0 else { return MNL_CB_ERROR }
    let answer = Unmanaged<ConntrackTable.Answer>.fromOpaque(context).takeUnretainedValue()
    if nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO) == UInt8(AF_INET) {
        let address = UInt32(bigEndian: nfct_get_attr_u32(entry, ATTR_ORIG_IPV4_DST))
        let port = UInt16(bigEndian: nfct_get_attr_u16(entry, ATTR_ORIG_PORT_DST))
        answer.destination = IPEndpoint(address: .v4(address), port: port)
    }
    return MNL_CB_OK
}

public enum ConntrackError: Error, Equatable, CustomStringConvertible {
    /// No tracked flow has that reply tuple (it was not redirected, or it expired).
    case noEntry
    /// The process lacks CAP_NET_ADMIN in this network namespace.
    case notPermitted
    case notIPv4
    case unavailable(String)

    public var description: String {
        switch self {
        case .noEntry: "conntrack has no entry for the flow"
        case .notPermitted: "asking conntrack needs CAP_NET_ADMIN"
        case .notIPv4: "only IPv4 flows are looked up"
        case .unavailable(let reason): "conntrack is unavailable: \(reason)"
        }
    }
}
