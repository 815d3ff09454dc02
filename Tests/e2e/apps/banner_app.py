#!/usr/bin/env python3
"""A server-speaks-first app (like SMTP or MySQL) for the weft lab.

On accept it sends `220 <text>\r\n` at once, before the client writes
anything, then echoes whatever it receives until the client closes. Listens
on every address, IPv4 and IPv6.
"""

import argparse
import socket
import socketserver


class Handler(socketserver.BaseRequestHandler):
    banner = b"220 banner\r\n"

    def handle(self) -> None:
        sock = self.request
        try:
            sock.sendall(self.banner)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--text", default="banner")
    args = ap.parse_args()
    Handler.banner = f"220 {args.text}\r\n".encode()
    with Server(("::", args.port), Handler) as server:
        print(f"banner_app listening on port {args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
