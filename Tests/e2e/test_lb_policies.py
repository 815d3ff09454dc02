"""Balancing policies with three endpoints, counted (SPEC §5 "Balancing"):
`least_request` and `peak_ewma` steer load away from a slow endpoint and
give it back once it is fast again, `round_robin` does not steer (the
control), and `ring_hash`/`maglev` keyed by a header pin every key to one
endpoint.

One client pod and three backend pods, each backend running its own weft
node and mesh_app.py on :9290 answering `hello from <pod name>`. The client
node knows five `mesh: true` clusters over the same three endpoints, one per
policy, each its own VIP (clusters keep their own balancer state, so one
cluster's traffic does not move another's):

    VIP                 cluster             lb
    198.19.0.60:9290    lb-least-request    least_request
    198.19.0.61:9290    lb-peak-ewma        peak_ewma
    198.19.0.62:9290    lb-round-robin      round_robin
    198.19.0.63:9290    lb-ring-hash        ring_hash, hash_on: { header: x-user }
    198.19.0.64:9290    lb-maglev           maglev,    hash_on: { header: x-user }

The slow endpoint: backend2's app is told (GET /delay?seconds=0.4, over its
pod's loopback, not through weft) to wait 400 ms before every answer; the
other two answer at once. Load: 600 GETs over 16 concurrent keep-alive
connections from the client pod (balance_client.py http-load), bounded in
time. What is asserted is counts (which pod answered), never timings:

* round_robin: every endpoint gets its third, give or take what the loops'
  independent schedules allow, however slow it is;
* least_request / peak_ewma: the slow endpoint gets less than half of a
  third, each fast one more than a third; then the slow one is made fast
  again and, polled in bounded rounds (peak_ewma's estimate of it has to
  decay first, with a 10 s time constant), it gets at least half of a third
  of a round again;
* ring_hash / maglev: each of 50 keys (`x-user: user-NN`) gets the same
  endpoint on every request, over one keep-alive connection and over new
  connections (which land on different event loops, each with its own
  balancer over the shared ring or table); the keys spread over all three
  endpoints; requests without the header are answered, spread at random.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

BACKENDS = ("backend1", "backend2", "backend3")  # pod names, in endpoint order
SLOW = "backend2"
APP_PORT = 9290
SLOW_DELAY = 0.4       # seconds the slow app waits before each answer
LOAD = 600             # requests per load run
CONCURRENCY = 16       # keep-alive connections at once
LOAD_DEADLINE = 60     # seconds for one load run (it takes a few)
RECOVERY_ROUND = 150   # requests per polling round once the slow one is fast
RECOVERY_WAIT = 40     # seconds of polling at most
TIMEOUT = 10           # seconds, per socket wait
HEADER = "x-user"
KEYS = 50


@dataclass(frozen=True)
class Service:
    cluster: str   # also the client pod's host name for the VIP
    vip: str
    lb: str
    hashed: bool = False


LEAST_REQUEST = Service("lb-least-request", "198.19.0.60", "least_request")
PEAK_EWMA = Service("lb-peak-ewma", "198.19.0.61", "peak_ewma")
ROUND_ROBIN = Service("lb-round-robin", "198.19.0.62", "round_robin")
RING_HASH = Service("lb-ring-hash", "198.19.0.63", "ring_hash", hashed=True)
MAGLEV = Service("lb-maglev", "198.19.0.64", "maglev", hashed=True)
SERVICES = (LEAST_REQUEST, PEAK_EWMA, ROUND_ROBIN, RING_HASH, MAGLEV)


@dataclass
class Policies:
    lab: weftlab.Lab
    client: weftlab.Pod
    backends: dict[str, weftlab.Pod]  # pod name -> pod, in endpoint order
    loops: int                        # the client node's event loops (one per core)


def client_config(backends: dict[str, weftlab.Pod]) -> dict:
    clusters = []
    for s in SERVICES:
        c = {
            "name": s.cluster,
            "addresses": [f"{s.vip}:{APP_PORT}"],
            "hostnames": [s.cluster],
            "mesh": True,
            "lb": s.lb,
            "endpoints": [{"address": f"{pod.ip4}:{APP_PORT}"} for pod in backends.values()],
        }
        if s.hashed:
            c["hash_on"] = {"header": HEADER}
        clusters.append(c)
    return {
        "node": {"id": "client"},
        "outbound_policy": "allow_any",
        "detect_timeout": "1s",
        "clusters": clusters,
    }


@pytest.fixture(scope="module")
def pol(root, weft_bin):
    if not shutil.which("curl"):
        pytest.skip("curl not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client", hosts={s.cluster: s.vip for s in SERVICES})
        backends = {name: lab.add_pod(name) for name in BACKENDS}
        apps = [(pod, pod.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", pod.name],
                                name="mesh_app")) for pod in backends.values()]
        for pod, proc in apps:
            pod.wait_port(APP_PORT, proc=proc)
        for pod in (client, *backends.values()):
            pod.init()
        for n, pod in enumerate(backends.values(), start=1):
            pod.start_weft({"node": {"id": f"backend-{n}"}})
        client.start_weft(client_config(backends))
        loops = int(client.run(["nproc"]).stdout.strip())
        yield Policies(lab, client, backends, loops)


# -- helpers -------------------------------------------------------------------


def set_delay(pol: Policies, name: str, seconds: float) -> None:
    """Tell one backend's app how long to wait before each answer (straight
    to the app over its pod's loopback, which weft does not intercept)."""
    code, body = pol.backends[name].http_get(f"http://127.0.0.1:{APP_PORT}/delay?seconds={seconds}")
    assert (code, body) == (200, f"delay {seconds:g} from {name}\n"), (name, code, body)


