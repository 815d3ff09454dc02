#!/usr/bin/env python3
"""A tiny unmodified HTTP/1.1 app for the weft lab.

GET any path -> 200, body `hello from <name>; peer=<client address>\n`
(the address the connection came from, as the app saw it; IPv4-mapped
addresses are shown as plain IPv4). Listens on every address, IPv4 and IPv6
(dual-stack), so the peer it reports tells how the connection was delivered.
POST echoes the request body back. Logs one line per request to stdout.
"""

import argparse
import socket
import sys
from http.server import BaseHTTPRequestHandler

from labserver import DualStackHTTPServer, LabHTTPServer


def plain(addr: str) -> str:
    return addr[7:] if addr.startswith("::ffff:") else addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "weft-lab-app/1"
    name = "backend"

    def _send(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        peer = plain(self.client_address[0])
        self._send(f"hello from {self.name}; peer={peer}\n".encode())

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._send(self.rfile.read(length))

    def log_message(self, fmt: str, *args) -> None:
        sys.stdout.write(f"{plain(self.client_address[0])} {fmt % args}\n")
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9090)
    ap.add_argument("--name", default="backend")
    ap.add_argument("--bind", default="::", help="address to bind (default: all, dual-stack)")
    args = ap.parse_args()
    Handler.name = args.name
    if ":" in args.bind:
        server = DualStackHTTPServer((args.bind, args.port), Handler)
    else:
        server = LabHTTPServer((args.bind, args.port), Handler)
    print(f"http_app {args.name} listening on {args.bind} port {args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
