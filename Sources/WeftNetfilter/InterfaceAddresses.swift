#if canImport(Glibc)
import Glibc
#endif
import CNetfilter
import WeftCore

/// The addresses assigned to this network namespace's interfaces, read with
/// one rtnetlink `RTM_GETADDR` dump over libmnl.
public enum InterfaceAddresses {
    /// Every IPv4 and IPv6 address configured on any interface, loopback included.
    public static func current() throws -> [IPAddress] {
        guard let socket = mnl_socket_open(NETLINK_ROUTE) else {
            throw InterfaceAddressesError.netlink("mnl_socket_open", errno)
        }
        defer { mnl_socket_close(socket) }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            throw InterfaceAddressesError.netlink("mnl_socket_bind", errno)
        }
        let portID = mnl_socket_get_portid(socket)
        let sequence = UInt32(truncatingIfNeeded: time(nil))
        let bufferSize = 32 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }

        guard let header = mnl_nlmsg_put_header(buffer) else {
            throw InterfaceAddressesError.netlink("mnl_nlmsg_put_header", EINVAL)
        }
        header.pointee.nlmsg_type = UInt16(RTM_GETADDR)
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
        header.pointee.nlmsg_seq = sequence
        let request = mnl_nlmsg_put_extra_header(header, MemoryLayout<ifaddrmsg>.size)
            .assumingMemoryBound(to: ifaddrmsg.self)
        request.pointee.ifa_family = UInt8(AF_UNSPEC)
        guard mnl_socket_sendto(socket, header, Int(header.pointee.nlmsg_len)) >= 0 else {
            throw InterfaceAddressesError.netlink("mnl_socket_sendto", errno)
        }

        let collector = Collector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        while true {
            let received = mnl_socket_recvfrom(socket, buffer, bufferSize)
            guard received > 0 else { throw InterfaceAddressesError.netlink("mnl_socket_recvfrom", errno) }
            let result = mnl_cb_run(buffer, received, sequence, portID, onAddressMessage, context)
            if result == MNL_CB_ERROR { throw InterfaceAddressesError.netlink("mnl_cb_run", errno) }
            if result <= MNL_CB_STOP { break }
        }
        return collector.addresses
    }
}

public enum InterfaceAddressesError: Error, CustomStringConvertible {
    case netlink(String, CInt)
    public var description: String {
        switch self {
        case .netlink(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// Accumulates addresses while libmnl walks the dump; reached from the C
/// callbacks through an unretained pointer that lives for the walk.
private final class Collector {
    var addresses: [IPAddress] = []
    var family: UInt8 = 0
}

/// Called once per `RTM_NEWADDR` message of the dump.
private func onAddressMessage(_ header: UnsafePointer<nlmsghdr>?, _ context: UnsafeMutableRawPointer?) -> CInt {
    guard let header, let context else { return MNL_CB_ERROR }
    let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
    let message = mnl_nlmsg_get_payload(header).assumingMemoryBound(to: ifaddrmsg.self)
    collector.family = message.pointee.ifa_family
    return mnl_attr_parse(header, UInt32(MemoryLayout<ifaddrmsg>.size), onAddressAttribute, context)
}

/// Called once per attribute of an address message; keeps IFA_ADDRESS and
/// IFA_LOCAL (on point-to-point links they differ, and both are ours).
private func onAddressAttribute(_ attribute: UnsafePointer<nlattr>?, _ context: UnsafeMutableRawPointer?) -> CInt {
    guard let attribute, let context else { return MNL_CB_ERROR }
    let type = Int(mnl_attr_get_type(attribute))
    guard type == Int(IFA_ADDRESS) || type == Int(IFA_LOCAL) else { return MNL_CB_OK }
    let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
    let length = Int(mnl_attr_get_payload_len(attribute))
    let expected = collector.family == UInt8(AF_INET) ? 4 : collector.family == UInt8(AF_INET6) ? 16 : 0
    guard expected > 0, length == expected, let payload = mnl_attr_get_payload(attribute) else { return MNL_CB_OK }
    let bytes = UnsafeRawBufferPointer(start: payload, count: length)
    if let address = IPAddress(bytes: bytes), !collector.addresses.contains(address) {
        collector.addresses.append(address)
    }
    return MNL_CB_OK
}
