#!/usr/bin/env python3
"""An HTTP/1.1 app for hostile-input tests: it logs every request line it
reads, exactly as read, and answers each path with fixed raw bytes, some of
them broken on purpose (RFC 9112 violations, a second response hidden after
the first). Connections stay open after every answer (keep-alive), so a
desync would show on the next request.

  raw_app.py --port N

Logs `REQUEST <request line>` when a request's head is read, and
`COMPLETE <request line>` once its body is too.
"""

import argparse
import socket
import socketserver
import sys

RESPONSES = {
    "/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/resp/te-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/resp/dup-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
    "/resp/bad-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "/resp/obs-fold": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\n b\r\n\r\nok",
    "/resp/nul": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\x00b\r\n\r\nok",
    "/resp/space-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "/resp/bad-status": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "/resp/bad-version": b"HTTP/9.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/resp/bare-cr": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\rb\r\n\r\nok",
    # Valid HTTP/1.1, but past the 2^63 - 1 an HTTP/2 peer can carry.
    "/resp/huge-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 11068937977120715208\r\n\r\nok",
    # Valid HTTP/1.1, but more fields than a node takes in one HTTP/2 block.
    "/resp/many-fields": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(120))
                         + b"Content-Length: 2\r\n\r\nok",
    # The framing says 2 bytes; a whole second response follows at once.
    "/resp/smuggle": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
    # The head is fine; the first chunk size is not.
    "/resp/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(30)
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffered += data
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            sys.stdout.write(f"REQUEST {lines[0].decode('latin-1')}\n")
            sys.stdout.flush()
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            # weft hands the app well-framed requests; read their bodies.
            if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                while b"0\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                buffered = buffered.partition(b"0\r\n\r\n")[2]
            else:
                length = int(fields.get(b"content-length", b"0") or 0)
                while len(buffered) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                buffered = buffered[length:]
            sys.stdout.write(f"COMPLETE {lines[0].decode('latin-1')}\n")
            sys.stdout.flush()
            parts = lines[0].split(b" ")
            path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
            try:
                conn.sendall(RESPONSES.get(path, RESPONSES["/ok"]))
            except OSError:
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    with Server(("0.0.0.0", args.port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
