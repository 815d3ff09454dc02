#!/usr/bin/env python3
"""An unmodified WebSocket echo server (the `websockets` package from PyPI).

Every message (text or binary) is sent back unchanged; the path `/hello`
first greets with `hello <path>` (server speaks first inside the upgraded
connection). Listens on [::] and 0.0.0.0.
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import serve


async def handler(ws) -> None:
    path = ws.request.path
    if path == "/hello":
        await ws.send(f"hello {path}")
    async for msg in ws:
        await ws.send(msg)


async def run(port: int) -> None:
    async with serve(handler, host=["::", "0.0.0.0"], port=port, max_size=16 << 20,
                     reuse_address=True) as server:
        print(f"ws_app listening on port {port}", flush=True)
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    asyncio.run(run(args.port))


if __name__ == "__main__":
    sys.exit(main())