def make_slow(pol: Policies, slow: str | None) -> None:
    for name in BACKENDS:
        set_delay(pol, name, SLOW_DELAY if name == slow else 0)


def run_client(pol: Policies, *args: str, timeout: float) -> dict:
    """Run balance_client.py in the client pod (bounded); its JSON result."""
    res = pol.client.run([PY, APPS / "balance_client.py", *args, "--timeout", str(TIMEOUT)],
                         check=False, timeout=timeout)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return json.loads(res.stdout)


def mesh_streams(pol: Policies) -> dict[str, float]:
    """Per backend pod: the mesh streams its node served."""
    return {name: pod.metric("weft_mesh_streams_total", role="server")
            for name, pod in pol.backends.items()}


def load(pol: Policies, service: Service, count: int = LOAD) -> Counter:
    """`count` GETs over CONCURRENCY keep-alive connections; how many each
    backend answered. Every request rode the mesh to the node that answered."""
    before = mesh_streams(pol)
    result = run_client(pol, "http-load", service.cluster, str(APP_PORT), "--count", str(count),
                        "--concurrency", str(CONCURRENCY), "--deadline", str(LOAD_DEADLINE),
                        timeout=LOAD_DEADLINE + TIMEOUT + 30)
    after = mesh_streams(pol)
    counts = Counter(result["answers"])
    assert sum(counts.values()) == count and set(counts) <= set(BACKENDS), result
    assert set(result["peers"]) == {"127.0.0.1"}, set(result["peers"])  # delivered over loopback
    assert result["connections"] <= CONCURRENCY, result["connections"]  # kept alive
    streams = {name: after[name] - before[name] for name in BACKENDS}
    assert streams == {name: counts[name] for name in BACKENDS}, (
        service.cluster, "mesh streams per backend", streams, "answers", dict(counts))
    return counts


def shares(counts: Counter) -> dict[str, int]:
    return {name: counts[name] for name in BACKENDS}


# -- latency-aware policies against round robin ----------------------------------


def test_round_robin_gives_the_slow_endpoint_its_share(pol):
    # The control: round robin takes turns whatever an endpoint's speed, so
    # the slow one gets its third. Each loop walks its own schedule from its
    # own start: a third give or take 2/3 of a request per loop.
    make_slow(pol, SLOW)
    counts = load(pol, ROUND_ROBIN)
    print(f"round_robin, {SLOW} slow: {shares(counts)}")
    share = LOAD / len(BACKENDS)
    slack = pol.loops * (len(BACKENDS) - 1) / len(BACKENDS)
    off = {name: counts[name] for name in BACKENDS if abs(counts[name] - share) > slack}
    assert not off, (f"want {share:g} ± {slack:.2f} each", shares(counts))


