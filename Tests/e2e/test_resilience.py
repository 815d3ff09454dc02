"""Endpoint health with three endpoints, counted (SPEC §5 "Endpoint health"):
outlier detection ejects an endpoint that answers 503 and takes it back once
its ejection is over; an active health check takes a failing endpoint out
and brings it back; with every endpoint failing, panic mode still serves.

One client pod and three backend pods, each with its own weft node and
mesh_app.py on :9390 (answers `hello from <pod>`; told over its pod's
loopback, not through weft, to answer every hello with a status, or to
fail its /healthz). The client node knows four `mesh: true`, round-robin
clusters over the same three endpoints, each its own VIP and its own
endpoint states:

    VIP                 cluster        policy
    198.19.0.70:9390    res-outlier    outlier_detection: 3 gateway errors in a row, 3 s base ejection
    198.19.0.71:9390    res-health     health_check: GET /healthz every 300 ms, 2 fails out, 2 passes back
    198.19.0.72:9390    res-panic      the same health_check
    198.19.0.73:9390    res-none       none (the control: failures are simply passed on)
    198.19.0.76:9390    res-retry      retries: 2 more attempts on connect-failure, reset or 503
    198.19.0.77:9390    res-breaker    circuit_breakers: max_requests 2
    198.19.0.78:9390    res-ratelimit  rate_limit: 1 per second, burst 3
    198.19.0.79:7400    res-idle       backend1's banner_app.py (TCP), timeouts.idle 1s
    198.19.0.83:9390    res-idle-http  backend1's mesh_app.py (HTTP/1.1), timeouts.idle 1s
    198.19.0.81:9390    res-pertry     retries: 2 more attempts on gateway-error, per_try_timeout 300ms
    198.19.0.80:9390    res-locality   backend1 and backend2 in the client's zone a, backend3 in zone b
                                       (same region), with the health check; the client node is in zone a
    198.19.0.74:9391    res-race-mesh  backend1 only, mesh: true
    198.19.0.75:9391    res-race-plain backend1 only, mesh: false (plain HTTP/1.1 pool)

On :9391 backend1 runs mesh_app.py --close-idle-after 0.3: a keep-alive
connection idle 0.3 s or more is closed as its next request arrives,
unanswered (the race behind the "503 UC" of Envoy users, made to happen
every time). Whichever node holds the pooled connection to that app (the
backend node for the meshed cluster, the client node for the plain one)
must send the request again on a fresh connection.

Requests go one after another on ONE keep-alive connection (one event
loop), so round robin takes strict turns and the counts are exact: what
is asserted is who answered and with what, never timings. Waits for a
verdict (a check, an ejection's end) poll with bounds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

BACKENDS = ("backend1", "backend2", "backend3")  # pod names, in endpoint order
APP_PORT = 9390
TIMEOUT = 10         # seconds, per socket wait
VERDICT_WAIT = 15    # seconds at most for a health verdict or an ejection to end
BASE_EJECTION = 3    # seconds

OUTLIER = ("res-outlier", "198.19.0.70")
HEALTH = ("res-health", "198.19.0.71")
PANIC = ("res-panic", "198.19.0.72")
NONE = ("res-none", "198.19.0.73")
RETRY = ("res-retry", "198.19.0.76")
LOCALITY = ("res-locality", "198.19.0.80")
PER_TRY = ("res-pertry", "198.19.0.81")
ZONES = {"backend1": "a", "backend2": "a", "backend3": "b"}
BREAKER = ("res-breaker", "198.19.0.77")
RATE_LIMIT = ("res-ratelimit", "198.19.0.78")
SERVICES = (OUTLIER, HEALTH, PANIC, NONE, RETRY, BREAKER, RATE_LIMIT, LOCALITY, PER_TRY)
RACE_PORT = 9391
IDLE_CLOSE = 0.3     # seconds of idleness after which the race app closes on the next request
IDLE = ("res-idle", "198.19.0.79")
IDLE_PORT = 7400
IDLE_HTTP = ("res-idle-http", "198.19.0.83")
RACE_MESH = ("res-race-mesh", "198.19.0.74")
RACE_PLAIN = ("res-race-plain", "198.19.0.75")
CHECK = {"protocol": "http", "path": "/healthz", "interval": "300ms", "timeout": "250ms",
         "healthy": 2, "unhealthy": 2}


@dataclass
class Resilience:
    lab: weftlab.Lab
    client: weftlab.Pod
    backends: dict[str, weftlab.Pod]  # pod name -> pod, in endpoint order
    apps: dict[str, weftlab.Proc]     # pod name -> its mesh_app.py on APP_PORT

    def address(self, name: str) -> str:
        return f"{self.backends[name].ip4}:{APP_PORT}"


def client_config(backends: dict[str, weftlab.Pod]) -> dict:
    clusters = []
    for name, vip in SERVICES:
        c = {
            "name": name,
            "addresses": [f"{vip}:{APP_PORT}"],
            "hostnames": [name],
            "mesh": True,
            "lb": "round_robin",
            "endpoints": [{"address": f"{pod.ip4}:{APP_PORT}"} for pod in backends.values()],
        }
        if (name, vip) == OUTLIER:
            c["outlier_detection"] = {"consecutive_gateway_errors": 3, "consecutive_5xx": 3, "interval": "1s",
                                      "base_ejection": f"{BASE_EJECTION}s", "max_ejection_percent": 50}
        if (name, vip) in (HEALTH, PANIC, LOCALITY):
            c["health_check"] = CHECK
        if (name, vip) == LOCALITY:
            c["endpoints"] = [{"address": f"{pod.ip4}:{APP_PORT}", "locality": {"region": "lab", "zone": ZONES[pod.name]}}
                              for pod in backends.values()]
        if (name, vip) == PER_TRY:
            c["retries"] = {"attempts": 2, "on": ["gateway-error"], "per_try_timeout": "300ms", "budget_percent": 100}
        if (name, vip) == BREAKER:
            c["circuit_breakers"] = {"max_requests": 2}
        if (name, vip) == RATE_LIMIT:
            c["rate_limit"] = {"per_second": 1, "burst": 3}
        if (name, vip) == RETRY:
            c["retries"] = {"attempts": 2, "on": ["connect-failure", "reset", "503"], "budget_percent": 100}
        clusters.append(c)
    clusters.append({"name": IDLE[0], "addresses": [f"{IDLE[1]}:{IDLE_PORT}"], "hostnames": [IDLE[0]],
                     "protocol": "tcp", "timeouts": {"idle": "1s"},
                     "endpoints": [{"address": f"{backends['backend1'].ip4}:{IDLE_PORT}"}]})
    clusters.append({"name": IDLE_HTTP[0], "addresses": [f"{IDLE_HTTP[1]}:{APP_PORT}"], "hostnames": [IDLE_HTTP[0]],
                     "mesh": True, "protocol": "http1", "timeouts": {"idle": "1s"},
                     "endpoints": [{"address": f"{backends['backend1'].ip4}:{APP_PORT}"}]})
    for (name, vip), mesh in ((RACE_MESH, True), (RACE_PLAIN, False)):
        clusters.append({"name": name, "addresses": [f"{vip}:{RACE_PORT}"], "hostnames": [name], "mesh": mesh,
                         "protocol": "http1", "endpoints": [{"address": f"{backends['backend1'].ip4}:{RACE_PORT}"}]})
    return {"node": {"id": "client", "locality": {"region": "lab", "zone": "a"}}, "outbound_policy": "allow_any",
            "detect_timeout": "1s", "clusters": clusters}


@pytest.fixture(scope="module")
def res(root, weft_bin):
    if not shutil.which("curl"):
        pytest.skip("curl not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client", hosts={name: vip for name, vip in (*SERVICES, RACE_MESH, RACE_PLAIN, IDLE, IDLE_HTTP)})
        backends = {name: lab.add_pod(name) for name in BACKENDS}
        apps = [(pod, pod.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", pod.name],
                                name="mesh_app")) for pod in backends.values()]
        for pod, proc in apps:
            pod.wait_port(APP_PORT, proc=proc)
        racer = backends["backend1"]
        race = racer.spawn([PY, APPS / "mesh_app.py", "--port", RACE_PORT, "--name", "racer",
                            "--close-idle-after", IDLE_CLOSE], name="race_app")
        racer.wait_port(RACE_PORT, proc=race)
        banner = racer.spawn([PY, APPS / "banner_app.py", "--port", IDLE_PORT], name="banner_app")
        racer.wait_port(IDLE_PORT, proc=banner)
        for pod in (client, *backends.values()):
            pod.init()
        for n, pod in enumerate(backends.values(), start=1):
            pod.start_weft({"node": {"id": f"backend-{n}"}})
        client.start_weft(client_config(backends))
        yield Resilience(lab, client, backends, {pod.name: proc for pod, proc in apps})


@pytest.fixture(autouse=True)
def all_well(res):
    """Every test starts, and leaves, with every app answering and healthy."""
    set_apps(res, fail=0, healthy=True)
    yield
    set_apps(res, fail=0, healthy=True)


# -- helpers -------------------------------------------------------------------


def tell(res: Resilience, name: str, path: str, expect: str) -> None:
    """Tell one backend's app something, over its pod's loopback."""
    code, body = res.backends[name].http_get(f"http://127.0.0.1:{APP_PORT}{path}")
    assert (code, body) == (200, f"{expect} from {name}\n"), (name, path, code, body)


def set_apps(res: Resilience, fail: int, healthy: bool, only: tuple[str, ...] = BACKENDS) -> None:
    for name in only:
        tell(res, name, f"/fail?status={fail}", f"fail {fail}")
        tell(res, name, f"/health?ok={int(healthy)}", f"health {int(healthy)}")


def tally(res: Resilience, service: tuple[str, str], count: int, port: int = APP_PORT,
          pause: float = 0) -> list[tuple[int, str, str]]:
    """`count` GETs one after another on one keep-alive connection (`pause`
    seconds apart): (status, backend that answered, weft-reason) each."""
    result = res.client.run([PY, APPS / "balance_client.py", "http-tally", service[0], str(port),
                             "--count", str(count), "--timeout", str(TIMEOUT), "--pause", str(pause)],
                            check=False, timeout=count * (TIMEOUT + pause) + 30)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return [tuple(answer) for answer in json.loads(result.stdout)["answers"]]


def by_backend(answers) -> Counter:
    return Counter(name for _, name, _ in answers)


def gauge(res: Resilience, metric: str, service: tuple[str, str], name: str) -> float:
    return res.client.metric(metric, cluster=service[0], endpoint=res.address(name))


def start_app(res: Resilience, name: str) -> None:
    pod = res.backends[name]
    proc = pod.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", name], name="mesh_app")
    pod.wait_port(APP_PORT, proc=proc)
    res.apps[name] = proc


def load(res: Resilience, service: tuple[str, str], count: int) -> dict:
    """`count` GETs over 4 concurrent keep-alive connections, bounded; the
    client's result (exit status, answers) whether or not all succeeded."""
    result = res.client.run([PY, APPS / "balance_client.py", "http-load", service[0], str(APP_PORT),
                             "--count", str(count), "--concurrency", "4", "--deadline", "60",
                             "--timeout", str(TIMEOUT)], check=False, timeout=120)
    return {"ok": result.returncode == 0, "answers": json.loads(result.stdout)["answers"] if result.returncode == 0
            else [], "stderr": result.stderr}


