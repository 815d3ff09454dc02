#!/usr/bin/env python3
"""An unmodified HTTP/1.1 app that shows what it received (weft lab, issue 3).

Every answer is plain HTTP/1.1 from Python's http.server; the app itself
frames its bodies (Content-Length, chunked, or close-delimited for HTTP/1.0
clients), so the tests can see that what the mesh delivers is intact.

  GET  /hello                 200 `hello from <name>; peer=<addr>\\n`
  GET  /headers               200 JSON: method, path, version, peer and the
                              request headers as received ([[name, value], ...])
  POST|PUT /sha256            reads the body (Content-Length or chunked, after a
                              100 Continue when asked), answers JSON: sha256,
                              size, transfer_encoding, content_length, expect
  GET|HEAD /bytes?n=N         N bytes of `pattern` with Content-Length
  GET  /slow?chunks=N&delay=S N lines `chunk 0000\\n`..., one every S seconds,
                              chunked (close-delimited to an HTTP/1.0 client)
  GET|HEAD /status/CODE       that status: 204 and 304 without a body; any
                              other with body `status CODE from <name>\\n` and
                              header `X-App-Status: CODE`
  POST /echo                  the request body back
  GET  /delay?seconds=S       sets the delay of the hello answers (below) from
                              now on; answers `delay S from <name>\\n` at once
  GET  /fail?status=S         from now on every hello answer is status S with
                              body `status S from <name>\\n` (0: answer again);
                              answers `fail S from <name>\\n`
  GET  /health?ok=0|1         what /healthz says from now on; answers
                              `health 0|1 from <name>\\n`
  GET  /healthz               200 `ok from <name>\\n`, or 503 after /health?ok=0
With `--close-idle-after S`, a connection that sat idle S seconds or more
after an answer is closed when its next request arrives, unanswered: an app
that closes idle keep-alive connections just as a request comes (the race
behind Envoy's "503 UC"), made to happen every time.
Any other GET (or HEAD) answers like /hello. With `--delay S` (default 0), or
after /delay, every hello answer waits S seconds before its response head, so
the app is a slow endpoint that can be made fast again at runtime.
Logs one line per request to stdout.
"""

import argparse
import hashlib
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from labserver import DualStackHTTPServer

_BLOCK = bytes(range(251)) * 4178  # 1,048,678 bytes: 251 does not divide 2^k


def pattern(n: int) -> bytes:
    """The body of /bytes?n=N: byte i is i % 251."""
    reps, rest = divmod(n, len(_BLOCK))
    return _BLOCK * reps + _BLOCK[:rest]


