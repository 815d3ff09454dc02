#!/usr/bin/env python3
"""An unmodified WebSocket client (the `websockets` package) for ws_app.py.

  ws_client.py ws://HOST:PORT   connects to /hello, reads the greeting, then
  echoes 20 text messages, a 1 MiB binary message, and closes cleanly.
Prints JSON of what it saw; every wait is bounded (--timeout).
"""

import argparse
import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect


async def run(url: str, timeout: float) -> dict:
    out: dict = {}
    async with asyncio.timeout(timeout):
        async with connect(url + "/hello", max_size=16 << 20, proxy=None,
                           open_timeout=timeout) as ws:
            out["greeting"] = await ws.recv()
            ok = 0
            for i in range(20):
                msg = f"text message {i} " + "é" * i
                await ws.send(msg)
                ok += (await ws.recv()) == msg
            out["text_ok"] = ok
            blob = os.urandom(1 << 20)
            await ws.send(blob)
            back = await ws.recv()
            out["binary_ok"] = back == blob
            out["binary_size"] = len(back)
        out["close_code"] = ws.close_code
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.timeout))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
