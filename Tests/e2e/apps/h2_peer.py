#!/usr/bin/env python3
"""A hostile (or merely odd) HTTP/2 peer of a weft mesh port, built on the
`h2` package's frame encoder with its own checks off, so that it can send
what a well-behaved client never would. Every wait is bounded.

  h2_peer.py rapid-reset HOST PORT --dst IP:PORT --streams N
        On ONE connection: HEADERS of a valid mesh request for IP:PORT, then
        RST_STREAM(CANCEL) at once, N times, in batches. Prints what came
        back: responses, resets, the GOAWAY (and its error code) if any.
  h2_peer.py request HOST PORT --dst IP:PORT [--count N]
        N ordinary mesh requests one after another on one connection;
        prints each answer's status and weft-reason.
  h2_peer.py malformed HOST PORT --dst IP:PORT
        One mesh request per RFC 9113 §8.2 violation (an uppercase name, CR
        LF or NUL in a value, a connection-specific field, a content-length
        the DATA disagrees with, an unknown pseudo-header), each on its own
        stream, then one good request. Prints per case the status, or the
        RST_STREAM code.
  h2_peer.py lower-stream HOST PORT --dst IP:PORT
        A request on stream 5, then HEADERS on stream 3 (lower than one
        already used: RFC 9113 §5.1.1 says connection error PROTOCOL_ERROR).
        Prints the GOAWAY's error code, or what happened instead.
  h2_peer.py flood HOST PORT --dst IP:PORT --kind KIND [--count N]
        On one connection, N frames of one kind that cost the node work and
        carry nothing: empty-data (empty DATA on an open stream),
        continuation (one header block cut into 1-byte CONTINUATIONs),
        priority, window-update, ping and settings (both sent without ever
        reading the node's ACKs). Prints how many went out, the GOAWAY, and
        whether the node closed the connection.
  h2_peer.py hpack-bomb HOST PORT --dst IP:PORT
        A 4000-byte header value put in the HPACK table once, then a request
        naming it 100 times (about 400 KB decoded from 100 bytes), then a
        good request on the same connection. Prints both outcomes.
  h2_peer.py zero-window HOST PORT --dst IP:PORT --count N --path P --hold S
        Announces a stream window of 0, opens N streams for P (a large
        download) and never opens the window: the node must hold back, not
        buffer. Holds the connection S seconds, then prints what arrived.
  h2_peer.py many-streams HOST PORT --dst IP:PORT --streams N
        Acknowledges the node's SETTINGS, then opens N requests at once
        regardless of its MAX_CONCURRENT_STREAMS. Prints the limit the node
        announced, the resets by code and the GOAWAY.
Prints one JSON object; exit 0 when it ran to the end.
"""

import argparse
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, PriorityFrame,
                              SettingsFrame, WindowUpdateFrame)

PREFACE_TIMEOUT = 5


ORIG_PROTO = "HTTP/1.1"  # --orig-proto: HTTP/2 makes the node deliver over h2c


def mesh_request(dst: str, path: str = "/") -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "app"),
            ("weft-dst", dst), ("weft-orig-proto", ORIG_PROTO)]


