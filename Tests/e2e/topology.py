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
