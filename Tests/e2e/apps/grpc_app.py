#!/usr/bin/env python3
"""An unmodified gRPC server (grpcio from PyPI, no protoc: bytes in, bytes out).

  /weft.Echo/Unary  returns b"echo:" + request, with initial metadata
                    x-initial: yes and trailing metadata x-trailer: unary-ok,
                    x-bin-bin: 00 01 ff, and x-seen-client: <the request's
                    x-client metadata>. With --name, the initial metadata
                    also says x-served-by: <name>; with --delay S, every
                    answer waits S seconds first. A request starting with b"fail:" is
                    aborted with FAILED_PRECONDITION, details
                    "refused: <rest>", trailing metadata x-trailer: failing.
  /weft.Echo/Bidi   answers each message at once with b"bidi:" + message;
                    at the end, trailing metadata x-trailer: bidi-done and
                    x-messages: <count>.
"""

import argparse
import sys
import time
from concurrent import futures

import grpc


NAME = ""
DELAY = 0.0


def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    if DELAY:
        time.sleep(DELAY)
    context.send_initial_metadata((("x-initial", "yes"),) + ((("x-served-by", NAME),) if NAME else ()))
    if request.startswith(b"fail:"):
        context.set_trailing_metadata((("x-trailer", "failing"),))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      "refused: " + request[5:].decode(errors="replace"))
    seen = dict(context.invocation_metadata()).get("x-client", "")
    context.set_trailing_metadata((("x-trailer", "unary-ok"), ("x-bin-bin", b"\x00\x01\xff"),
                                   ("x-seen-client", seen)))
    return b"echo:" + request


def bidi(requests, context: grpc.ServicerContext):
    n = 0
    for msg in requests:
        n += 1
        yield b"bidi:" + msg
    context.set_trailing_metadata((("x-trailer", "bidi-done"), ("x-messages", str(n))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument("--name", default="")
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    global NAME, DELAY
    NAME, DELAY = args.name, args.delay
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 16 << 20),
                                  ("grpc.max_send_message_length", 16 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("weft.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }),))
    server.add_insecure_port(f"[::]:{args.port}")
    server.start()
    print(f"grpc_app listening on [::]:{args.port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