def wait_for(what: str, condition) -> None:
    deadline = time.monotonic() + VERDICT_WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {VERDICT_WAIT} s: {what}"
        time.sleep(0.2)


# -- outlier detection -----------------------------------------------------------


def test_a_failing_endpoint_is_ejected_and_taken_back_after_its_ejection(res):
    # Baseline: strict turns.
    assert by_backend(tally(res, OUTLIER, 30)) == {name: 10 for name in BACKENDS}

    # backend2 answers 503: its third 503 in a row ejects it, and from then
    # on the other two take every request.
    set_apps(res, fail=503, healthy=True, only=("backend2",))
    answers = tally(res, OUTLIER, 60)
    failed = [a for a in answers if a[0] != 200]
    print(f"res-outlier, backend2 answering 503: {dict(by_backend(answers))}")
    assert failed == [(503, "backend2", "")] * 3, failed
    assert by_backend(answers)["backend1"] + by_backend(answers)["backend3"] == 57
    assert gauge(res, "weft_endpoint_ejected", OUTLIER, "backend2") == 1
    assert res.client.metric("weft_outlier_ejections_total", cluster=OUTLIER[0]) == 1

    # backend2 recovers; once its ejection is over it gets its turns again.
    set_apps(res, fail=0, healthy=True, only=("backend2",))
    wait_for("backend2 back in res-outlier", lambda: by_backend(tally(res, OUTLIER, 3))["backend2"] > 0)
    answers = tally(res, OUTLIER, 30)
    assert by_backend(answers) == {name: 10 for name in BACKENDS}, answers
    assert all(status == 200 for status, _, _ in answers)
    assert gauge(res, "weft_endpoint_ejected", OUTLIER, "backend2") == 0


