"""The metrics page after mixed traffic, read with Prometheus' own text
parser (prometheus-client), counted per cluster (SPEC §6).

A client pod and a backend pod, each with a weft node. The backend runs
mesh_app.py (:9390), banner_app.py (:7400, TCP) and grpc_app.py (:50051).
The client's clusters, each its own VIP:

    198.19.0.120:9390    m-http    mesh: true, HTTP/1.1 app
    198.19.0.121:9390    m-plain   mesh: false (plain HTTP/1.1 pool)
    198.19.0.122:9390    m-empty   discovery: file, an empty list: weft answers 503 no_healthy_endpoint
    198.19.0.123:7400    m-tcp     protocol: tcp, mesh: true
    198.19.0.124:50051   m-grpc    mesh: true, gRPC (HTTP/2 app)

Known counts go to each; the page must parse, and say exactly those counts
under the right labels, with a histogram whose buckets add up.
"""

from __future__ import annotations

import json

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

APP, TCP, GRPC = 9390, 7400, 50051
SERVICES = {"m-http": ("198.19.0.120", APP), "m-plain": ("198.19.0.121", APP), "m-empty": ("198.19.0.122", APP),
            "m-tcp": ("198.19.0.123", TCP), "m-grpc": ("198.19.0.124", GRPC)}
COUNTS = {"m-http": 10, "m-plain": 7, "m-empty": 3, "m-tcp": 2, "m-grpc": 4}


@pytest.fixture(scope="module")
def parsed(root, weft_bin):
    parser = pytest.importorskip("prometheus_client.parser")
    try:
        __import__("grpc")
    except ImportError:
        pytest.skip("python package grpc not installed (Tests/e2e/requirements.txt)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        client = lab.add_pod("client", hosts={name: vip for name, (vip, _) in SERVICES.items()})
        backend = lab.add_pod("backend")
        for cmd, port in (([PY, APPS / "mesh_app.py", "--port", APP, "--name", "backend"], APP),
                          ([PY, APPS / "banner_app.py", "--port", TCP], TCP),
                          ([PY, APPS / "grpc_app.py", "--port", GRPC, "--name", "backend"], GRPC)):
            backend.wait_port(port, proc=backend.spawn(cmd, name=f"app_{port}"))
        for pod in (client, backend):
            pod.init()
        backend.start_weft({"node": {"id": "backend"}})
        empty = lab.workdir / "m-empty-endpoints.yaml"
        empty.write_text("[]\n")
        empty.chmod(0o644)
        clusters = []
        for name, (vip, port) in SERVICES.items():
            c = {"name": name, "addresses": [f"{vip}:{port}"], "hostnames": [name], "mesh": name != "m-plain"}
            if name == "m-empty":
                c.update({"discovery": "file", "file": str(empty)})
            else:
                c["endpoints"] = [{"address": f"{backend.ip4}:{port}"}]
            if name == "m-tcp":
                c["protocol"] = "tcp"
            clusters.append(c)
        client.start_weft({"node": {"id": "client"}, "clusters": clusters})

        def tally(name: str, count: int) -> list:
            res = client.run([PY, APPS / "balance_client.py", "http-tally", name, str(APP), "--count", str(count),
                              "--timeout", "10"], check=True, timeout=60)
            return json.loads(res.stdout)["answers"]

        assert [a[0] for a in tally("m-http", COUNTS["m-http"])] == [200] * COUNTS["m-http"]
        assert [a[0] for a in tally("m-plain", COUNTS["m-plain"])] == [200] * COUNTS["m-plain"]
        assert [a[:3:2] for a in tally("m-empty", COUNTS["m-empty"])] == [[503, "no_healthy_endpoint"]] * COUNTS["m-empty"]
        client.run([PY, APPS / "balance_client.py", "tcp-new", "m-tcp", str(TCP), "--count", str(COUNTS["m-tcp"])],
                   check=True, timeout=60)
        res = client.run([PY, APPS / "grpc_client.py", f"m-grpc:{GRPC}", "--tally", str(COUNTS["m-grpc"])],
                         check=True, timeout=60, env={"GRPC_DNS_RESOLVER": "native"})
        assert [a[0] for a in json.loads(res.stdout)["answers"]] == ["OK"] * COUNTS["m-grpc"]
        # Sessions are counted when they end: the TCP client has closed.
        pages = {pod.name: pod.metrics_text() for pod in (client, backend)}
        yield {name: list(parser.text_string_to_metric_families(text)) for name, text in pages.items()}


def samples(families, metric: str, **labels: str) -> list:
    found = []
    for family in families:
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                found.append(sample)
    return found


def value(families, metric: str, **labels: str) -> float:
    return sum(s.value for s in samples(families, metric, **labels))


def test_the_page_parses_and_every_family_is_weft_s(parsed):
    for page in parsed.values():
        names = [family.name for family in page]
        assert len(names) == len(set(names)), "a family appears twice"
        assert all(name.startswith("weft_") for name in names), names
        assert "weft_request_duration_seconds" in names


def test_requests_are_counted_per_cluster_status_class_and_reason(parsed):
    client = parsed["client"]
    for name in ("m-http", "m-plain", "m-grpc"):
        assert value(client, "weft_requests_total", direction="outbound", cluster=name,
                     status_class="2xx", reason="none") == COUNTS[name], name
    assert value(client, "weft_requests_total", direction="outbound", cluster="m-empty", status_class="5xx",
                 reason="no_healthy_endpoint") == COUNTS["m-empty"]
    assert value(client, "weft_requests_total", direction="outbound") == \
        sum(COUNTS[n] for n in ("m-http", "m-plain", "m-grpc", "m-empty"))
    # On the backend node the meshed requests arrive inbound for the local app.
    backend = parsed["backend"]
    assert value(backend, "weft_requests_total", direction="inbound", status_class="2xx") == \
        COUNTS["m-http"] + COUNTS["m-grpc"]


def test_the_latency_histogram_adds_up(parsed):
    client = parsed["client"]
    labels = {"direction": "outbound", "cluster": "m-http", "status_class": "2xx", "reason": "none"}
    buckets = samples(client, "weft_request_duration_seconds_bucket", **labels)
    counts = [s.value for s in sorted(buckets, key=lambda s: float(s.labels["le"]))]
    assert counts == sorted(counts), "buckets are not cumulative"
    assert counts[-1] == value(client, "weft_request_duration_seconds_count", **labels) == COUNTS["m-http"]
    assert buckets[-1].labels["le"] == "+Inf"
    assert 0 < value(client, "weft_request_duration_seconds_sum", **labels) < 10 * COUNTS["m-http"]


def test_tcp_sessions_and_their_bytes_by_cluster(parsed):
    client = parsed["client"]
    assert value(client, "weft_tcp_sessions_total", direction="outbound", cluster="m-tcp") == COUNTS["m-tcp"]
    # Each session: `ping\n` out, the banner and the echo back.
    assert value(client, "weft_tcp_session_bytes_total", direction="outbound", cluster="m-tcp", flow="in") == \
        5 * COUNTS["m-tcp"]
    assert value(client, "weft_tcp_session_bytes_total", direction="outbound", cluster="m-tcp", flow="out") > 0


def test_label_values_come_from_configuration_not_requests(parsed):
    allowed_clusters = set(SERVICES) | {"none"}
    for page in parsed.values():
        for family in page:
            for sample in family.samples:
                if "cluster" in sample.labels:
                    assert sample.labels["cluster"] in allowed_clusters, sample
