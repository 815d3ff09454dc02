"""A rolling restart of the receiving nodes under load loses no request
(issue 14; the drain of SPEC §6).

One client pod and three backend pods, each with its own weft and
mesh_app.py. The client node knows one `mesh: true` cluster over the three,
with retries on connect failures, resets and refused streams. While four
keep-alive app connections send requests one after another, each backend's
weft in turn gets SIGTERM (it stops accepting, sends GOAWAY to the client
node, finishes what is in flight and exits) and is started again. Every
request must be answered by an app: a request caught by a restart is
retried on another endpoint, never failed to the caller.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

BACKENDS = ("backend1", "backend2", "backend3")
APP_PORT = 9390
VIP = "198.19.0.90"
REQUESTS = 2500
DEADLINE = 120  # seconds for the whole load, a bound, not a measure


@pytest.fixture(scope="module")
def lab(root, weft_bin):
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client")
        backends = {name: lab.add_pod(name) for name in BACKENDS}
        for name, pod in backends.items():
            app = pod.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", name], name="mesh_app")
            pod.wait_port(APP_PORT, proc=app)
        for pod in (client, *backends.values()):
            pod.init()
        lab.backend_config = {"node": {"id": "backend"}, "drain_timeout": "5s"}
        for pod in backends.values():
            pod.start_weft(lab.backend_config)
        client.start_weft({
            "node": {"id": "client"},
            "clusters": [{
                "name": "svc", "addresses": [f"{VIP}:{APP_PORT}"], "mesh": True, "lb": "round_robin",
                "endpoints": [{"address": f"{pod.ip4}:{APP_PORT}"} for pod in backends.values()],
                "retries": {"attempts": 2, "on": ["connect-failure", "reset", "refused-stream"],
                            "budget_percent": 100},
            }],
        })
        lab.client, lab.backends = client, backends
        yield lab


def test_restarting_every_receiving_node_in_turn_under_load_loses_no_request(lab):
    client = lab.client
    load = client.spawn([PY, APPS / "balance_client.py", "http-load", VIP, str(APP_PORT), "--count", str(REQUESTS),
                         "--concurrency", "4", "--deadline", str(DEADLINE)], name="load")
    time.sleep(1.0)
    restarts = []
    for name, pod in lab.backends.items():
        assert load.alive(), f"the load ended before {name}'s restart:\n{load.log()[-2000:]}"
        started = time.monotonic()
        code = pod.stop_weft(timeout=15)
        restarts.append({"node": name, "exit": code, "stopped_after": round(time.monotonic() - started, 2)})
        assert code == 0, f"{name}'s weft exited with {code} on SIGTERM:\n{pod.weft_log()[-3000:]}"
        pod.start_weft(lab.backend_config)
        time.sleep(1.0)
    deadline = time.monotonic() + DEADLINE + 30
    while load.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not load.alive(), "the load did not finish"
    print(f"restarts: {restarts}")
    assert load.stop() == 0, f"requests were lost:\n{load.log()[-3000:]}"
    result = json.loads(load.log().strip().splitlines()[-1])
    answers = Counter(a.split(";")[0].replace("hello from ", "") for a in result["answers"])
    print(f"answers by backend: {dict(answers)}")
    assert sum(answers.values()) == REQUESTS
    assert set(answers) == set(BACKENDS), answers
    retried = client.metric("weft_retries_total", result="retried")
    print(f"retries: {retried:.0f}")
    # The restarts did catch requests (the retries saved them), so the test
    # would see a loss if retries or the drain broke.
    assert retried > 0