def test_without_outlier_detection_the_failing_endpoint_keeps_its_share(res):
    # The control: the same failure, no policy: a third of the answers are
    # the app's 503s, passed on as they are.
    set_apps(res, fail=503, healthy=True, only=("backend2",))
    answers = tally(res, NONE, 60)
    assert by_backend(answers) == {name: 20 for name in BACKENDS}
    assert [a for a in answers if a[0] != 200] == [(503, "backend2", "")] * 20
    assert res.client.metric("weft_outlier_ejections_total", cluster=NONE[0]) == 0


# -- active health checks and panic mode ---------------------------------------------


def test_an_endpoint_failing_its_health_check_gets_no_traffic_until_it_passes(res):
    assert by_backend(tally(res, HEALTH, 30)) == {name: 10 for name in BACKENDS}

    set_apps(res, fail=0, healthy=False, only=("backend3",))
    wait_for("backend3 unhealthy", lambda: gauge(res, "weft_endpoint_healthy", HEALTH, "backend3") == 0)
    answers = tally(res, HEALTH, 30)
    print(f"res-health, backend3 failing its check: {dict(by_backend(answers))}")
    assert by_backend(answers) == {"backend1": 15, "backend2": 15}
    assert all(status == 200 for status, _, _ in answers)
    assert res.client.metric("weft_health_checks_total", result="failed") >= 2

    set_apps(res, fail=0, healthy=True, only=("backend3",))
    wait_for("backend3 healthy", lambda: gauge(res, "weft_endpoint_healthy", HEALTH, "backend3") == 1)
    assert by_backend(tally(res, HEALTH, 30)) == {name: 10 for name in BACKENDS}


