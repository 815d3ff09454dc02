#!/usr/bin/env python3
"""A Kubernetes API server for discovery.k8s.io/v1 EndpointSlices, written
for the tests (no real API server can run here). It speaks the protocol the
way kube-apiserver does, for the parts `discovery: kubernetes` uses:

  GET    /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices
         ?labelSelector=kubernetes.io/service-name=SVC [&limit=N&continue=T]
         an EndpointSliceList with metadata.resourceVersion (and
         metadata.continue while pages remain; a continue token older than
         the compaction is 410 Expired, as etcd's compaction makes it)
  GET    ...same...&watch=1&resourceVersion=RV[&allowWatchBookmarks=true]
         [&timeoutSeconds=S]
         HTTP/1.1 200, Transfer-Encoding: chunked, one JSON event per line:
         every change after RV (ADDED, MODIFIED, DELETED), then new ones as
         they happen, BOOKMARK events every --bookmark-every seconds when
         asked for, and the end of the stream after timeoutSeconds. An RV
         older than the compaction gets an ERROR event with a 410 Status
         ("too old resource version"), or with --gone-as-status an HTTP 410.
  POST   .../endpointslices          create (409 if it exists)
  PUT    .../endpointslices/NAME     replace (404 if it does not exist)
  DELETE .../endpointslices/NAME     delete (404 if it does not exist)

Every request needs `Authorization: Bearer <token>`, the token being the
content of --token-file, read again for each request (rotation): else 401
with a Status. Test controls, under the same token:

  POST /_test/compact   forget the history up to now: older versions are gone
  POST /_test/drop      cut every open watch mid-stream (no final chunk)
  POST /_test/hold      the same, and answer every list and watch 503 (an
                        API server that is unavailable) until
  POST /_test/release
  GET  /_test/requests  JSON list of [method, path?query] received so far

TLS with --cert/--key (HTTP/1.1 over TLS, as the real one offers); the
resource versions start at --first-version, so a restarted server with a
higher one makes every old version "too old". Logs one line per request.
"""

import argparse
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from labserver import LabHTTPServer

PREFIX = "/apis/discovery.k8s.io/v1/namespaces/"
SERVICE_LABEL = "kubernetes.io/service-name"


class Store:
    """Slices by (namespace, name), a resource version counter, and the
    history of changes since the last compaction."""

    def __init__(self, first_version: int):
        self.cond = threading.Condition()
        self.version = first_version
        self.compacted = first_version
        self.slices: dict[tuple[str, str], dict] = {}
        self.history: list[tuple[int, str, dict]] = []  # (version, type, object)
        self.drops = 0  # bumped to cut open watches
        self.held = False  # lists and watches answered 503

    def change(self, kind: str, namespace: str, obj: dict) -> dict:
        with self.cond:
            self.version += 1
            obj = json.loads(json.dumps(obj))
            meta = obj.setdefault("metadata", {})
            meta["namespace"] = namespace
            meta["resourceVersion"] = str(self.version)
            key = (namespace, meta["name"])
            if kind == "DELETED":
                self.slices.pop(key, None)
            else:
                self.slices[key] = obj
            self.history.append((self.version, kind, obj))
            self.cond.notify_all()
            return obj

    def compact(self) -> None:
        with self.cond:
            self.compacted = self.version
            self.history.clear()

    def drop_watches(self) -> None:
        with self.cond:
            self.drops += 1
            self.cond.notify_all()


