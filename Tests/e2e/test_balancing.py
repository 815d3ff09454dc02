"""Endpoint balancing with three endpoints, counted (SPEC §4 step 4, §5
"Balancing": once per HTTP request, once per connection for TCP).

One client pod and three backend pods, each backend running its own weft
node (`{"node": {"id": "backend-N"}}`) and apps that answer with their pod's
name. The client node knows four clusters, each a VIP with one endpoint in
every backend pod, `lb: round_robin`, equal weights:

    VIP                  cluster         carried as
    198.19.0.40:9190     bal-mesh-http   HTTP/1.1 requests as mesh streams (mesh: true, protocol auto)
    198.19.0.41:7100     bal-plain-tcp   a plain TCP relay (mesh: false, protocol: tcp)
    198.19.0.42:7101     bal-mesh-tcp    a CONNECT stream on the mesh (mesh: true, protocol: tcp)
    198.19.0.43:9191     bal-plain-http  a plain TCP relay today (mesh: false, protocol auto)

What is counted: the name in each answer, and, on each backend node, the
mesh streams it served and the plain connections its inbound listener took
(so the meshed clusters are shown to ride the mesh and the plain ones not).

What is asserted, and why it is strict: the node keeps ONE round-robin
schedule per cluster, shared by all its event loops (one atomic counter, not
one per loop), so sequential requests walk it one step each, whichever loop
their connection landed on. With equal weights the smooth weighted schedule
is the endpoints in config order. So 30 sequential requests give exactly
10/10/10, and each request goes to the endpoint listed after the previous
one's. The order check matters: with three endpoints a second pick per
connection (the bug fixed in adbc4fe: matching the VIP picked, then the
request picked again) advances the schedule by two, which is one step
backwards: the counts stay 10/10/10 and only the order shows it. (With two
endpoints that bug sent every one-request connection to the same endpoint.)

The plain-HTTP cluster is relayed as TCP today, so it balances per
connection only; it gets no keep-alive test here.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

BACKENDS = ("backend1", "backend2", "backend3")  # pod names, in endpoint order
REQUESTS = 30                                     # a multiple of len(BACKENDS)
TIMEOUT = 10                                      # seconds, per socket wait


@dataclass(frozen=True)
class Service:
    cluster: str
    host: str        # the client pod's name for the VIP
    vip: str
    port: int
    mesh: bool
    protocol: str | None
    app: str         # "http" (http_app.py) or "banner" (banner_app.py)

    @property
    def mode(self) -> str:
        return "http-new" if self.app == "http" else "tcp-new"


MESH_HTTP = Service("bal-mesh-http", "bal-mesh-http", "198.19.0.40", 9190, True, None, "http")
PLAIN_TCP = Service("bal-plain-tcp", "bal-plain-tcp", "198.19.0.41", 7100, False, "tcp", "banner")
MESH_TCP = Service("bal-mesh-tcp", "bal-mesh-tcp", "198.19.0.42", 7101, True, "tcp", "banner")
PLAIN_HTTP = Service("bal-plain-http", "bal-plain-http", "198.19.0.43", 9191, False, None, "http")
SERVICES = (MESH_HTTP, PLAIN_TCP, MESH_TCP, PLAIN_HTTP)


@dataclass
class Balancing:
    lab: weftlab.Lab
    client: weftlab.Pod
    backends: dict[str, weftlab.Pod]  # pod name -> pod, in endpoint order


def client_config(backends: dict[str, weftlab.Pod]) -> dict:
    clusters = []
    for s in SERVICES:
        c = {
            "name": s.cluster,
            "addresses": [f"{s.vip}:{s.port}"],
            "hostnames": [s.host],
            "mesh": s.mesh,
            "lb": "round_robin",
            "endpoints": [{"address": f"{pod.ip4}:{s.port}"} for pod in backends.values()],
        }
        if s.protocol:
            c["protocol"] = s.protocol
        clusters.append(c)
    return {
        "node": {"id": "client"},
        "outbound_policy": "allow_any",
        "detect_timeout": "1s",
        "clusters": clusters,
    }


def start_apps(pod: weftlab.Pod) -> None:
    """Every app in the pod answers with the pod's name."""
    procs = []
    for s in SERVICES:
        if s.app == "http":
            cmd = [PY, APPS / "http_app.py", "--port", s.port, "--name", pod.name]
        else:
            cmd = [PY, APPS / "banner_app.py", "--port", s.port, "--text", pod.name]
        procs.append((pod.spawn(cmd, name=f"{s.app}_app_{s.port}"), s.port))
    for proc, port in procs:
        pod.wait_port(port, proc=proc)


