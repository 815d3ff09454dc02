#!/usr/bin/env python3
"""Small unmodified TCP clients used by the end-to-end tests.

  tcp_client.py banner HOST PORT          connect, read the first line without
                                          writing anything, print it, then send
                                          "ping\n" and print the echo.
  tcp_client.py halfclose HOST PORT --size N
                                          read the banner, send N bytes, shut
                                          down the write side, read the echo to
                                          EOF; print `echoed N` if all came back.
  tcp_client.py probe HOST PORT           connect, write a request line, report
                                          how the server ended it: `closed`,
                                          `reset`, `refused` or `data:<bytes>`.
Exit 0 when it got an answer, 1 otherwise. Every wait is bounded (--timeout).
"""

import argparse
import socket
import sys


def banner(args) -> int:
    with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            line += chunk
        print(line.decode(errors="replace").rstrip("\r\n"))
        if not line:
            return 1
        s.sendall(b"ping\n")
        echo = b""
        while not echo.endswith(b"\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            echo += chunk
        print(echo.decode(errors="replace").rstrip("\r\n"))
        return 0 if echo == b"ping\n" else 1


def halfclose(args) -> int:
    payload = bytes((i * 7 + 3) % 251 for i in range(args.size))
    with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1024)
            if not chunk:
                print("no banner")
                return 1
            buf += chunk
        banner, _, rest = buf.partition(b"\n")
        print(banner.decode(errors="replace").rstrip("\r"))
        # Write everything while reading the echo (the relay must keep both
        # directions moving), then half-close and read to EOF.
        s.setblocking(True)
        import threading
        received = bytearray(rest)

        def reader():
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        t.join(args.timeout)
        if t.is_alive():
            print(f"no EOF after {len(received)} of {len(payload)} bytes")
            return 1
        if bytes(received) != payload:
            print(f"echo differs: got {len(received)} bytes, sent {len(payload)}")
            return 1
        print(f"echoed {len(payload)}")
        return 0


def probe(args) -> int:
    try:
        s = socket.create_connection((args.host, args.port), timeout=args.timeout)
    except ConnectionRefusedError:
        print("refused")
        return 0
    except ConnectionResetError:
        # Accepted and reset before connect() even returned (fast on loopback).
        print("reset")
        return 0
    except socket.timeout:
        print("timeout")
        return 1
    with s:
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(65536)
        except ConnectionResetError:
            print("reset")
            return 0
        except BrokenPipeError:
            print("reset")
            return 0
        except socket.timeout:
            print("timeout")
            return 1
        print("closed" if not data else "data:" + data[:200].decode(errors="replace"))
        return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["banner", "halfclose", "probe"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--size", type=int, default=1 << 20)
    args = ap.parse_args()
    return {"banner": banner, "halfclose": halfclose, "probe": probe}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
