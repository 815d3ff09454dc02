#!/usr/bin/env python3
"""Counts which backend answers, for the balancing end-to-end tests.

  balance_client.py http-new HOST PORT --count N
        N GETs, each on a NEW connection (`Connection: close`, one request
        per connection).
  balance_client.py http-keepalive HOST PORT --count N
        N GETs on ONE keep-alive connection.
  balance_client.py tcp-new HOST PORT --count N
        N new TCP connections to a banner_app.py: send `ping\\n`, read the
        banner (`220 <name>`) and the echo, close.
  balance_client.py interleave HOST PORT CHOST CPORT --c-app http|banner --count N
        One keep-alive connection to HOST:PORT asks once, then N times: one
        new connection to CHOST:CPORT (one GET, or one banner exchange),
        then one more GET on the keep-alive connection.

Prints one JSON object: `answers` (the name of the backend that answered
each request, in order; the HTTP apps say `hello from <name>; peer=<addr>`),
`peers` (the peer address each HTTP app reported) and `connections` (how
many distinct client sockets were used); `interleave` prints `keep` and
`new` (the answers on each side) and `keep_connections`. Every wait is
bounded (--timeout); exit 1 (with what went wrong on stderr) if any request
got no proper answer.
"""

import argparse
import http.client
import json
import re
import socket
import sys

HELLO = re.compile(r"^hello from (\S+); peer=(\S+)\n$")


class Failed(Exception):
    pass


def hello(resp: http.client.HTTPResponse, what: str) -> tuple[str, str]:
    body = resp.read().decode(errors="replace")
    m = HELLO.match(body)
    if resp.status != 200 or not m:
        raise Failed(f"{what}: status {resp.status}, body {body!r}")
    return m.group(1), m.group(2)


def http_once(host: str, port: int, i: int, timeout: float) -> tuple[str, str, tuple]:
    """One GET on a new connection: (name, peer, client socket address)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", f"/new{i}", headers={"Connection": "close"})
        sockname = conn.sock.getsockname()[:2]
        name, peer = hello(conn.getresponse(), f"request {i}")
    finally:
        conn.close()
    return name, peer, sockname


class KeepAlive:
    """GETs on one keep-alive connection; `sockets` tells if it stayed one
    (http.client reconnects on its own when the server closed it)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.sockets: set[tuple] = set()
        self.n = 0

    def get(self) -> tuple[str, str]:
        i, self.n = self.n, self.n + 1
        self.conn.request("GET", f"/keep{i}")
        self.sockets.add(self.conn.sock.getsockname()[:2])
        resp = self.conn.getresponse()
        name, peer = hello(resp, f"keep-alive request {i}")
        if resp.will_close:
            raise Failed(f"keep-alive request {i}: the response closes the connection "
                         f"({resp.getheader('Connection')!r})")
        return name, peer

    def close(self) -> None:
        self.conn.close()


def read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise Failed(f"connection closed with {bytes(buf)!r} unread")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.rstrip(b"\r")


def tcp_once(host: str, port: int, i: int, timeout: float) -> tuple[str, tuple]:
    """One new connection to a banner app: (name, client socket address)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        sockname = s.getsockname()[:2]
        # Write first, so a relay that waits for the client's bytes works as
        # well as one that connects at once.
        s.sendall(b"ping\n")
        buf = bytearray()
        banner = read_line(s, buf).decode(errors="replace")
        echo = read_line(s, buf)
    if not banner.startswith("220 ") or echo != b"ping":
        raise Failed(f"connection {i}: banner {banner!r}, echo {echo!r}")
    return banner[4:], sockname


def http_new(args) -> dict:
    answers, peers, sockets = [], [], set()
    for i in range(args.count):
        name, peer, sockname = http_once(args.host, args.port, i, args.timeout)
        answers.append(name)
        peers.append(peer)
        sockets.add(sockname)
    return {"answers": answers, "peers": peers, "connections": len(sockets)}


def http_keepalive(args) -> dict:
    keep = KeepAlive(args.host, args.port, args.timeout)
    answers, peers = [], []
    try:
        for _ in range(args.count):
            name, peer = keep.get()
            answers.append(name)
            peers.append(peer)
    finally:
        keep.close()
    return {"answers": answers, "peers": peers, "connections": len(keep.sockets)}


def tcp_new(args) -> dict:
    answers, sockets = [], set()
    for i in range(args.count):
        name, sockname = tcp_once(args.host, args.port, i, args.timeout)
        answers.append(name)
        sockets.add(sockname)
    return {"answers": answers, "peers": [], "connections": len(sockets)}


def interleave(args) -> dict:
    if args.chost is None or args.cport is None:
        raise Failed("interleave needs CHOST CPORT")
    keep = KeepAlive(args.host, args.port, args.timeout)
    kept, new, peers = [], [], []
    try:
        kept.append(keep.get()[0])
        for i in range(args.count):
            if args.c_app == "http":
                name, peer, _ = http_once(args.chost, args.cport, i, args.timeout)
                peers.append(peer)
            else:
                name, _ = tcp_once(args.chost, args.cport, i, args.timeout)
            new.append(name)
            kept.append(keep.get()[0])
    finally:
        keep.close()
    return {"keep": kept, "new": new, "peers": peers, "keep_connections": len(keep.sockets)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["http-new", "http-keepalive", "tcp-new", "interleave"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("chost", nargs="?")
    ap.add_argument("cport", nargs="?", type=int)
    ap.add_argument("--c-app", choices=["http", "banner"], default="http")
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()
    run = {"http-new": http_new, "http-keepalive": http_keepalive, "tcp-new": tcp_new,
           "interleave": interleave}[args.mode]
    try:
        result = run(args)
    except (OSError, Failed, http.client.HTTPException) as e:
        print(f"{args.mode} {args.host}:{args.port}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