def test_with_every_endpoint_failing_its_check_panic_mode_serves(res):
    panics = res.client.metric("weft_panic_picks_total", cluster=PANIC[0])
    set_apps(res, fail=0, healthy=False)
    wait_for("all unhealthy in res-panic",
             lambda: all(gauge(res, "weft_endpoint_healthy", PANIC, name) == 0 for name in BACKENDS))
    answers = tally(res, PANIC, 30)
    print(f"res-panic, every endpoint failing its check: {dict(by_backend(answers))}")
    # The apps still answer their hellos: panic mode balances over all of
    # them rather than failing every request.
    assert by_backend(answers) == {name: 10 for name in BACKENDS}
    assert all(status == 200 for status, _, _ in answers)
    assert res.client.metric("weft_panic_picks_total", cluster=PANIC[0]) - panics == 30

    set_apps(res, fail=0, healthy=True, only=("backend1",))
    wait_for("backend1 healthy", lambda: gauge(res, "weft_endpoint_healthy", PANIC, "backend1") == 1)
    assert by_backend(tally(res, PANIC, 30)) == {"backend1": 30}, "the one healthy endpoint takes all"
    assert res.client.metric("weft_panic_picks_total", cluster=PANIC[0]) - panics == 30


# -- the keep-alive race -------------------------------------------------------------


