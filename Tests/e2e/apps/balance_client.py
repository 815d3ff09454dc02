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
  balance_client.py http-load HOST PORT --count N --concurrency C --deadline S
        N GETs in all over C concurrent keep-alive connections (one thread
        each, every thread taking the next request as soon as its previous
        one is answered), all within S seconds.
  balance_client.py http-tally HOST PORT --count N [--pause S]
        N GETs on ONE keep-alive connection (S seconds apart), whatever
        their status: prints
        `answers`, [status, name, weft-reason] per request, where name is
        the backend that answered (`hello from <name>` or `status S from
        <name>`), or "" when weft answered itself (weft-reason then says why).
  balance_client.py http-keys HOST PORT --keys K --rounds R --new-per-key M
                    --unkeyed U --header NAME
        For K keys `user-00`..: R rounds on ONE keep-alive connection, each
        one GET per key with header `NAME: <key>`; then M GETs per key, each
        on a new connection; then U GETs without the header, each on a new
        connection.

Prints one JSON object: `answers` (the name of the backend that answered
each request, in order; the HTTP apps say `hello from <name>; peer=<addr>`),
`peers` (the peer address each HTTP app reported) and `connections` (how
many distinct client sockets were used); `interleave` prints `keep` and
`new` (the answers on each side) and `keep_connections`; `http-load` prints
`answers` (in the order they came), `peers` and `connections`; `http-keys`
prints `keep` and `new` (key -> the answers for that key, in order),
`unkeyed` and `keep_connections`. Every wait is
bounded (--timeout); exit 1 (with what went wrong on stderr) if any request
got no proper answer.
"""

import argparse
import http.client
import json
import re
import socket
import sys
import threading
import time

HELLO = re.compile(r"^hello from (\S+); peer=(\S+)\n$")


class Failed(Exception):
    pass


def hello(resp: http.client.HTTPResponse, what: str) -> tuple[str, str]:
    body = resp.read().decode(errors="replace")
    m = HELLO.match(body)
    if resp.status != 200 or not m:
        raise Failed(f"{what}: status {resp.status}, body {body!r}")
    return m.group(1), m.group(2)


def http_once(host: str, port: int, i: int, timeout: float,
              headers: dict[str, str] | None = None) -> tuple[str, str, tuple]:
    """One GET on a new connection: (name, peer, client socket address)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", f"/new{i}", headers={"Connection": "close", **(headers or {})})
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

    def get(self, headers: dict[str, str] | None = None) -> tuple[str, str]:
        i, self.n = self.n, self.n + 1
        self.conn.request("GET", f"/keep{i}", headers=headers or {})
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


STATUS = re.compile(r"^status \d+ from (\S+)\n$")


def http_tally(args) -> dict:
    conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
    answers = []
    try:
        for i in range(args.count):
            if i and args.pause:
                time.sleep(args.pause)
            conn.request("GET", f"/tally{i}")
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            m = HELLO.match(body) or STATUS.match(body)
            reason = resp.getheader("weft-reason") or ""
            if not m and not reason:
                raise Failed(f"request {i}: status {resp.status}, body {body!r}, no weft-reason")
            answers.append([resp.status, m.group(1) if m else "", reason])
    finally:
        conn.close()
    return {"answers": answers}


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


def http_load(args) -> dict:
    """`count` GETs over `concurrency` keep-alive connections at once."""
    deadline = time.monotonic() + args.deadline
    lock = threading.Lock()
    state = {"next": 0}
    answers: list[str] = []
    peers: list[str] = []
    sockets: set[tuple] = set()
    errors: list[str] = []

    def worker() -> None:
        keep = KeepAlive(args.host, args.port, args.timeout)
        try:
            while True:
                with lock:
                    if errors or state["next"] >= args.count or time.monotonic() > deadline:
                        return
                    state["next"] += 1
                name, peer = keep.get()
                with lock:
                    answers.append(name)
                    peers.append(peer)
        except (OSError, Failed, http.client.HTTPException) as e:
            with lock:
                errors.append(f"{type(e).__name__}: {e}")
        finally:
            with lock:
                sockets.update(keep.sockets)
            keep.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        # Each request is bounded by the socket timeout, so this ends.
        t.join(max(0.0, deadline - time.monotonic()) + args.timeout + 5)
    with lock:
        if errors:
            raise Failed(f"{len(errors)} connection(s) failed after {len(answers)} answers: "
                         f"{errors[:3]}")
        if len(answers) != args.count or any(t.is_alive() for t in threads):
            raise Failed(f"only {len(answers)} of {args.count} answers within {args.deadline}s")
        return {"answers": list(answers), "peers": list(peers), "connections": len(sockets)}


def http_keys(args) -> dict:
    """The same keys again and again, on one connection and on new ones."""
    keys = [f"user-{k:02d}" for k in range(args.keys)]
    kept: dict[str, list[str]] = {key: [] for key in keys}
    new: dict[str, list[str]] = {key: [] for key in keys}
    keep = KeepAlive(args.host, args.port, args.timeout)
    try:
        for _ in range(args.rounds):
            for key in keys:
                kept[key].append(keep.get({args.header: key})[0])
    finally:
        keep.close()
    i = 0
    for _ in range(args.new_per_key):
        for key in keys:
            new[key].append(http_once(args.host, args.port, i, args.timeout, {args.header: key})[0])
            i += 1
    unkeyed = [http_once(args.host, args.port, i + n, args.timeout)[0] for n in range(args.unkeyed)]
    return {"keep": kept, "new": new, "unkeyed": unkeyed, "keep_connections": len(keep.sockets)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["http-new", "http-keepalive", "tcp-new", "interleave",
                                     "http-load", "http-keys", "http-tally"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("chost", nargs="?")
    ap.add_argument("cport", nargs="?", type=int)
    ap.add_argument("--c-app", choices=["http", "banner"], default="http")
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16, help="http-load: connections at once")
    ap.add_argument("--deadline", type=float, default=60, help="http-load: seconds for all of it")
    ap.add_argument("--keys", type=int, default=50, help="http-keys: how many keys")
    ap.add_argument("--rounds", type=int, default=3, help="http-keys: rounds on one connection")
    ap.add_argument("--new-per-key", type=int, default=2, help="http-keys: new connections per key")
    ap.add_argument("--unkeyed", type=int, default=0, help="http-keys: GETs without the header")
    ap.add_argument("--header", default="x-user", help="http-keys: the key's header")
    ap.add_argument("--pause", type=float, default=0, help="http-tally: seconds between requests")
    args = ap.parse_args()
    run = {"http-new": http_new, "http-keepalive": http_keepalive, "tcp-new": tcp_new,
           "interleave": interleave, "http-load": http_load, "http-keys": http_keys,
           "http-tally": http_tally}[args.mode]
    try:
        result = run(args)
    except (OSError, Failed, http.client.HTTPException) as e:
        print(f"{args.mode} {args.host}:{args.port}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
