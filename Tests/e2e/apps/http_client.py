#!/usr/bin/env python3
"""Unmodified HTTP/1.1 clients for the mesh tests (standard library only).

  http_client.py sequence HOST PORT "METHOD PATH" ... [--pipeline]
      one TCP connection, one HTTP/1.1 request per argument, each answered
      before the next is sent; with --pipeline, all requests are written in a
      single send before anything is read. Responses are read strictly by
      their framing (Content-Length, chunked; none after HEAD, 1xx, 204, 304),
      so a stray body byte breaks the next response. Prints JSON:
      [{status, headers, body}, ...] (headers lower-cased).
  http_client.py load HOST PORT --connections C --requests N [--path P]
      C threads, each with one keep-alive http.client connection, share N
      GET /hello?i=... requests (or GET P, where any 200 is good). Prints
      JSON: ok, failed, connections_opened
      (how many TCP connections the app side opened), first errors.
Every wait is bounded (--timeout, and an overall --deadline for load).
"""

import argparse
import http.client
import json
import socket
import sys
import threading
import time


class Reader:
    """Reads HTTP/1.1 responses off a socket (Content-Length or chunked)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed mid-response")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, method: str = "GET") -> dict:
        status_line = self.line().decode()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            h = self.line()
            if not h:
                break
            k, _, v = h.decode().partition(":")
            k = k.strip().lower()
            headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
        if 100 <= status < 200:
            return self.response(method)
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                body += self.exactly(size)
                self.exactly(2)
        elif "content-length" in headers:
            body = self.exactly(int(headers["content-length"]))
        else:
            raise ConnectionError(f"response without framing: {status_line} {headers}")
        return {"status": status, "headers": headers, "body": body.decode(errors="replace")}


def sequence(args) -> int:
    host_hdr = f"{args.host}:{args.port}"
    reqs = []
    for spec in args.requests_spec:
        method, path = spec.split(" ", 1)
        reqs.append((method, f"{method} {path} HTTP/1.1\r\nHost: {host_hdr}\r\n"
                             f"User-Agent: http_client/1\r\n\r\n".encode()))
    out = []
    with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
        r = Reader(s)
        if args.pipeline:
            s.sendall(b"".join(raw for _, raw in reqs))
            out = [r.response(method) for method, _ in reqs]
        else:
            for method, raw in reqs:
                s.sendall(raw)
                out.append(r.response(method))
    print(json.dumps(out))
    return 0


def load(args) -> int:
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0, "opened": 0, "errors": []}
    deadline = time.monotonic() + args.deadline

    def take() -> int | None:
        with lock:
            if state["next"] >= args.requests or time.monotonic() > deadline:
                return None
            state["next"] += 1
            return state["next"] - 1

    def worker() -> None:
        conn = None
        while (i := take()) is not None:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
                    conn.connect()
                    with lock:
                        state["opened"] += 1
                conn.request("GET", args.path or f"/hello?i={i}")
                resp = conn.getresponse()
                body = resp.read()
                good = resp.status == 200 and (args.path is not None or body.startswith(b"hello from "))
                if resp.will_close:
                    conn.close()
                    conn = None
                with lock:
                    state["ok" if good else "failed"] += 1
                    if not good and len(state["errors"]) < 5:
                        state["errors"].append(f"#{i}: {resp.status} {body[:80]!r}")
            except (OSError, http.client.HTTPException) as e:
                if conn is not None:
                    conn.close()
                conn = None
                with lock:
                    state["failed"] += 1
                    if len(state["errors"]) < 5:
                        state["errors"].append(f"#{i}: {type(e).__name__}: {e}")
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + args.timeout))
    print(json.dumps({"ok": state["ok"], "failed": state["failed"],
                      "not_sent": args.requests - state["next"],
                      "connections_opened": state["opened"], "errors": state["errors"],
                      "seconds": round(time.monotonic() - t0, 2)}))
    return 0 if state["ok"] == args.requests else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["sequence", "load"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("requests_spec", nargs="*", metavar="REQUEST",
                    help='sequence: "METHOD PATH", one per request')
    ap.add_argument("--pipeline", action="store_true", help="sequence: send all at once")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--deadline", type=float, default=90, help="load: stop sending after this")
    ap.add_argument("--path", help="load: GET this path (any 200 is good) instead of /hello?i=N")
    args = ap.parse_args()
    return {"sequence": sequence, "load": load}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
