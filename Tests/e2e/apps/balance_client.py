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

Prints one JSON object: `answers` (the name of the backend that answered
each request, in order; the HTTP apps say `hello from <name>; peer=<addr>`),
`peers` (the peer address each HTTP app reported) and `connections` (how
many distinct client sockets were used). Every wait is bounded (--timeout);
exit 1 (with what went wrong on stderr) if any request got no proper answer.
"""

import argparse
import http.client
import json
import re
import socket
import sys

HELLO = re.compile(r"^hello from (\S+); peer=(\S+)\n$")


def http_new(args) -> dict:
    answers, peers, sockets = [], [], set()
    for i in range(args.count):
        conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
        try:
            conn.request("GET", f"/req{i}", headers={"Connection": "close"})
            sockets.add(conn.sock.getsockname()[:2])
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
        finally:
            conn.close()
        m = HELLO.match(body)
        if resp.status != 200 or not m:
            raise SystemExit(f"request {i}: status {resp.status}, body {body!r}")
        answers.append(m.group(1))
        peers.append(m.group(2))
    return {"answers": answers, "peers": peers, "connections": len(sockets)}


def http_keepalive(args) -> dict:
    answers, peers, sockets = [], [], set()
    conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
    try:
        for i in range(args.count):
            conn.request("GET", f"/req{i}")
            # http.client reconnects on its own if the server closed the
            # connection: the socket's local address tells.
            sockets.add(conn.sock.getsockname()[:2])
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            m = HELLO.match(body)
            if resp.status != 200 or not m:
                raise SystemExit(f"request {i}: status {resp.status}, body {body!r}")
            if resp.will_close:
                raise SystemExit(f"request {i}: the response closes the connection "
                                 f"({resp.getheader('Connection')!r})")
            answers.append(m.group(1))
            peers.append(m.group(2))
    finally:
        conn.close()
    return {"answers": answers, "peers": peers, "connections": len(sockets)}


def read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(f"connection closed with {bytes(buf)!r} unread")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.rstrip(b"\r")


def tcp_new(args) -> dict:
    answers, sockets = [], set()
    for i in range(args.count):
        with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
            sockets.add(s.getsockname()[:2])
            # Write first, so a relay that waits for the client's bytes
            # works as well as one that connects at once.
            s.sendall(b"ping\n")
            buf = bytearray()
            banner = read_line(s, buf).decode(errors="replace")
            echo = read_line(s, buf)
        if not banner.startswith("220 ") or echo != b"ping":
            raise SystemExit(f"connection {i}: banner {banner!r}, echo {echo!r}")
        answers.append(banner[4:])
    return {"answers": answers, "peers": [], "connections": len(sockets)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["http-new", "http-keepalive", "tcp-new"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()
    run = {"http-new": http_new, "http-keepalive": http_keepalive, "tcp-new": tcp_new}[args.mode]
    try:
        result = run(args)
    except (OSError, EOFError, http.client.HTTPException) as e:
        print(f"{args.mode} {args.host}:{args.port}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
