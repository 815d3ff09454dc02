"""The client/backend topology the end-to-end tests (and `scripts/lab up`)
build. Standard library only, so scripts can import it without pytest.

    client pod 198.18.0.2            backend pod 198.18.0.3
    /etc/hosts: backend -> VIP       apps on :9090 (http), :8080 (http),
    weft init + weft proxy           :6379 (redis, loopback only), :3306 (banner)
       (clusters below)              weft init + weft proxy (config {})
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

import weftlab  # noqa: E402

APPS = Path(__file__).resolve().parent / "apps"
PY = sys.executable

VIP = "198.19.0.10"
# An IPv6 "VIP": inside the lab's 2001:2::/48 but outside the pods' /64, so
# nobody owns it and it is routed to the gateway like the IPv4 VIPs.
VIP6 = "2001:2:0:1::10"

HTTP_PORT = 9090
HTTP_PORT_UNLISTED = 8080  # the backend app also listens here; no cluster names it
REDIS_PORT = 6379
BANNER_PORT = 3306
DOWN_PORT = 9999  # a cluster whose endpoint has nothing listening


def client_config(backend: weftlab.Pod, policy: str = "allow_any") -> dict:
    """The client node's config: clusters for the backend's services, by VIP."""
    def cluster(name, vip, port, hostnames=(), endpoint=None, protocol=None):
        c = {
            "name": name,
            "addresses": [vip],
            "hostnames": list(hostnames),
            "mesh": False,
            "lb": "round_robin",
            "endpoints": [{"address": endpoint or f"{backend.ip4}:{port}"}],
        }
        if protocol:
            c["protocol"] = protocol
        return c

    return {
        "node": {"id": "client"},
        "outbound_policy": policy,
        "detect_timeout": "1s",
        "clusters": [
            cluster("backend", f"{VIP}:{HTTP_PORT}", HTTP_PORT, hostnames=["backend"]),
            cluster("redis", f"{VIP}:{REDIS_PORT}", REDIS_PORT, protocol="tcp"),
            cluster("banner", f"{VIP}:{BANNER_PORT}", BANNER_PORT),
            cluster("down", f"{VIP}:{DOWN_PORT}", DOWN_PORT),
            cluster("backend6", f"[{VIP6}]:{HTTP_PORT}", HTTP_PORT, hostnames=["backend6"],
                    endpoint=f"[{backend.ip6}]:{HTTP_PORT}"),
        ],
    }


BACKEND_CONFIG = {"node": {"id": "backend"}}


@dataclass
class Mesh:
    lab: weftlab.Lab
    client: weftlab.Pod
    backend: weftlab.Pod


def start_backend_apps(backend: weftlab.Pod, workdir: Path) -> None:
    http = backend.spawn([PY, APPS / "http_app.py", "--port", HTTP_PORT, "--name", "backend"],
                         name="http_app")
    http2 = backend.spawn([PY, APPS / "http_app.py", "--port", HTTP_PORT_UNLISTED,
                           "--name", "backend-8080"], name="http_app_8080")
    banner = backend.spawn([PY, APPS / "banner_app.py", "--port", BANNER_PORT], name="banner_app")
    redis_dir = workdir / f"redis-{backend.name}"
    redis_dir.mkdir(exist_ok=True)
    redis = backend.spawn(["redis-server", "--port", REDIS_PORT, "--bind", "127.0.0.1", "::1",
                           "--save", "", "--appendonly", "no", "--dir", redis_dir,
                           "--proto-max-bulk-len", "16mb"], name="redis")
    for proc, port in ((http, HTTP_PORT), (http2, HTTP_PORT_UNLISTED), (banner, BANNER_PORT),
                       (redis, REDIS_PORT)):
        backend.wait_port(port, proc=proc)


def build_mesh(lab: weftlab.Lab, policy: str = "allow_any", init_flags: tuple[str, ...] = ()) -> Mesh:
    client = lab.add_pod("client", hosts={"backend": VIP, "backend6": VIP6})
    backend = lab.add_pod("backend")
    start_backend_apps(backend, lab.workdir)
    for pod in (client, backend):
        pod.init(*init_flags)
    backend.start_weft(BACKEND_CONFIG)
    client.start_weft(client_config(backend, policy))
    return Mesh(lab, client, backend)


# --------------------------------------------------------------------------
# The HTTP/2 mesh (issue 3): clusters marked `mesh: true`, so the client node
# carries their traffic as HTTP/2 streams to the backend node's mesh port
# (15008), which delivers it to the app over loopback. One VIP per app, each
# with a hostname in the client's hosts file. The backend node's config stays
# inbound-only (BACKEND_CONFIG), which includes the mesh listener.

MESH_VIP, MESH_HTTP_PORT = "198.19.0.20", 9180   # mesh_app.py (HTTP/1.1)
GRPC_VIP, GRPC_PORT = "198.19.0.21", 50051       # grpc_app.py (gRPC, h2c)
WS_VIP, WS_PORT = "198.19.0.22", 8765            # ws_app.py (WebSocket)
H2_VIP, H2_PORT = "198.19.0.23", 8082            # nghttpd --no-tls (prior-knowledge h2c)
MESH_DOWN_VIP, MESH_DOWN_PORT = "198.19.0.24", 9181  # meshed endpoint, nothing listening

MESH_HOSTS = {
    "backend-mesh": MESH_VIP,
    "backend-grpc": GRPC_VIP,
    "backend-ws": WS_VIP,
    "backend-h2": H2_VIP,
    "backend-down": MESH_DOWN_VIP,
}


def mesh_clusters(backend: weftlab.Pod) -> list[dict]:
    """The `mesh: true` clusters for the backend's apps (protocol detected)."""
    def cluster(name, vip, port, hostname):
        return {
            "name": name,
            "addresses": [f"{vip}:{port}"],
            "hostnames": [hostname],
            "mesh": True,
            "lb": "round_robin",
            "endpoints": [{"address": f"{backend.ip4}:{port}"}],
        }

    return [
        cluster("backend-mesh", MESH_VIP, MESH_HTTP_PORT, "backend-mesh"),
        cluster("backend-grpc", GRPC_VIP, GRPC_PORT, "backend-grpc"),
        cluster("backend-ws", WS_VIP, WS_PORT, "backend-ws"),
        cluster("backend-h2", H2_VIP, H2_PORT, "backend-h2"),
        cluster("backend-down", MESH_DOWN_VIP, MESH_DOWN_PORT, "backend-down"),
    ]


