"""Explicit local listeners (SPEC §5 "Egress listeners"): `listeners.egress`
binds 127.0.0.1:<port> and carries everything to one cluster;
`listeners.http_routing` binds 127.0.0.1:<port> and routes each HTTP request
by its Host (cluster `hostnames`, then `routes`), 404 `no_route` when
nothing matches. Neither is intercepted: the app calls them by address.

One client pod running weft, two backend pods running mesh_app.py on :9490
(`hello from <pod>`): backend1 runs weft (cluster `svc`, mesh: true),
backend2 does not (cluster `ext`, mesh: false, plain HTTP/1.1).

    127.0.0.1:9250  egress -> ext
    127.0.0.1:9251  egress -> svc
    127.0.0.1:9001  http_routing: Host svc -> svc, Host ext -> ext,
                    Host svc with a path under /v2 -> ext (a route)
"""

from __future__ import annotations

import shutil

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

APP_PORT = 9490
EGRESS_EXT = 9250
EGRESS_SVC = 9251
ROUTING = 9001


@pytest.fixture(scope="module")
def lab(root, weft_bin):
    if not shutil.which("curl"):
        pytest.skip("curl not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client")
        backends = [lab.add_pod(name) for name in ("backend1", "backend2")]
        for pod in backends:
            proc = pod.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", pod.name], name="mesh_app")
            pod.wait_port(APP_PORT, proc=proc)
        client.init()
        backends[0].init()
        backends[0].start_weft({"node": {"id": "backend1"}})
        client.start_weft({
            "node": {"id": "client"},
            "listeners": {
                "egress": [{"port": EGRESS_EXT, "cluster": "ext"}, {"port": EGRESS_SVC, "cluster": "svc"}],
                "http_routing": {"port": ROUTING},
            },
            "clusters": [
                {"name": "svc", "hostnames": ["svc"], "mesh": True,
                 "endpoints": [{"address": f"{backends[0].ip4}:{APP_PORT}"}]},
                {"name": "ext", "hostnames": ["ext"], "mesh": False, "protocol": "http1",
                 "endpoints": [{"address": f"{backends[1].ip4}:{APP_PORT}"}]},
            ],
            "routes": [{"match": {"host": "svc", "path_prefix": "/v2"}, "clusters": [{"name": "ext"}]}],
        })
        yield client, backends


def get(client: weftlab.Pod, port: int, path: str = "/", host: str | None = None) -> tuple[int, str, str]:
    """(status, body, headers) of a GET to 127.0.0.1:port inside the client pod."""
    cmd = ["curl", "-s", "--noproxy", "*", "--max-time", "10", "-D", "/dev/stderr"]
    if host:
        cmd += ["-H", f"Host: {host}"]
    res = client.run(cmd + ["-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"], check=False, timeout=30)
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body, res.stderr.lower()


def test_an_egress_port_carries_everything_to_its_cluster(lab):
    client, backends = lab
    status, body, _ = get(client, EGRESS_EXT)
    assert (status, body.split(";")[0]) == (200, "hello from backend2"), body
    streams = backends[0].metric("weft_mesh_streams_total", role="server")
    for _ in range(3):
        status, body, _ = get(client, EGRESS_SVC)
        assert (status, body.split(";")[0]) == (200, "hello from backend1"), body
    # The meshed cluster's requests rode the mesh to backend1's node.
    assert backends[0].metric("weft_mesh_streams_total", role="server") - streams == 3


def test_the_routing_port_routes_by_host_and_route_and_refuses_the_rest(lab):
    client, _ = lab
    assert get(client, ROUTING, host="svc")[:2][0] == 200
    assert get(client, ROUTING, host="svc")[1].startswith("hello from backend1")
    assert get(client, ROUTING, host="EXT:80")[1].startswith("hello from backend2"), "port and case aside"
    assert get(client, ROUTING, "/v2/items", host="svc")[1].startswith("hello from backend2"), "the route wins"
    status, body, headers = get(client, ROUTING, host="unknown.example")
    assert status == 404 and "weft-reason: no_route" in headers, (status, body, headers)
    assert client.metric("weft_error_responses_total", reason="no_route") >= 1


def test_the_local_listeners_are_loopback_only(lab):
    client, _ = lab
    listening = client.run(["ss", "-Hltn"], timeout=10).stdout
    for port in (EGRESS_EXT, EGRESS_SVC, ROUTING):
        lines = [line for line in listening.splitlines() if f":{port} " in line]
        assert lines and all("127.0.0.1:" in line for line in lines), (port, lines)
