#!/usr/bin/env python3
"""An external authorization service for ext_authz tests (weft lab, issue 10).

  POST <any path>   judges the request weft describes in the headers:
                    Authorization `Bearer <name>` -> 200 with `x-user-id: <name>`
                    (and `x-not-forwarded: 1`, which weft must not pass on),
                    no Authorization -> 200 with `x-user-id: anonymous`,
                    `Bearer eve` or anything else -> 401 with
                    `www-authenticate: Bearer` and body `no entry\\n`.
Logs one JSON line per check: the method, path and x-forwarded-* headers it
was asked about, and the x-forwarded-client-cert (the caller's identity).
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler

from labserver import LabHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0") or "0")
        if length:
            self.rfile.read(length)
        print(json.dumps({"method": self.command, "path": self.path,
                          "forwarded_method": self.headers.get("x-forwarded-method"),
                          "forwarded_uri": self.headers.get("x-forwarded-uri"),
                          "forwarded_host": self.headers.get("x-forwarded-host"),
                          "client_cert": self.headers.get("x-forwarded-client-cert"),
                          "user_header": self.headers.get("x-user-id")}), flush=True)
        token = self.headers.get("authorization")
        if token is None or (token.startswith("Bearer ") and token != "Bearer eve" and len(token) > 7):
            user = "anonymous" if token is None else token[len("Bearer "):]
            self.send_response(200)
            self.send_header("x-user-id", user)
            self.send_header("x-not-forwarded", "1")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = b"no entry\n"
        self.send_response(401)
        self.send_header("www-authenticate", "Bearer")
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = LabHTTPServer(("0.0.0.0", args.port), Handler)
    print(f"authz_app listening on :{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