def plain(addr: str) -> str:
    return addr[7:] if addr.startswith("::ffff:") else addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "weft-mesh-app/1"
    name = "mesh-backend"
    delay = 0.0  # seconds before each hello answer (--delay, GET /delay)
    fail_status = 0  # the status of every hello answer while set (GET /fail)
    close_idle_after = 0.0  # --close-idle-after
    _last_answer: float | None = None  # per connection: when its last answer went out
    healthy = True   # what /healthz says (GET /health)

    def handle_one_request(self) -> None:
        if not Handler.close_idle_after:
            return super().handle_one_request()
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or len(self.raw_requestline) > 65536:
            self.close_connection = True
            return
        last = self._last_answer
        if last is not None and time.monotonic() - last >= Handler.close_idle_after:
            self.log_message("closing a connection idle %.2f s as a request arrives", time.monotonic() - last)
            self.close_connection = True
            return
        if not self.parse_request():
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()
        self._last_answer = time.monotonic()

    # -- helpers -----------------------------------------------------------

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _route(self) -> str:
        return urlsplit(self.path).path

    def _send(self, body: bytes, status: int = 200, ctype: str = "text/plain",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(json.dumps(obj).encode() + b"\n", status, "application/json")

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("EOF in chunk size")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                data = self.rfile.read(size)
                if len(data) != size:
                    raise ConnectionError("EOF in chunk data")
                out += data
                self.rfile.readline(3)  # CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is not None:
            n = int(length)
            data = self.rfile.read(n)
            if len(data) != n:
                raise ConnectionError(f"short body: {len(data)} of {n}")
            return data
        if self.request_version == "HTTP/1.0":
            self.close_connection = True
            return self.rfile.read()
        return b""

    # -- routes --------------------------------------------------------------

    def do_GET(self) -> None:
        route, q = self._route(), self._query()
        if route == "/headers":
            self._json({"method": self.command, "path": self.path,
                        "version": self.request_version, "peer": plain(self.client_address[0]),
                        "headers": [[k, v] for k, v in self.headers.items()]})
        elif route == "/bytes":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                body = memoryview(pattern(n))
                for off in range(0, n, 1 << 20):
                    self.wfile.write(body[off:off + (1 << 20)])
        elif route == "/slow":
            self._slow(int(q.get("chunks", "20")), float(q.get("delay", "0.05")))
        elif route == "/delay":
            Handler.delay = max(0.0, float(q.get("seconds", "0")))
            self._send(f"delay {Handler.delay:g} from {self.name}\n".encode())
        elif route == "/fail":
            Handler.fail_status = int(q.get("status", "0"))
            self._send(f"fail {Handler.fail_status} from {self.name}\n".encode())
        elif route == "/health":
            Handler.healthy = q.get("ok", "1") != "0"
            self._send(f"health {int(Handler.healthy)} from {self.name}\n".encode())
        elif route == "/healthz":
            self._send(f"{'ok' if Handler.healthy else 'failing'} from {self.name}\n".encode(),
                       200 if Handler.healthy else 503)
        elif route.startswith("/status/"):
            code = int(route.rsplit("/", 1)[1])
            if code in (204, 304):
                self.send_response(code)
                if code == 304:
                    self.send_header("ETag", '"v1"')
                self.send_header("X-App-Status", str(code))
                self.end_headers()
            else:
                extra = {"X-App-Status": str(code)}
                if code == 503:
                    extra["Retry-After"] = "7"
                self._send(f"status {code} from {self.name}\n".encode(), code, headers=extra)
        elif Handler.fail_status:
            code = Handler.fail_status
            self._send(f"status {code} from {self.name}\n".encode(), code)
        else:
            if Handler.delay > 0:
                time.sleep(Handler.delay)
            peer = plain(self.client_address[0])
            self._send(f"hello from {self.name}; peer={peer}\n".encode())

    do_HEAD = do_GET

    def _slow(self, chunks: int, delay: float) -> None:
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        try:
            for i in range(chunks):
                line = f"chunk {i:04d}\n".encode()
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                else:
                    self.wfile.write(line)
                self.wfile.flush()
                if i + 1 < chunks:
                    time.sleep(delay)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client went away mid-stream

    def do_POST(self) -> None:
        route = self._route()
        try:
            body = self._read_body()
        except (ConnectionError, ValueError) as e:
            self.log_message("bad body: %s", e)
            self.close_connection = True
            self._send(f"bad body: {e}\n".encode(), 400)
            return
        if route == "/sha256":
            self._json({"sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                        "transfer_encoding": self.headers.get("Transfer-Encoding"),
                        "content_length": self.headers.get("Content-Length"),
                        "expect": self.headers.get("Expect")})
        else:
            self._send(body, ctype="application/octet-stream")

    do_PUT = do_POST

    def log_message(self, fmt: str, *args) -> None:
        sys.stdout.write(f"{plain(self.client_address[0])} {fmt % args}\n")
        sys.stdout.flush()


class DualStackServer(DualStackHTTPServer):
    request_queue_size = 256  # 32+ app connections may arrive at once


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9180)
    ap.add_argument("--name", default="mesh-backend")
    ap.add_argument("--delay", type=float, default=0.0,
                    help="seconds each hello answer waits before its head (default 0)")
    ap.add_argument("--close-idle-after", type=float, default=0.0,
                    help="close a connection idle this long when its next request arrives (default off)")
    args = ap.parse_args()
    Handler.close_idle_after = max(0.0, args.close_idle_after)
    Handler.name = args.name
    Handler.delay = max(0.0, args.delay)
    server = DualStackServer(("::", args.port), Handler)
    print(f"mesh_app {args.name} listening on [::]:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
