"""Retries and timeouts for HTTP/2 apps (gRPC), three endpoints, counted
(SPEC §5 "Retries", "Timeouts").

One client pod and three backend pods, each with its own weft node and two
unmodified gRPC servers (grpc_app.py): one on :50051 that answers at once,
one on :50052 that answers at once on backend1 and backend3 and after 1 s on
backend2. Each names itself in its initial metadata (x-served-by). The
client node knows four `mesh: true`, round-robin clusters over the three
endpoints, each its own VIP:

    VIP                  cluster          policy
    198.19.0.90:50051    h2-retry         retries: 2 more on connect-failure, reset or refused-stream
    198.19.0.91:50051    h2-none          none (the control)
    198.19.0.92:50052    h2-pertry        retries: 2 more on gateway-error, per_try_timeout 300ms
    198.19.0.93:50052    h2-timeout       timeouts.request 400ms, no retries

Calls go one after another on ONE channel (one connection, one event loop),
so round robin takes strict turns and the counts are exact.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

BACKENDS = ("backend1", "backend2", "backend3")
FAST_PORT, SLOW_PORT = 50051, 50052
SLOW_BACKEND, DELAY = "backend2", 1.0
RETRY = ("h2-retry", "198.19.0.90", FAST_PORT)
NONE = ("h2-none", "198.19.0.91", FAST_PORT)
PER_TRY = ("h2-pertry", "198.19.0.92", SLOW_PORT)
TIMEOUT = ("h2-timeout", "198.19.0.93", SLOW_PORT)
SERVICES = (RETRY, NONE, PER_TRY, TIMEOUT)


@dataclass
class Lab:
    client: weftlab.Pod
    backends: dict[str, weftlab.Pod]
    fast_apps: dict[str, weftlab.Proc]


def client_config(backends: dict[str, weftlab.Pod]) -> dict:
    clusters = []
    for name, vip, port in SERVICES:
        c = {"name": name, "addresses": [f"{vip}:{port}"], "hostnames": [name], "mesh": True,
             "lb": "round_robin", "endpoints": [{"address": f"{pod.ip4}:{port}"} for pod in backends.values()]}
        if name == RETRY[0]:
            c["retries"] = {"attempts": 2, "on": ["connect-failure", "reset", "refused-stream"],
                            "budget_percent": 100}
        if name == PER_TRY[0]:
            c["retries"] = {"attempts": 2, "on": ["gateway-error"], "per_try_timeout": "300ms",
                            "budget_percent": 100}
        if name == TIMEOUT[0]:
            c["timeouts"] = {"request": "400ms"}
        clusters.append(c)
    return {"node": {"id": "client"}, "outbound_policy": "allow_any", "detect_timeout": "1s",
            "clusters": clusters}


def start_grpc(pod: weftlab.Pod, port: int, delay: float = 0) -> weftlab.Proc:
    proc = pod.spawn([PY, APPS / "grpc_app.py", "--port", port, "--name", pod.name, "--delay", delay],
                     name=f"grpc_app_{port}")
    pod.wait_port(port, proc=proc)
    return proc


@pytest.fixture(scope="module")
def h2(root, weft_bin):
    try:
        __import__("grpc")
    except ImportError:
        pytest.skip("python package grpc not installed (Tests/e2e/requirements.txt)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client", hosts={name: vip for name, vip, _ in SERVICES})
        backends = {name: lab.add_pod(name) for name in BACKENDS}
        fast = {pod.name: start_grpc(pod, FAST_PORT) for pod in backends.values()}
        for pod in backends.values():
            start_grpc(pod, SLOW_PORT, DELAY if pod.name == SLOW_BACKEND else 0)
        for pod in (client, *backends.values()):
            pod.init()
        for n, pod in enumerate(backends.values(), start=1):
            pod.start_weft({"node": {"id": f"backend-{n}"}})
        client.start_weft(client_config(backends))
        yield Lab(client, backends, fast)


def tally(h2: Lab, service: tuple[str, str, int], count: int) -> list[tuple[str, str]]:
    """`count` unary calls one after another on one channel: (gRPC code,
    backend that answered) each."""
    name, _, port = service
    result = h2.client.run([PY, APPS / "grpc_client.py", f"{name}:{port}", "--tally", str(count),
                            "--timeout", "10"], check=False, timeout=count * 10 + 30,
                           env={"GRPC_DNS_RESOLVER": "native"})
    assert result.returncode == 0, (result.stdout, result.stderr[-3000:])
    return [tuple(answer) for answer in json.loads(result.stdout)["answers"]]


def test_a_grpc_endpoint_whose_app_is_gone_costs_no_call_with_retries(h2):
    assert Counter(tally(h2, RETRY, 30)) == {("OK", name): 10 for name in BACKENDS}
    h2.fast_apps[SLOW_BACKEND].stop()
    try:
        retried = h2.client.metric("weft_retries_total", cluster=RETRY[0], result="retried")
        answers = Counter(tally(h2, RETRY, 30))
        print(f"h2-retry, {SLOW_BACKEND}'s app gone: {dict(answers)}")
        # backend2's node answers 502 connect_failure for its app: retried
        # on another endpoint, every call answered.
        assert sum(answers.values()) == 30 and all(code == "OK" for code, _ in answers)
        assert answers[("OK", SLOW_BACKEND)] == 0
        assert h2.client.metric("weft_retries_total", cluster=RETRY[0], result="retried") - retried >= 8
        # The control, without retries: backend2's turns fail.
        control = Counter(tally(h2, NONE, 30))
        print(f"h2-none, {SLOW_BACKEND}'s app gone: {dict(control)}")
        assert control[("UNAVAILABLE", "")] == 10
        assert control[("OK", "backend1")] == control[("OK", "backend3")] == 10
    finally:
        h2.fast_apps[SLOW_BACKEND] = start_grpc(h2.backends[SLOW_BACKEND], FAST_PORT)
    # Back: the spread returns.
    assert Counter(tally(h2, RETRY, 30)) == {("OK", name): 10 for name in BACKENDS}


def test_a_grpc_try_past_per_try_timeout_is_retried_elsewhere(h2):
    retried = h2.client.metric("weft_retries_total", cluster=PER_TRY[0], result="retried")
    answers = Counter(tally(h2, PER_TRY, 15))
    print(f"h2-pertry, {SLOW_BACKEND} answering after {DELAY} s: {dict(answers)}")
    assert sum(answers.values()) == 15 and all(code == "OK" for code, _ in answers)
    assert answers[("OK", SLOW_BACKEND)] == 0
    assert h2.client.metric("weft_retries_total", cluster=PER_TRY[0], result="retried") - retried >= 4


def test_a_grpc_call_unanswered_within_the_request_timeout_gets_504(h2):
    timeouts = h2.client.metric("weft_error_responses_total", reason="timeout")
    answers = Counter(tally(h2, TIMEOUT, 15))
    print(f"h2-timeout, {SLOW_BACKEND} answering after {DELAY} s: {dict(answers)}")
    # gRPC reports weft's 504 as UNAVAILABLE; the others answer.
    assert answers == {("OK", "backend1"): 5, ("OK", "backend3"): 5, ("UNAVAILABLE", ""): 5}
    assert h2.client.metric("weft_error_responses_total", reason="timeout") - timeouts == 5
