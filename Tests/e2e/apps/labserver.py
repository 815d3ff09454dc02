"""The HTTP servers of the tests' apps: http.server's ThreadingHTTPServer
without the reverse DNS lookup of its own address at bind time
(`socket.getfqdn`, only used for the unused `server_name`), which in a pod
whose resolver is unreachable waits 5 seconds before the app listens.
Imported by the apps beside it (their directory is on sys.path)."""

import socket
import socketserver
from http.server import ThreadingHTTPServer


class LabHTTPServer(ThreadingHTTPServer):
    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name = "localhost"
        self.server_port = self.server_address[1]


class DualStackHTTPServer(LabHTTPServer):
    """IPv6 socket that takes IPv4 too (bind to `::`)."""
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