def matches(obj: dict, namespace: str, service: str | None) -> bool:
    meta = obj.get("metadata", {})
    return meta.get("namespace") == namespace and (
        service is None or meta.get("labels", {}).get(SERVICE_LABEL) == service)


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-for-tests"

    # -- plumbing ------------------------------------------------------------

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()

    def send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self) -> bool:
        with open(self.server.token_file) as f:
            token = f.read().strip()
        if self.headers.get("Authorization") == f"Bearer {token}":
            return True
        self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        return False

    def body(self) -> dict:
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"{}")

    def route(self):
        """(namespace, name or None, query) for an EndpointSlice path, else None."""
        url = urllib.parse.urlsplit(self.path)
        if not url.path.startswith(PREFIX):
            return None
        parts = url.path[len(PREFIX):].split("/")
        if len(parts) < 2 or parts[1] != "endpointslices" or len(parts) > 3:
            return None
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        return parts[0], (parts[2] if len(parts) == 3 else None), query

    def record(self) -> None:
        with self.server.store.cond:
            self.server.requests.append([self.command, self.path])

    # -- verbs ---------------------------------------------------------------

    def do_GET(self):
        self.record()
        if not self.authorized():
            return
        if self.path == "/_test/requests":
            with self.server.store.cond:
                return self.send_json(200, {"requests": list(self.server.requests)})
        route = self.route()
        if route is None or route[1] is not None:
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        namespace, _, query = route
        with self.server.store.cond:
            held = self.server.store.held
        if held:
            return self.send_json(503, status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
        selector = query.get("labelSelector", "")
        service = selector[len(SERVICE_LABEL) + 1:] if selector.startswith(SERVICE_LABEL + "=") else None
        if query.get("watch") in ("1", "true"):
            return self.watch(namespace, service, query)
        return self.list(namespace, service, query)

    def list(self, namespace: str, service: str | None, query: dict) -> None:
        store = self.server.store
        limit = int(query.get("limit", "0") or 0)
        if self.server.max_page:
            limit = min(limit or self.server.max_page, self.server.max_page)
        with store.cond:
            if "continue" in query:
                version, offset = (int(x) for x in query["continue"].split("/"))
                if version < store.compacted:
                    return self.send_json(410, status(410, "Expired", "The provided continue parameter is too old"))
                # A continued list is served from the first page's snapshot;
                # this store cannot rewind, which the tests never need.
            else:
                version, offset = store.version, 0
            items = sorted((obj for obj in store.slices.values() if matches(obj, namespace, service)),
                           key=lambda o: o["metadata"]["name"])
            page = items[offset:offset + limit] if limit else items[offset:]
            meta = {"resourceVersion": str(version)}
            if limit and offset + limit < len(items):
                meta["continue"] = f"{version}/{offset + limit}"
        self.send_json(200, {"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                             "metadata": meta, "items": page})

    def watch(self, namespace: str, service: str | None, query: dict) -> None:
        store = self.server.store
        since = int(query.get("resourceVersion", "0") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = min(float(query.get("timeoutSeconds", "1800")), self.server.max_watch)
        with store.cond:
            too_old = since < store.compacted
            drops = store.drops
        if too_old and self.server.gone_as_status:
            return self.send_json(410, status(410, "Expired", f"too old resource version: {since} ({store.compacted})"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj: dict) -> None:
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        if too_old:
            chunk({"type": "ERROR", "object": status(410, "Expired",
                                                      f"too old resource version: {since} ({store.compacted})")})
            self.wfile.write(b"0\r\n\r\n")
            return
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.server.bookmark_every
        sent = since
        try:
            while True:
                with store.cond:
                    if not any(v > sent for v, _, _ in store.history) and store.drops == drops:
                        wait = min(deadline, next_bookmark) - time.monotonic()
                        if wait > 0:
                            store.cond.wait(wait)
                    pending = [(v, t, o) for v, t, o in store.history if v > sent]
                    dropped = store.drops != drops
                    current = store.version
                if dropped:
                    # Cut mid-stream: no final chunk, the socket just goes.
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                for version, kind, obj in pending:
                    sent = version
                    if matches(obj, namespace, service):
                        chunk({"type": kind, "object": obj})
                now = time.monotonic()
                if now >= deadline:
                    break
                if now >= next_bookmark:
                    next_bookmark = now + self.server.bookmark_every
                    if bookmarks:
                        sent = max(sent, current)
                        chunk({"type": "BOOKMARK", "object": {
                            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                            "metadata": {"resourceVersion": str(sent)}}})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def do_POST(self):
        self.record()
        if not self.authorized():
            return
        store = self.server.store
        if self.path == "/_test/compact":
            store.compact()
            return self.send_json(200, {"compacted": store.compacted})
        if self.path in ("/_test/drop", "/_test/hold", "/_test/release"):
            with store.cond:
                store.held = self.path == "/_test/hold"
            if self.path != "/_test/release":
                store.drop_watches()
            return self.send_json(200, {"held": store.held})
        route = self.route()
        if route is None or route[1] is not None:
            return self.send_json(404, status(404, "NotFound", "not found"))
        obj = self.body()
        with store.cond:
            exists = (route[0], obj["metadata"]["name"]) in store.slices
        if exists:
            return self.send_json(409, status(409, "AlreadyExists", "already exists"))
        self.send_json(201, store.change("ADDED", route[0], obj))

    def existing(self) -> tuple[str, dict] | None:
        """(namespace, slice) that a PUT or DELETE path names; None after
        answering 404 (no such path, or no such slice)."""
        route = self.route()
        obj = None
        if route is not None and route[1] is not None:
            with self.server.store.cond:
                obj = self.server.store.slices.get((route[0], route[1]))
        if obj is None:
            self.send_json(404, status(404, "NotFound", "not found"))
            return None
        return route[0], obj

    def do_PUT(self):
        self.record()
        if not self.authorized():
            return
        obj = self.body()  # read even when refused: the connection stays in step
        if (found := self.existing()) is None:
            return
        namespace, old = found
        obj.setdefault("metadata", {})["name"] = old["metadata"]["name"]
        self.send_json(200, self.server.store.change("MODIFIED", namespace, obj))

    def do_DELETE(self):
        self.record()
        if not self.authorized() or (found := self.existing()) is None:
            return
        namespace, obj = found
        self.send_json(200, self.server.store.change("DELETED", namespace, obj))


class Server(LabHTTPServer):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="address to listen on")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--state", help="a JSON file of {namespace: [slices]} to start with")
    ap.add_argument("--first-version", type=int, default=1000)
    ap.add_argument("--max-page", type=int, default=0, help="serve at most this many items a page")
    ap.add_argument("--max-watch", type=float, default=1800.0, help="cap on timeoutSeconds")
    ap.add_argument("--bookmark-every", type=float, default=60.0)
    ap.add_argument("--gone-as-status", action="store_true", help="answer a too-old watch with HTTP 410")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    Server.address_family = family
    server = Server((args.listen, args.port), Handler)
    server.store = Store(args.first_version)
    server.requests = []
    server.token_file = args.token_file
    server.max_page = args.max_page
    server.max_watch = args.max_watch
    server.bookmark_every = args.bookmark_every
    server.gone_as_status = args.gone_as_status
    if args.state:
        with open(args.state) as f:
            for namespace, items in json.load(f).items():
                for obj in items:
                    server.store.change("ADDED", namespace, obj)
        server.store.compact()  # a restored server has no history to replay
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {args.listen}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