@pytest.mark.parametrize("service", [LEAST_REQUEST, PEAK_EWMA], ids=lambda s: s.lb)
def test_slow_endpoint_avoided_then_given_traffic_back(pol, service):
    share = LOAD / len(BACKENDS)
    make_slow(pol, SLOW)
    try:
        counts = load(pol, service)
        print(f"{service.lb}, {SLOW} slow: {shares(counts)}")
        fast = [name for name in BACKENDS if name != SLOW]
        assert counts[SLOW] < share / 2, (f"{SLOW} (slow) should get under {share / 2:g}",
                                          shares(counts))
        assert all(counts[name] > share for name in fast), (
            f"each fast endpoint should get over {share:g}", shares(counts))

        # Phase 2: the slow endpoint is fast again. least_request sees it at
        # once (nothing left in flight there); peak_ewma once its latency
        # estimate has decayed below the others' cost and it is tried again.
        make_slow(pol, None)
        round_share = RECOVERY_ROUND / len(BACKENDS)
        rounds = []
        started = time.monotonic()
        deadline = started + RECOVERY_WAIT
        while True:
            counts = load(pol, service, RECOVERY_ROUND)
            rounds.append(counts[SLOW])
            if counts[SLOW] >= round_share / 2 or time.monotonic() > deadline:
                break
        print(f"{service.lb}, {SLOW} fast again: {len(rounds)} rounds of {RECOVERY_ROUND} "
              f"({time.monotonic() - started:.1f}s), {SLOW}'s answers per round {rounds}; "
              f"last round {shares(counts)}")
        assert counts[SLOW] >= round_share / 2, (
            f"{SLOW}, fast again, should get at least {round_share / 2:g} of a round of "
            f"{RECOVERY_ROUND} within {RECOVERY_WAIT}s", rounds, shares(counts))
    finally:
        make_slow(pol, None)


# -- consistent hashing -------------------------------------------------------------


@pytest.mark.parametrize("service", [RING_HASH, MAGLEV], ids=lambda s: s.lb)
def test_hash_on_header_pins_each_key(pol, service):
    make_slow(pol, None)
    rounds, new_per_key, unkeyed = 3, 2, 60
    before = mesh_streams(pol)
    result = run_client(pol, "http-keys", service.cluster, str(APP_PORT), "--keys", str(KEYS),
                        "--rounds", str(rounds), "--new-per-key", str(new_per_key),
                        "--unkeyed", str(unkeyed), "--header", HEADER,
                        timeout=KEYS * (rounds + new_per_key) + unkeyed + 60)
    after = mesh_streams(pol)
    keep, new = result["keep"], result["new"]
    assert result["keep_connections"] == 1, result["keep_connections"]
    assert len(keep) == KEYS and all(len(keep[k]) == rounds and len(new[k]) == new_per_key
                                     for k in keep), result
    # Every request of a key, on the keep-alive connection and on new ones
    # (other loops, other balancers), went to the one endpoint.
    moved = {k: keep[k] + new[k] for k in keep if len(set(keep[k] + new[k])) != 1}
    assert not moved, ("keys answered by more than one endpoint", moved)
    owner = {k: keep[k][0] for k in keep}
    spread = Counter(owner.values())
    print(f"{service.lb}: {KEYS} keys per endpoint {shares(spread)}; "
          f"{unkeyed} requests without {HEADER}: {shares(Counter(result['unkeyed']))}")
    assert set(spread) == set(BACKENDS), ("keys per endpoint", shares(spread))
    # Without the key: still answered, by any endpoint (random).
    assert len(result["unkeyed"]) == unkeyed, result["unkeyed"]
    assert set(result["unkeyed"]) == set(BACKENDS), shares(Counter(result["unkeyed"]))
    # Every request was one mesh stream to the node that answered it.
    answered = Counter(result["unkeyed"])
    for k in keep:
        answered.update(keep[k] + new[k])
    streams = {name: after[name] - before[name] for name in BACKENDS}
    assert streams == shares(answered), ("mesh streams per backend", streams, shares(answered))


def test_nodes_alive_at_the_end(pol):
    for pod in (pol.client, *pol.backends.values()):
        assert pod.weft.alive(), (pod.name, pod.weft_log()[-4000:])