@pytest.mark.parametrize("service", [RACE_MESH, RACE_PLAIN], ids=["mesh", "plain"])
def test_a_request_racing_the_apps_idle_close_is_sent_again_not_failed(res, service):
    # Every request after the first finds weft's pooled connection to the
    # app idle for longer than the app keeps it: the app closes it as the
    # request arrives. The node that holds the connection sends the request
    # again on a fresh one; the client sees none of it.
    holder = res.backends["backend1"] if service == RACE_MESH else res.client
    before = holder.metric("weft_keepalive_replays_total")
    answers = tally(res, service, 6, port=RACE_PORT, pause=IDLE_CLOSE + 0.2)
    assert answers == [(200, "racer", "")] * 6, answers
    assert holder.metric("weft_keepalive_replays_total") - before == 5


# -- retries ----------------------------------------------------------------------------


def test_answers_listed_for_retry_go_to_another_endpoint(res):
    set_apps(res, fail=503, healthy=True, only=("backend2",))
    retried = res.client.metric("weft_retries_total", result="retried")
    answers = tally(res, RETRY, 30)
    print(f"res-retry, backend2 answering 503: {dict(by_backend(answers))}")
    assert all(status == 200 for status, _, _ in answers), answers
    assert by_backend(answers)["backend2"] == 0
    # Every turn of backend2 was retried elsewhere (a third of the picks).
    assert res.client.metric("weft_retries_total", result="retried") - retried >= 8
    # The control, without retries: backend2's 503s reach the client.
    assert [a for a in tally(res, NONE, 30) if a[0] != 200] == [(503, "backend2", "")] * 10


def test_an_endpoint_whose_app_dies_under_load_costs_no_request_with_retries(res):
    res.apps["backend2"].stop()
    try:
        retried = res.client.metric("weft_retries_total", result="retried")
        with_retries = load(res, RETRY, 120)
        assert with_retries["ok"], with_retries["stderr"]
        counts = Counter(with_retries["answers"])
        print(f"res-retry, backend2's app dead: {dict(counts)}")
        assert counts["backend2"] == 0 and sum(counts.values()) == 120
        assert res.client.metric("weft_retries_total", result="retried") - retried >= 10
        # Without retries the dead app's turns fail, with weft's reason.
        answers = tally(res, NONE, 30)
        failed = [a for a in answers if a[0] != 200]
        assert failed == [(502, "", "connect_failure")] * 10, failed
    finally:
        start_app(res, "backend2")
    assert by_backend(tally(res, RETRY, 30)) == {name: 10 for name in BACKENDS}


def test_a_try_that_runs_past_per_try_timeout_is_retried_elsewhere(res):
    tell(res, "backend2", "/delay?seconds=1", "delay 1")
    try:
        retried = res.client.metric("weft_retries_total", cluster=PER_TRY[0], result="retried")
        answers = tally(res, PER_TRY, 15)
        print(f"res-pertry, backend2 answering after 1 s: {dict(by_backend(answers))}")
        assert all(status == 200 for status, _, _ in answers), answers
        assert by_backend(answers)["backend2"] == 0
        assert res.client.metric("weft_retries_total", cluster=PER_TRY[0], result="retried") - retried >= 4
    finally:
        tell(res, "backend2", "/delay?seconds=0", "delay 0")


# -- circuit breakers and rate limits ---------------------------------------------------