def mesh_client_config(backend: weftlab.Pod) -> dict:
    return {
        "node": {"id": "client"},
        "outbound_policy": "allow_any",
        "detect_timeout": "1s",
        "clusters": mesh_clusters(backend),
    }


def start_mesh_apps(backend: weftlab.Pod, workdir: Path) -> None:
    """mesh_app, grpc_app, ws_app and nghttpd (h2c) in the backend pod."""
    htdocs = workdir / "htdocs"
    htdocs.mkdir(exist_ok=True)
    (htdocs / "index.html").write_text("<html><body>" + "weft h2c " * 512 + "</body></html>\n")
    htdocs.chmod(0o755)
    procs = [
        (backend.spawn([PY, APPS / "mesh_app.py", "--port", MESH_HTTP_PORT,
                        "--name", "mesh-backend"], name="mesh_app"), MESH_HTTP_PORT),
        (backend.spawn([PY, APPS / "grpc_app.py", "--port", GRPC_PORT], name="grpc_app"),
         GRPC_PORT),
        (backend.spawn([PY, APPS / "ws_app.py", "--port", WS_PORT], name="ws_app"), WS_PORT),
        (backend.spawn(["nghttpd", "--no-tls", "-d", htdocs, H2_PORT], name="nghttpd"), H2_PORT),
    ]
    for proc, port in procs:
        backend.wait_port(port, proc=proc)


def build_http_mesh(lab: weftlab.Lab, tls: bool = False) -> Mesh:
    """client + backend pods, both intercepted, both running weft; the client
    node knows the backend's apps only as `mesh: true` clusters. With `tls`
    the two nodes speak mTLS on the mesh hop."""
    client = lab.add_pod("client", hosts=MESH_HOSTS)
    backend = lab.add_pod("backend")
    start_mesh_apps(backend, lab.workdir)
    for pod in (client, backend):
        pod.init()
    backend_config, client_config = dict(BACKEND_CONFIG), mesh_client_config(backend)
    if tls:
        backend_tls, client_tls = lab.mesh_tls("ns/default/sa/backend"), lab.mesh_tls("ns/default/sa/client")
        backend_config["listeners"] = {"mesh": {"tls": backend_tls}}
        client_config["listeners"] = {"mesh": {"tls": client_tls}}
    backend.start_weft(backend_config)
    client.start_weft(client_config)
    return Mesh(lab, client, backend)
