#!/usr/bin/env python3
"""An unmodified gRPC client (grpcio, no protoc) for grpc_app.py.

  grpc_client.py HOST:PORT   runs, with a deadline on every call:
    unary      a 1 MiB request with metadata x-client; checks the answer
    fail       a request the server aborts; reports code, details, trailers
    bidi       50 messages, each sent only after the previous answer arrived
Prints one JSON object with what it saw; exit 0 when every call returned.

  grpc_client.py HOST:PORT --tally N   makes N small unary calls one after
    another on one channel (one connection) and prints {"answers": [[code,
    x-served-by], ...]}, a failed call's code in place of OK.
"""

import argparse
import json
import os
import queue
import sys

import grpc


def md(meta) -> dict:
    out = {}
    for k, v in meta or ():
        out[k] = v.hex() if isinstance(v, bytes) else v
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--tally", type=int, default=0)
    args = ap.parse_args()
    if args.tally:
        return tally(args.target, args.tally, args.timeout)
    out: dict = {}
    opts = [("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20), ("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(args.target, options=opts) as ch:
        grpc.channel_ready_future(ch).result(timeout=args.timeout)
        unary = ch.unary_unary("/weft.Echo/Unary", request_serializer=None,
                               response_deserializer=None)
        payload = os.urandom(1 << 20)
        resp, call = unary.with_call(payload, timeout=args.timeout,
                                     metadata=(("x-client", "py-client"),))
        out["unary"] = {"ok": resp == b"echo:" + payload, "size": len(resp),
                        "code": call.code().name, "initial": md(call.initial_metadata()),
                        "trailing": md(call.trailing_metadata())}
        try:
            unary(b"fail:no thanks", timeout=args.timeout)
            out["fail"] = {"code": "OK"}
        except grpc.RpcError as e:
            out["fail"] = {"code": e.code().name, "details": e.details(),
                           "trailing": md(e.trailing_metadata())}

        bidi = ch.stream_stream("/weft.Echo/Bidi", request_serializer=None,
                                response_deserializer=None)
        q: queue.Queue = queue.Queue()

        def requests():
            while (item := q.get(timeout=args.timeout)) is not None:
                yield item

        call = bidi(requests(), timeout=args.timeout)
        answers = []
        for i in range(50):
            msg = f"m{i:02d}".encode() * (1 + i * 100)
            q.put(msg)
            got = next(call)
            answers.append(got == b"bidi:" + msg)
        q.put(None)
        rest = list(call)
        out["bidi"] = {"answers_ok": sum(answers), "extra": len(rest), "code": call.code().name,
                       "trailing": md(call.trailing_metadata())}
    print(json.dumps(out))
    return 0


def tally(target: str, count: int, timeout: float) -> int:
    answers = []
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as ch:
        grpc.channel_ready_future(ch).result(timeout=timeout)
        unary = ch.unary_unary("/weft.Echo/Unary", request_serializer=None, response_deserializer=None)
        for i in range(count):
            try:
                resp, call = unary.with_call(b"tally %d" % i, timeout=timeout)
                served = dict(call.initial_metadata() or ()).get("x-served-by", "")
                answers.append(["OK" if resp == b"echo:tally %d" % i else "WRONG_ANSWER", served])
            except grpc.RpcError as e:
                answers.append([e.code().name, ""])
    print(json.dumps({"answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
