#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz harness into Fuzz/Corpus/<target>/.

Run from anywhere with the project's venv (it needs `h2`):
    .venv/bin/python Fuzz/seeds.py
The seeds are committed; scripts/fuzz adds what the fuzzers find to a
working corpus beside them (.fuzz/), and `scripts/fuzz --merge` folds the
minimised finds back in.
"""
import hashlib
import pathlib
import re

import h2.config
import h2.connection

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "Fuzz" / "Corpus"


def write(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


HTTP1_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n",
    b"GET http://backend:9090/a?b=c HTTP/1.1\r\nHost: backend:9090\r\nUser-Agent: curl/8\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nTrailer: v\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: b\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: b\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\nTE: trailers\r\n\r\n",
    # weft's own request parser: empty lines between requests, a closing
    # request with more after it, an Upgrade with a body and tunnel bytes.
    b"POST /a HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\n\r\nx\r\n\r\nDELETE /b HTTP/1.1\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi\x81\x00",
]
HTTP1_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: nginx\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=b\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.0 302 Found\r\nLocation: /x\r\nConnection: close\r\n\r\n",
    # weft's own parser: chunk extensions and trailers, 103, a body until
    # the close, padding around a value.
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;x=1\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-Pad:  a \t\r\n\r\nnot",
    # Found by FuzzTranslation: llhttp reads `chunked,` as not chunked.
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n"
    b"0;x=1\r\nhellogrpc-status: 0\r\n\r\n",
]


def header_list(fields):
    out = bytearray()
    for name, value in fields:
        for part in (name, value):
            out.append(len(part))
            out += part
    return bytes(out)


MESH_REQUESTS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"backend:9090"), (b":path", b"/"),
     (b"user-agent", b"curl/8"), (b"weft-orig-proto", b"HTTP/1.1"), (b"weft-dst", b"198.18.0.2:8080")],
    [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"b"), (b":path", b"/a?b"),
     (b"content-type", b"text/plain"), (b"weft-orig-proto", b"HTTP/1.0; absolute-form"),
     (b"weft-dst", b"[2001:2::2]:80")],
    [(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*"), (b"weft-orig-proto", b"HTTP/1.1; no-host"),
     (b"weft-dst", b"198.18.0.2:80"), (b"te", b"trailers"), (b"cookie", b"a=b"), (b"cookie", b"c=d")],
]


def h2_frames(client_side):
    """The frames one side of a real h2 exchange sends (minus the client preface)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "app"), (":path", "/"),
                            ("content-length", "5"), ("grpc-timeout", "1S")])
    client.send_data(1, b"hello", end_stream=True)
    client.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", "app"), (":path", "/x")],
                        end_stream=True)
    client.reset_stream(3)
    client.ping(b"12345678")
    from_client = client.data_to_send()
    server.receive_data(from_client)
    server.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    server.send_data(1, b"world")
    server.send_headers(1, [("grpc-status", "0")], end_stream=True)
    server.ping(b"abcdefgh")
    from_server = server.data_to_send()
    if client_side:
        return from_client[len(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):]
    return from_server


def main():
    for request in HTTP1_REQUESTS:
        write("FuzzProtocolDetection", request)
        write("FuzzTranslation", b"\x00" + request)
    write("FuzzProtocolDetection", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    write("FuzzProtocolDetection", bytes([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]))
    write("FuzzProtocolDetection", b"*1\r\n$4\r\nPING\r\n")
    for response in HTTP1_RESPONSES:
        write("FuzzTranslation", b"\x02" + response)
    for fields in MESH_REQUESTS:
        write("FuzzTranslation", b"\x01" + header_list(fields))
    # Control byte: bit 0 picks the role (0 server, 1 client), the rest the read size.
    write("FuzzHTTP2Frames", b"\x00" + h2_frames(client_side=True))
    write("FuzzHTTP2Frames", b"\x40" + h2_frames(client_side=True))
    write("FuzzHTTP2Frames", b"\x01" + h2_frames(client_side=False))
    write("FuzzHTTP2Frames", b"\x21" + h2_frames(client_side=False))
    write("FuzzConfig", (ROOT / "docs" / "examples" / "weft.yaml").read_bytes())
    fence = re.compile(r"```yaml\n(.*?)```", re.S)
    for doc in ("configuration.md", "mesh.md", "admin.md", "observability.md"):
        path = ROOT / "docs" / doc
        if path.exists():
            for block in fence.findall(path.read_text()):
                write("FuzzConfig", block.encode())
    write("FuzzConfig", b"- address: 198.18.0.2\n  port: 8080\n  weight: 2\n  zone: a\n")


if __name__ == "__main__":
    main()