def test_a_circuit_breaker_bounds_requests_in_flight_and_answers_overflow(res):
    for name in BACKENDS:
        tell(res, name, "/delay?seconds=0.3", "delay 0.3")
    try:
        overflows = res.client.metric("weft_overflows_total", cluster=BREAKER[0], limit="max_requests")
        # Four clients at once, five requests each, every answer 0.3 s
        # late: at most two are in flight, the others are refused at once.
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda _: tally(res, BREAKER, 5), range(4)))
        answers = [a for run in runs for a in run]
        refused = [a for a in answers if a[0] != 200]
        print(f"res-breaker, 4 clients at once, max_requests 2: {len(answers) - len(refused)} answered, "
              f"{len(refused)} overflow")
        assert refused and all(a == (503, "", "overflow") for a in refused), refused
        assert len(answers) - len(refused) >= 2
        assert res.client.metric("weft_overflows_total", cluster=BREAKER[0], limit="max_requests") - overflows \
            == len(refused)
    finally:
        for name in BACKENDS:
            tell(res, name, "/delay?seconds=0", "delay 0")
    # One at a time, nothing is refused.
    assert all(status == 200 for status, _, _ in tally(res, BREAKER, 10))
    assert res.client.metric("weft_circuit_breaker_in_use", cluster=BREAKER[0], limit="max_requests") == 0


def test_a_rate_limit_answers_429_with_retry_after_over_its_rate(res):
    limited = res.client.metric("weft_rate_limited_total", cluster=RATE_LIMIT[0])
    answers = tally(res, RATE_LIMIT, 10)
    print(f"res-ratelimit, 10 at once: {[a[0] for a in answers]}")
    assert [a[0] for a in answers[:3]] == [200] * 3, "the burst goes through"
    refused = [a for a in answers if a[0] != 200]
    assert len(refused) >= 5 and all(a == (429, "", "rate_limited") for a in refused), answers
    assert res.client.metric("weft_rate_limited_total", cluster=RATE_LIMIT[0]) - limited == len(refused)
    res_ = res.client.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "5",
                           f"http://{RATE_LIMIT[0]}:{APP_PORT}/"], check=False, timeout=20)
    headers = res_.stdout.lower()
    assert "429" in headers.splitlines()[0] and "retry-after: 1" in headers, headers
    # weft's own answer to HEAD has no body: on one connection, a body
    # after a HEAD answer would be read as the next response. (At most one
    # of the HEADs can find a token meanwhile.)
    seq = res.client.run([PY, APPS / "http_client.py", "sequence", RATE_LIMIT[0], str(APP_PORT),
                          "HEAD /", "HEAD /", "HEAD /", "GET /", "--timeout", "10"], check=False, timeout=30)
    assert seq.returncode == 0, (seq.stdout, seq.stderr)
    *heads, get = json.loads(seq.stdout)
    assert all(h["body"] == "" for h in heads) and any(h["status"] == 429 for h in heads), heads
    assert get["status"] == 200 or (get["status"] == 429 and "rate_limited" in get["body"]), get
    # A second later there is a token again.
    time.sleep(1.2)
    assert tally(res, RATE_LIMIT, 1)[0][0] == 200


# -- idle timeout ----------------------------------------------------------------------

IDLE_CLIENT = """
import socket, sys, time
quiet = socket.create_connection(("res-idle", 7400), timeout=10)
talking = socket.create_connection(("res-idle", 7400), timeout=10)
for s in (quiet, talking):
    assert s.recv(100).startswith(b"220 "), "banner"
# talking says something every 0.3 s for 3 s; quiet says nothing.
for i in range(10):
    talking.sendall(b"ping\\n")
    assert talking.recv(100) == b"ping\\n", "echo"
    time.sleep(0.3)
quiet.settimeout(5)
closed = quiet.recv(100) == b""
talking.sendall(b"still\\n")
alive = talking.recv(100) == b"still\\n"
print(f"quiet closed: {closed}; talking alive: {alive}")
sys.exit(0 if closed and alive else 1)
"""


