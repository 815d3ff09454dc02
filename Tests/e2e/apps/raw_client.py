#!/usr/bin/env python3
"""Sends raw HTTP/1.1 bytes, each case on its own connection, and reports
what came back: for hostile-input tests, where curl and friends would refuse
to send the input or tidy it up first.

  raw_client.py HOST PORT CASES.json [--wait SECONDS] [--until-complete]

CASES.json: {"name": "bytes as a latin-1 string", ...}. For each case, the
bytes are sent at once, then everything is read until the peer closes,
--wait seconds pass, or (--until-complete) a response with a Content-Length
is whole. Prints one JSON object:
{"name": {"status": 400, "body": "...", "closed": true, "raw": "..."}}.
`closed` means the peer closed the connection by itself.
"""

import argparse
import json
import re
import socket
import sys
import time


def complete(received: bytes) -> bool:
    """A whole response with a Content-Length is in `received`."""
    head, sep, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return bool(sep and length and len(body) >= int(length.group(1)))


def run(host: str, port: int, payload: bytes, wait: float, until_complete: bool) -> dict:
    sock = socket.create_connection((host, port), timeout=wait)
    received = b""
    closed = False
    try:
        sock.sendall(payload)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
            if until_complete and complete(received):
                break
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    finally:
        sock.close()
    match = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    head, _, body = received.partition(b"\r\n\r\n")
    return {"status": int(match.group(1)) if match else None, "closed": closed,
            "reason": (re.search(rb"(?im)^weft-reason: *(\S+)", head) or [None, b""])[1].decode(),
            "body": body.decode("latin-1"), "raw": received[:600].decode("latin-1")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("cases")
    ap.add_argument("--wait", type=float, default=3.0)
    ap.add_argument("--until-complete", action="store_true",
                    help="stop reading at the end of a response with a Content-Length")
    args = ap.parse_args()
    with open(args.cases) as f:
        cases = json.load(f)
    results = {name: run(args.host, args.port, raw.encode("latin-1"), args.wait, args.until_complete) for name, raw in cases.items()}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