@pytest.fixture(scope="module")
def bal(root, weft_bin):
    if not shutil.which("curl"):
        pytest.skip("curl not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client", hosts={s.host: s.vip for s in SERVICES})
        backends = {name: lab.add_pod(name) for name in BACKENDS}
        for pod in backends.values():
            start_apps(pod)
        for pod in (client, *backends.values()):
            pod.init()
        for n, pod in enumerate(backends.values(), start=1):
            pod.start_weft({"node": {"id": f"backend-{n}"}})
        client.start_weft(client_config(backends))
        yield Balancing(lab, client, backends)


# -- helpers -------------------------------------------------------------------


def ask(bal: Balancing, mode: str, service: Service, count: int = REQUESTS) -> dict:
    """Run balance_client.py in the client pod; its JSON result."""
    res = bal.client.run([PY, APPS / "balance_client.py", mode, service.host, str(service.port),
                          "--count", str(count), "--timeout", str(TIMEOUT)],
                         check=False, timeout=count * TIMEOUT + 30)
    assert res.returncode == 0, (mode, service.cluster, res.stdout, res.stderr)
    return json.loads(res.stdout)


def backend_counters(bal: Balancing) -> dict[str, tuple[float, float]]:
    """Per backend pod: (mesh streams it served, plain connections its
    inbound listener accepted)."""
    out = {}
    for name, pod in bal.backends.items():
        text = pod.metrics_text()
        out[name] = (weftlab.metric_value(text, "weft_mesh_streams_total", role="server"),
                     weftlab.metric_value(text, "weft_tcp_connections_total", direction="inbound"))
    return out


def assert_round_robin(answers: list[str]) -> None:
    """Exactly an equal share each, and each answer from the endpoint listed
    after the previous answer's (the schedule walked one step per pick)."""
    counts = Counter(answers)
    share = len(answers) // len(BACKENDS)
    assert counts == Counter({name: share for name in BACKENDS}), (dict(counts), answers)
    steps = [(a, b) for a, b in zip(answers, answers[1:])
             if b != BACKENDS[(BACKENDS.index(a) + 1) % len(BACKENDS)]]
    assert not steps, ("answers do not follow the endpoint order", steps, answers)


def assert_carried(bal: Balancing, service: Service, before: dict, after: dict) -> None:
    """What each backend node saw agrees with the answers: 10 mesh streams
    each for a meshed cluster, 10 inbound connections each for a plain one,
    and nothing on the other path."""
    share = REQUESTS // len(BACKENDS)
    want = (share, 0) if service.mesh else (0, share)
    seen = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
            for name in BACKENDS}
    assert seen == {name: want for name in BACKENDS}, (
        service.cluster, "(mesh streams, inbound connections) per backend", seen)


# -- tests ---------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=[s.cluster for s in SERVICES])
def test_one_request_per_new_connection_round_robin(bal, service):
    before = backend_counters(bal)
    result = ask(bal, service.mode, service)
    after = backend_counters(bal)
    answers = result["answers"]
    assert len(answers) == REQUESTS, result
    assert result["connections"] == REQUESTS, result  # a new connection each time
    assert set(result["peers"]) <= {"127.0.0.1"}, result  # delivered over loopback
    assert_round_robin(answers)
    assert_carried(bal, service, before, after)


def test_keepalive_connection_round_robin_per_request(bal):
    before = backend_counters(bal)
    result = ask(bal, "http-keepalive", MESH_HTTP)
    after = backend_counters(bal)
    answers = result["answers"]
    assert len(answers) == REQUESTS, result
    assert result["connections"] == 1, result  # every request on the one connection
    assert set(result["peers"]) == {"127.0.0.1"}, result
    assert_round_robin(answers)
    assert_carried(bal, MESH_HTTP, before, after)


def test_clusters_balance_independently(bal):
    # Requests to one cluster do not move another cluster's schedule: after
    # 31 (not a multiple of three) one-request connections to the plain TCP
    # cluster, the meshed HTTP cluster still continues from where it was.
    first = ask(bal, "http-new", MESH_HTTP, count=1)["answers"]
    ask(bal, "tcp-new", PLAIN_TCP, count=REQUESTS + 1)
    rest = ask(bal, "http-new", MESH_HTTP, count=len(BACKENDS) - 1)["answers"]
    assert_round_robin(first + rest)


def test_nodes_alive_at_the_end(bal):
    for pod in (bal.client, *bal.backends.values()):
        assert pod.weft.alive(), (pod.name, pod.weft_log()[-4000:])