def test_a_tcp_session_idle_past_the_clusters_idle_timeout_is_closed(res):
    timeouts = res.client.metric("weft_idle_timeouts_total")
    result = res.client.run([PY, "-c", IDLE_CLIENT], check=False, timeout=60)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert res.client.metric("weft_idle_timeouts_total") - timeouts == 1


IDLE_HTTP_CLIENT = """
import socket, sys
def response(s, until):
    got = b""
    while not until(got):
        part = s.recv(65536)
        if not part:
            break
        got += part
    return got
quiet = socket.create_connection(("res-idle-http", 9390), timeout=10)
streaming = socket.create_connection(("res-idle-http", 9390), timeout=10)
quiet.sendall(b"GET / HTTP/1.1\\r\\nHost: res-idle-http\\r\\n\\r\\n")
first = response(quiet, lambda got: b"hello from" in got)
# The app streams 8 lines 0.4 s apart: 2.8 s in which the client sends
# nothing, past 1.25 x the idle timeout; only weft's writes to it pass.
streaming.sendall(b"GET /slow?chunks=8&delay=0.4 HTTP/1.1\\r\\nHost: res-idle-http\\r\\n\\r\\n")
body = response(streaming, lambda got: got.endswith(b"0\\r\\n\\r\\n"))
streamed = body.count(b"chunk 00") == 8 and body.endswith(b"0\\r\\n\\r\\n")
quiet.settimeout(5)
closed = quiet.recv(100) == b""
print(f"answered: {first[:12]!r}; quiet closed: {closed}; streamed whole: {streamed}")
sys.exit(0 if first.startswith(b"HTTP/1.1 200") and closed and streamed else 1)
"""


def test_a_keep_alive_connection_idle_past_the_timeout_is_closed_not_one_streaming_a_response(res):
    # The HTTP/1 handler notes the connection's bytes itself (no IdleWatch
    # in its pipeline): its reads and its writes both count.
    timeouts = res.client.metric("weft_idle_timeouts_total")
    result = res.client.run([PY, "-c", IDLE_HTTP_CLIENT], check=False, timeout=60)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert res.client.metric("weft_idle_timeouts_total") - timeouts == 1


# -- locality ----------------------------------------------------------------------------


def test_traffic_stays_in_the_zone_and_spills_over_in_proportion_then_fails_over(res):
    answers = by_backend(tally(res, LOCALITY, 60))
    print(f"res-locality, all healthy: {dict(answers)}")
    assert answers["backend3"] == 0 and answers["backend1"] + answers["backend2"] == 60, answers

    # One of zone a's two endpoints fails its check: zone a keeps
    # 1/2 x 1.4 = 70% (on backend2), 30% spills over to zone b.
    set_apps(res, fail=0, healthy=False, only=("backend1",))
    wait_for("backend1 unhealthy", lambda: gauge(res, "weft_endpoint_healthy", LOCALITY, "backend1") == 0)
    answers = by_backend(tally(res, LOCALITY, 300))
    print(f"res-locality, backend1 failing: {dict(answers)}")
    assert answers["backend1"] == 0
    assert 60 <= answers["backend3"] <= 120, answers  # 30% of 300 is 90

    # Both fail: everything goes to zone b.
    set_apps(res, fail=0, healthy=False, only=("backend2",))
    wait_for("backend2 unhealthy", lambda: gauge(res, "weft_endpoint_healthy", LOCALITY, "backend2") == 0)
    assert by_backend(tally(res, LOCALITY, 30)) == {"backend3": 30}

    # Zone a recovers: the traffic comes back.
    set_apps(res, fail=0, healthy=True, only=("backend1", "backend2"))
    wait_for("zone a healthy", lambda: all(gauge(res, "weft_endpoint_healthy", LOCALITY, name) == 1
                                           for name in ("backend1", "backend2")))
    assert by_backend(tally(res, LOCALITY, 30))["backend3"] == 0