class Peer:
    def __init__(self, host: str, port: int, timeout: float, receive_buffer: int | None = None):
        if receive_buffer is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            # Set before connecting, so the window the node sees stays small.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                           validate_inbound_headers=False, normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.responses: dict[int, dict] = {}
        self.resets: dict[int, int] = {}
        self.goaway = None
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until=lambda: False, timeout: float = 5.0) -> None:
        """Reads and handles frames until `until()` or the time is up or EOF."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                self.goaway = self.goaway or {"error": f"local protocol error: {e}"}
                self.closed = True
                break
            for event in events:
                self.handle(event)
            try:
                self.flush()
            except OSError:
                self.closed = True

    def handle(self, event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            headers = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                       for k, v in event.headers}
            self.responses.setdefault(event.stream_id, {})["status"] = int(headers.get(":status", "0"))
            self.responses[event.stream_id]["reason"] = headers.get("weft-reason", "")
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            entry = self.responses.setdefault(event.stream_id, {})
            entry["body"] = entry.get("body", 0) + len(event.data)
        elif isinstance(event, h2.events.StreamEnded):
            self.responses.setdefault(event.stream_id, {})["ended"] = True
        elif isinstance(event, h2.events.StreamReset):
            self.resets[event.stream_id] = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = {"error": int(event.error_code), "last_stream_id": event.last_stream_id}
            self.closed = True


def rapid_reset(args) -> dict:
    peer = Peer(args.host, args.port, args.timeout)
    peer.pump(timeout=0.5)  # the server's SETTINGS
    sent = 0
    stream_id = 1
    for _ in range(args.streams):
        if peer.closed:
            break
        try:
            peer.conn.send_headers(stream_id, mesh_request(args.dst), end_stream=True)
            peer.conn.reset_stream(stream_id, error_code=8)  # CANCEL
            peer.flush()
        except (OSError, h2.exceptions.ProtocolError):
            peer.closed = True
            break
        sent += 1
        stream_id += 2
        if sent % 50 == 0:
            peer.pump(timeout=0.01)
    peer.pump(timeout=1.0)
    return {"sent": sent, "responses": len(peer.responses), "goaway": peer.goaway, "closed": peer.closed}


def many_streams(args) -> dict:
    """Opens `--streams` requests at once, ignoring the node's
    MAX_CONCURRENT_STREAMS after acknowledging it."""
    peer = Peer(args.host, args.port, args.timeout)
    peer.pump(timeout=0.5)  # the node's SETTINGS, acknowledged by h2
    announced = peer.conn.remote_settings.max_concurrent_streams
    # The h2 package keeps to the peer's limit; make it believe there is none.
    peer.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 2**31 - 1
    peer.conn.remote_settings.acknowledge()
    sent = 0
    for i in range(args.streams):
        if peer.closed:
            break
        try:
            peer.conn.send_headers(1 + 2 * i, mesh_request(args.dst), end_stream=True)
            if i % 100 == 99:
                peer.flush()
        except (OSError, h2.exceptions.ProtocolError):
            peer.closed = True
            break
        sent += 1
    try:
        peer.flush()
    except OSError:
        peer.closed = True
    peer.pump(until=lambda: peer.goaway is not None, timeout=args.timeout)
    codes: dict[int, int] = {}
    for code in peer.resets.values():
        codes[code] = codes.get(code, 0) + 1
    return {"announced": announced, "sent": sent, "responses": len(peer.responses), "resets": codes,
            "goaway": peer.goaway, "closed": peer.closed}


def request(args) -> dict:
    peer = Peer(args.host, args.port, args.timeout)
    answers = []
    stream_id = 1
    for _ in range(args.count):
        peer.conn.send_headers(stream_id, mesh_request(args.dst), end_stream=True)
        peer.flush()
        peer.pump(until=lambda: peer.responses.get(stream_id, {}).get("ended") or stream_id in peer.resets,
                  timeout=args.timeout)
        got = peer.responses.get(stream_id, {})
        answers.append({"status": got.get("status", 0), "reason": got.get("reason", ""),
                        "reset": peer.resets.get(stream_id)})
        stream_id += 2
        if peer.closed:
            break
    return {"answers": answers, "goaway": peer.goaway}


MALFORMED = {
    "uppercase-name": [("X-Upper", "1")],
    "crlf-in-value": [("x-a", "b\r\nx-smuggled: 1")],
    "nul-in-value": [("x-a", "b\x00c")],
    "connection-header": [("connection", "keep-alive")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
    "unknown-pseudo": [(":smuggled", "1")],
}


def malformed(args) -> dict:
    peer = Peer(args.host, args.port, args.timeout)
    results = {}
    stream_id = 1
    for name, extra in MALFORMED.items():
        headers = mesh_request(args.dst, f"/{name}")
        if name == "unknown-pseudo":
            headers = extra + headers
        else:
            headers = headers + extra
        peer.conn.send_headers(stream_id, headers, end_stream=True)
        peer.flush()
        sid = stream_id
        peer.pump(until=lambda: sid in peer.resets or peer.responses.get(sid, {}).get("ended"), timeout=args.timeout)
        results[name] = {"status": peer.responses.get(sid, {}).get("status"), "reset": peer.resets.get(sid)}
        stream_id += 2
        if peer.closed:
            break
    # content-length that DATA contradicts
    if not peer.closed:
        peer.conn.send_headers(stream_id, mesh_request(args.dst, "/cl-mismatch") + [("content-length", "3")])
        peer.conn.send_data(stream_id, b"longer than three", end_stream=True)
        peer.flush()
        sid = stream_id
        peer.pump(until=lambda: sid in peer.resets or peer.responses.get(sid, {}).get("ended"), timeout=args.timeout)
        results["content-length-mismatch"] = {"status": peer.responses.get(sid, {}).get("status"),
                                               "reset": peer.resets.get(sid)}
        stream_id += 2
    good = None
    if not peer.closed:
        peer.conn.send_headers(stream_id, mesh_request(args.dst, "/good"), end_stream=True)
        peer.flush()
        sid = stream_id
        peer.pump(until=lambda: peer.responses.get(sid, {}).get("ended"), timeout=args.timeout)
        good = peer.responses.get(sid, {}).get("status")
    return {"cases": results, "good": good, "goaway": peer.goaway}


def unframed_body(args) -> dict:
    """Bodies whose heads declare none, as an older node or a hostile peer
    sends them: a GET whose stream goes on with DATA that spells a request,
    and an HTTP/1.0 POST of no length. Neither may reach the app unframed,
    where it would read the bytes as a request of their own."""
    peer = Peer(args.host, args.port, args.timeout)
    smuggled = b"GET /smuggled-%s HTTP/1.1\r\nHost: app\r\n\r\n"
    cases = {
        "get": (mesh_request(args.dst, "/get-with-body"), smuggled % b"get"),
        "http10": ([(":method", "POST"), (":scheme", "http"), (":path", "/post10"), (":authority", "app"),
                    ("weft-dst", args.dst), ("weft-orig-proto", "HTTP/1.0")], smuggled % b"http10"),
    }
    results = {}
    stream_id = 1
    for name, (headers, body) in cases.items():
        peer.conn.send_headers(stream_id, headers, end_stream=False)
        peer.conn.send_data(stream_id, body, end_stream=True)
        peer.flush()
        sid = stream_id
        peer.pump(until=lambda: sid in peer.resets or peer.responses.get(sid, {}).get("ended"), timeout=args.timeout)
        got = peer.responses.get(sid, {})
        results[name] = {"status": got.get("status"), "reason": got.get("reason", ""), "reset": peer.resets.get(sid)}
        stream_id += 2
        if peer.closed:
            break
    return {"cases": results, "goaway": peer.goaway}


def lower_stream(args) -> dict:
    peer = Peer(args.host, args.port, args.timeout)
    peer.conn.send_headers(5, mesh_request(args.dst), end_stream=True)
    peer.flush()
    peer.pump(until=lambda: peer.responses.get(5, {}).get("ended"), timeout=args.timeout)
    # HEADERS on stream 3, framed by hand: h2 itself refuses to send it.
    block = peer.conn.encoder.encode(mesh_request(args.dst))
    frame = HeadersFrame(3)
    frame.data = block
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    peer.sock.sendall(frame.serialize())
    peer.pump(until=lambda: peer.closed, timeout=args.timeout)
    return {"first": peer.responses.get(5, {}).get("status", 0), "goaway": peer.goaway,
            "stream3": peer.responses.get(3), "closed": peer.closed}


def flood(args) -> dict:
    silent = args.kind in ("ping", "settings")
    peer = Peer(args.host, args.port, args.timeout, receive_buffer=4096 if silent else None)
    if not silent:
        peer.pump(timeout=0.5)
    frames = []
    if args.kind == "empty-data":
        peer.conn.send_headers(1, mesh_request(args.dst, "/flood"), end_stream=False)
        peer.flush()
        frames = [DataFrame(1).serialize() for _ in range(args.count)]
    elif args.kind == "continuation":
        block = peer.conn.encoder.encode(mesh_request(args.dst, "/flood")
                                         + [(f"x-h{i}", "v" * 8) for i in range(args.count // 12 + 1)])
        first = HeadersFrame(1)
        first.data = block[:1]
        first.flags.add("END_STREAM")
        frames = [first.serialize()]
        for i in range(1, min(len(block), args.count)):
            piece = ContinuationFrame(1)
            piece.data = block[i:i + 1]
            frames.append(piece.serialize())
    elif args.kind == "priority":
        frames = [PriorityFrame(3, depends_on=0, stream_weight=16).serialize() for _ in range(args.count)]
    elif args.kind == "window-update":
        frames = [WindowUpdateFrame(0, window_increment=1).serialize() for _ in range(args.count)]
    elif args.kind == "ping":
        frames = [PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(args.count)]
    elif args.kind == "settings":
        frames = [SettingsFrame(0, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100}).serialize()
                  for _ in range(args.count)]
    sent = 0
    deadline = time.monotonic() + args.timeout
    # Batches of 200 frames: a flood the node stops within one batch is read
    # whole, so the node closes with nothing unread and its GOAWAY is not
    # lost to a reset.
    for start in range(0, len(frames), 200):
        if time.monotonic() > deadline:
            break
        try:
            peer.sock.sendall(b"".join(frames[start:start + 200]))
        except OSError:
            peer.closed = True
            break
        sent += len(frames[start:start + 200])
    if silent:
        # Now read: what is left of the ACKs, then the GOAWAY or the close.
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    peer.pump(until=lambda: peer.closed, timeout=args.timeout)
    return {"sent": sent, "goaway": peer.goaway, "closed": peer.closed}


def hpack_string(b: bytes) -> bytes:
    """An HPACK string literal, not Huffman-coded (RFC 7541 §5.2)."""
    if len(b) < 127:
        return bytes([len(b)]) + b
    rest, out = len(b) - 127, bytearray([127])
    while rest >= 128:
        out.append(rest % 128 + 128)
        rest //= 128
    out.append(rest)
    return bytes(out) + b


def hpack_literal(name: bytes, value: bytes, indexed: bool) -> bytes:
    """A literal field with a new name, added to the table or not (RFC 7541 §6.2)."""
    return (b"\x40" if indexed else b"\x00") + hpack_string(name) + hpack_string(value)


def zero_window(args) -> dict:
    peer = Peer(args.host, args.port, args.timeout)
    peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    peer.flush()
    peer.pump(timeout=0.5)
    for i in range(args.count):
        peer.conn.send_headers(1 + 2 * i, mesh_request(args.dst, args.path), end_stream=True)
    peer.flush()
    # Read (frames, not window): headers and pings are answered, DATA cannot come.
    peer.pump(until=lambda: False, timeout=args.hold)
    statuses = sorted(r.get("status", 0) for r in peer.responses.values())
    body = sum(r.get("body", 0) for r in peer.responses.values())
    return {"statuses": statuses, "body_bytes": body, "resets": peer.resets, "goaway": peer.goaway,
            "closed": peer.closed}


def opened(peer: Peer, stream_id: int, dst: str) -> None:
    """Lets the h2 connection open `stream_id` (so it takes the answer)
    without sending its HEADERS: a hand-made frame goes instead."""
    peer.conn.send_headers(stream_id, mesh_request(dst), end_stream=True)
    peer.conn.data_to_send()


def hpack_bomb(args) -> dict:
    peer = Peer(args.host, args.port, args.timeout)
    peer.pump(timeout=0.5)
    # Hand-made blocks only: the h2 encoder's table would drift from the node's.
    request = b"".join(hpack_literal(n.encode(), v.encode(), indexed=False)
                       for n, v in mesh_request(args.dst, "/bomb"))
    # "x-bomb: b×4000" enters the node's dynamic table as entry 62; then the
    # indexed field 62 (0x80 | 62 = 0xbe) a hundred times.
    block = request + hpack_literal(b"x-bomb", b"b" * 4000, indexed=True) + b"\xbe" * 100
    opened(peer, 1, args.dst)
    frame = HeadersFrame(1)
    frame.data = block
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    peer.sock.sendall(frame.serialize())
    peer.pump(until=lambda: 1 in peer.resets or peer.responses.get(1, {}).get("ended"), timeout=args.timeout)
    bomb = {"status": peer.responses.get(1, {}).get("status"), "reset": peer.resets.get(1)}
    after = None
    if not peer.closed:
        opened(peer, 3, args.dst)
        frame = HeadersFrame(3)
        frame.data = b"".join(hpack_literal(n.encode(), v.encode(), indexed=False)
                              for n, v in mesh_request(args.dst, "/after-bomb"))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        peer.sock.sendall(frame.serialize())
        peer.pump(until=lambda: 3 in peer.resets or peer.responses.get(3, {}).get("ended"), timeout=args.timeout)
        after = {"status": peer.responses.get(3, {}).get("status"), "reset": peer.resets.get(3)}
    return {"bomb": bomb, "after": after, "goaway": peer.goaway, "closed": peer.closed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["rapid-reset", "request", "lower-stream", "malformed", "flood", "hpack-bomb",
                                     "zero-window", "many-streams", "unframed-body"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--kind", choices=["empty-data", "continuation", "priority", "window-update", "ping", "settings"],
                    default="empty-data")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--path", default="/")
    ap.add_argument("--hold", type=float, default=5.0, help="zero-window: seconds to hold the streams")
    ap.add_argument("--orig-proto", default="HTTP/1.1", choices=["HTTP/1.1", "HTTP/2"],
                    help="what the app behind the node speaks (weft-orig-proto)")
    args = ap.parse_args()
    global ORIG_PROTO
    ORIG_PROTO = args.orig_proto
    run = {"rapid-reset": rapid_reset, "request": request, "lower-stream": lower_stream,
           "malformed": malformed, "flood": flood, "hpack-bomb": hpack_bomb, "zero-window": zero_window,
           "many-streams": many_streams, "unframed-body": unframed_body}[args.mode]
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
