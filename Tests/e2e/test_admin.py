"""The admin API on 127.0.0.1:15000 (SPEC §6), end to end.

One client pod and three backend pods, each with its own weft node and
mesh_app.py on :9390 (`hello from <pod>`, `/delay?seconds=` over its pod's
loopback). The client node knows `mesh: true`, round-robin clusters over
the three, each reached by its VIP:

    198.19.0.100:9390    admin-svc      circuit breakers, endpoints with a locality
    198.19.0.101:9390    admin-outlier  outlier detection: 3 5xx in a row eject for 2 s
    198.19.0.102:9390    admin-v2       backend3 only; rule 0 sends admin-svc's /v2 here

and allow_any for everything else.

What is asserted is what the admin API says after traffic whose spread is
known exactly (requests one after another on one keep-alive connection),
and what its POST routes do to the running node.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

BACKENDS = ("backend1", "backend2", "backend3")
APP_PORT = 9390
ADMIN = "http://127.0.0.1:15000"
SERVICE, VIP = "admin-svc", "198.19.0.100"
OUTLIER, OUTLIER_VIP = "admin-outlier", "198.19.0.101"
V2, V2_VIP = "admin-v2", "198.19.0.102"
ZONES = {"backend1": "a", "backend2": "a", "backend3": "b"}


def client_config(backends: dict[str, weftlab.Pod], request_timeout: str = "15s") -> dict:
    def endpoints(names=BACKENDS):
        return [{"address": f"{backends[name].ip4}:{APP_PORT}", "locality": {"region": "lab", "zone": ZONES[name]}}
                for name in names]
    return {
        "node": {"id": "client"},  # no locality of its own: every zone is as near
        "outbound_policy": "allow_any",
        "clusters": [
            {"name": SERVICE, "addresses": [f"{VIP}:{APP_PORT}"], "hostnames": [SERVICE], "mesh": True,
             "lb": "round_robin", "timeouts": {"request": request_timeout},
             "circuit_breakers": {"max_requests": 100}, "endpoints": endpoints()},
            {"name": OUTLIER, "addresses": [f"{OUTLIER_VIP}:{APP_PORT}"], "hostnames": [OUTLIER], "mesh": True,
             "lb": "round_robin", "endpoints": endpoints(),
             "outlier_detection": {"consecutive_5xx": 3, "consecutive_gateway_errors": 3, "base_ejection": "2s",
                                   "max_ejection_percent": 50}},
            {"name": V2, "addresses": [f"{V2_VIP}:{APP_PORT}"], "hostnames": [V2], "mesh": True,
             "endpoints": endpoints(("backend3",))},
        ],
        "routes": [{"match": {"host": SERVICE, "path_prefix": "/v2"}, "clusters": [{"name": V2, "weight": 1}],
                    "timeout": "2s"}],
    }


@pytest.fixture(scope="module")
def lab(root, weft_bin):
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client", hosts={SERVICE: VIP, OUTLIER: OUTLIER_VIP, V2: V2_VIP})
        backends = {name: lab.add_pod(name) for name in BACKENDS}
        for pod in backends.values():
            proc = pod.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", pod.name], name="mesh_app")
            pod.wait_port(APP_PORT, proc=proc)
        for pod in (client, *backends.values()):
            pod.init()
        for n, pod in enumerate(backends.values(), start=1):
            pod.start_weft({"node": {"id": f"backend-{n}"}})
        lab.client, lab.backends = client, backends
        yield lab


@pytest.fixture
def client(lab):
    """A client node started for the test (some tests stop it)."""
    pod = lab.client
    if pod.weft is not None and pod.weft.alive():
        pod.stop_weft()
    pod.weft = None
    pod.start_weft(client_config(lab.backends))
    yield pod
    if pod.weft is not None and pod.weft.alive():
        pod.stop_weft()


def admin_json(pod: weftlab.Pod, path: str) -> dict:
    code, body = pod.http_get(ADMIN + path)
    assert code == 200, (path, code, body)
    return json.loads(body)


def post(pod: weftlab.Pod, path: str) -> tuple[int, str]:
    res = pod.run(["curl", "-s", "--noproxy", "*", "--max-time", "5", "-X", "POST", "-w", "\n%{http_code}",
                   ADMIN + path], check=False, timeout=20)
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body


def tally(pod: weftlab.Pod, count: int, service: str = SERVICE) -> list[str]:
    result = pod.run([PY, APPS / "balance_client.py", "http-tally", service, str(APP_PORT), "--count", str(count),
                      "--timeout", "10"], check=False, timeout=count * 10 + 30)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return [name for _, name, _ in json.loads(result.stdout)["answers"]]


def test_clusters_shows_each_endpoint_with_its_state_and_counts(lab, client):
    answered = tally(client, 30)
    assert sorted(set(answered)) == list(BACKENDS)
    clusters = {c["name"]: c for c in admin_json(client, "/clusters")["clusters"]}
    assert set(clusters) == {SERVICE, OUTLIER, V2}
    svc = clusters[SERVICE]
    assert (svc["protocol"], svc["mesh"], svc["lb"], svc["discovery"]) == ("auto", True, "round_robin", "static")
    assert svc["circuit_breakers_in_use"]["max_requests"] == 0
    by_address = {e["address"]: e for e in svc["endpoints"]}
    for name, pod in lab.backends.items():
        e = by_address[f"{pod.ip4}:{APP_PORT}"]
        assert e["requests"] == answered.count(name) == 10, e
        assert (e["errors"], e["in_flight"], e["healthy"], e["ejected"]) == (0, 0, True, False), e
        assert (e["region"], e["zone"], e["weight"], e["mesh"]) == ("lab", ZONES[name], 1, True), e


def test_config_dump_is_the_configuration_in_force_with_its_version(lab, client):
    dump = admin_json(client, "/config_dump")
    assert dump["version"] == 1
    cluster = dump["config"]["clusters"][0]
    assert cluster["name"] == SERVICE
    # Defaults the file did not write are there too.
    assert cluster["timeouts"] == {"connect": "5s", "request": "15s", "idle": "1h"}
    assert dump["config"]["listeners"]["admin"] == {"address": "127.0.0.1", "port": 15000}
    # A reload that changes something is the next version.
    client.weft_config_path.write_text(weftlab.to_yaml(client_config(lab.backends, request_timeout="7s")))
    os.killpg(client.weft.popen.pid, signal.SIGHUP)
    deadline = time.monotonic() + 15
    while (dump := admin_json(client, "/config_dump"))["version"] != 2:
        assert time.monotonic() < deadline, "the reload did not show in /config_dump"
        time.sleep(0.2)
    assert dump["config"]["clusters"][0]["timeouts"]["request"] == "7s"


def test_listeners_lists_what_each_listener_is_bound_to(client):
    listeners = {entry["name"]: entry["addresses"] for entry in admin_json(client, "/listeners")["listeners"]}
    assert "127.0.0.1:15001" in listeners["outbound"]
    assert "0.0.0.0:15008" in listeners["mesh"]
    assert "0.0.0.0:15020" in listeners["health"]
    assert listeners["admin"] == ["127.0.0.1:15000"]


def test_the_admin_api_answers_on_loopback_only(lab, client):
    # From another pod the admin port is not there; the health port is.
    backend = lab.backends["backend1"]
    assert backend.http_get(f"http://{client.ip4}:15000/clusters", timeout=2)[0] == 0
    assert backend.http_get(f"http://{client.ip4}:15020/ready", timeout=2)[0] == 200


def test_logging_level_is_read_and_set_while_running(client):
    assert client.http_get(ADMIN + "/logging") == (200, "level=debug\n")
    assert post(client, "/logging?level=warning") == (200, "level=warning\n")
    assert client.http_get(ADMIN + "/logging") == (200, "level=warning\n")
    code, body = post(client, "/logging?level=loud")
    assert code == 400 and "level must be one of" in body
    assert client.http_get(ADMIN + "/logging") == (200, "level=warning\n")
    # A route that changes something wants POST.
    assert client.http_get(ADMIN + "/drain")[0] == 405
    assert client.http_get(ADMIN + "/ready")[0] == 200


def test_drain_fails_ready_while_the_requests_in_flight_finish(lab, client):
    for pod in lab.backends.values():
        assert pod.http_get(f"http://127.0.0.1:{APP_PORT}/delay?seconds=2")[0] == 200
    try:
        with ThreadPoolExecutor(3) as pool:
            # Three requests in flight, each answered after 2 s.
            futures = [pool.submit(client.curl, f"http://{SERVICE}:{APP_PORT}/", "-w", "\n%{http_code}")
                       for _ in range(3)]
            time.sleep(0.8)
            assert post(client, "/drain") == (200, "draining\n")
            assert client.http_get(ADMIN + "/ready")[0] == 503
            assert client.http_get("http://127.0.0.1:15020/ready")[0] == 503
            answers = [f.result(timeout=30).stdout for f in futures]
        assert [a.rsplit("\n", 1)[-1] for a in answers] == ["200"] * 3, answers
        assert all(a.startswith("hello from backend") for a in answers), answers
        # Drain is not exit: the node is still up and says it is draining.
        assert client.weft.alive()
        assert client.http_get(ADMIN + "/ready")[0] == 503
    finally:
        for pod in lab.backends.values():
            pod.http_get(f"http://127.0.0.1:{APP_PORT}/delay?seconds=0")


def test_quitquitquit_drains_and_exits(client):
    assert post(client, "/quitquitquit") == (200, "draining, then exiting\n")
    deadline = time.monotonic() + 25
    while client.weft.alive():
        assert time.monotonic() < deadline, "weft still running after /quitquitquit"
        time.sleep(0.2)
    assert client.weft.popen.poll() == 0


# -- /explain and weft explain ---------------------------------------------------------


def explain(pod: weftlab.Pod, dst: str, **query: str) -> dict:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return admin_json(pod, f"/explain?dst={dst}{extra}")


def test_explain_a_vip_names_the_cluster_its_endpoints_and_policies(lab, client):
    answer = explain(client, f"{VIP}:{APP_PORT}")
    assert answer["verdict"] == "cluster" and answer["config_version"] == 1
    assert answer["cluster"]["name"] == SERVICE
    assert answer["cluster"]["matched_by"] == f"address {VIP}:{APP_PORT}"
    assert [(e["address"], e["gets_traffic"]) for e in answer["endpoints"]] == \
        [(f"{lab.backends[name].ip4}:{APP_PORT}", True) for name in BACKENDS]
    policies = {p["name"]: p["value"] for p in answer["policies"]}
    assert policies["timeouts"] == "connect 5s, request 15s, idle 1h"
    assert policies["circuit_breakers"].startswith("max_connections 0/1024, max_pending 0/1024, max_requests 0/100")
    assert "3 of 3 endpoints get traffic" in answer["summary"][-1]


def test_explain_a_request_shows_the_rule_that_matched_and_those_that_did_not(lab, client):
    v2 = explain(client, f"{VIP}:{APP_PORT}", host=SERVICE, path="/v2/items")
    assert (v2["rule"], v2["cluster"]["name"], v2["route_timeout"]) == (0, V2, "2s")
    assert v2["route_clusters"] == [{"name": V2, "weight": 1}]
    assert [e["address"] for e in v2["endpoints"]] == [f"{lab.backends['backend3'].ip4}:{APP_PORT}"]
    other = explain(client, f"{VIP}:{APP_PORT}", host=SERVICE, path="/v1")
    assert other["rule"] is None and other["cluster"]["name"] == SERVICE
    assert other["rules_not_matched"] == [{"rule": 0, "why": "path does not start with /v2"}]


def test_explain_an_endpoint_called_directly_keeps_it(lab, client):
    address = f"{lab.backends['backend2'].ip4}:{APP_PORT}"
    answer = explain(client, address)
    assert answer["cluster"]["name"] == SERVICE
    assert answer["cluster"]["matched_by"].startswith("endpoint")
    assert [e["address"] for e in answer["endpoints"]] == [address]


def test_explain_a_passthrough_and_a_refused_destination(lab, client):
    passthrough = explain(client, "198.18.0.250:8080")
    assert passthrough["verdict"] == "passthrough" and passthrough["cluster"] is None
    # The node's own listener: relaying would loop.
    refused = explain(client, f"{client.ip4}:15008")
    assert (refused["verdict"], refused["refusal"]) == ("refused", "loop")
    assert "own listeners" in refused["summary"][-1]
    assert client.http_get(ADMIN + "/explain?dst=nowhere")[0] == 400


def test_explain_shows_an_ejected_endpoint_and_why_then_its_return(lab, client):
    failing = lab.backends["backend2"]
    address = f"{failing.ip4}:{APP_PORT}"
    assert failing.http_get(f"http://127.0.0.1:{APP_PORT}/fail?status=503")[0] == 200
    try:
        # backend2 answers 503 on each of its turns: ejected after three.
        tally(client, 12, service=OUTLIER)
        answer = explain(client, f"{OUTLIER_VIP}:{APP_PORT}")
        verdicts = {e["address"]: e for e in answer["endpoints"]}
        assert verdicts[address]["usable"] is False and verdicts[address]["gets_traffic"] is False
        assert verdicts[address]["why"] == "ejected by outlier detection (ejected 1 time)"
        assert sum(e["gets_traffic"] for e in answer["endpoints"]) == 2
        assert f"not {address}: ejected" in answer["summary"][-1]
        # The same from the command line, for a person.
        text = client.run(client.weft_cmd("explain", f"{OUTLIER_VIP}:{APP_PORT}"), check=True).stdout
        print(text)
        assert f"cluster {OUTLIER}, matched by address {OUTLIER_VIP}:{APP_PORT}" in text
        assert f"\n  no       {address}  lab/a  ejected by outlier detection (ejected 1 time)\n" in text
    finally:
        failing.http_get(f"http://127.0.0.1:{APP_PORT}/fail?status=0")
    # Once its 2 s are over and it answers again, it is back.
    deadline = time.monotonic() + 15
    while True:
        tally(client, 3, service=OUTLIER)
        verdicts = {e["address"]: e for e in explain(client, f"{OUTLIER_VIP}:{APP_PORT}")["endpoints"]}
        if verdicts[address]["gets_traffic"]:
            break
        assert time.monotonic() < deadline, "the ejected endpoint did not come back"
        time.sleep(0.5)


def test_weft_explain_prints_json_with_json_and_refuses_a_bad_destination(client):
    out = client.run(client.weft_cmd("explain", f"{VIP}:{APP_PORT}", "--host", SERVICE, "--path", "/v2", "--json"),
                     check=True).stdout
    assert json.loads(out)["rule"] == 0
    bad = client.run(client.weft_cmd("explain", "not-an-address"), check=False)
    assert bad.returncode != 0 and "is not IP:PORT" in bad.stderr
