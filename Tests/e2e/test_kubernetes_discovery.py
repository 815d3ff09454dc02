"""`discovery: kubernetes` (SPEC §5, §7) end to end with the real binary.

No Kubernetes API server can run here: apps/kube_api.py is one written for
the tests, speaking the protocol for EndpointSlices as kube-apiserver does
(paged lists with continue tokens, chunked watch streams of JSON lines,
resource versions, bookmarks, 410 for versions older than its compaction,
bearer tokens, TLS). It runs in an `api` pod with a certificate for that
pod's address from a lab CA; the client pod's weft reaches it through
`kubernetes_api` with the token and CA files. The test changes the slices
through the same API (POST, PUT, DELETE), as the EndpointSlice controller
would, and watches which of three unmodified apps answer.

Each wait is bounded; the assertions are about which apps answer and what
the node asked the server, never about how fast.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology
from test_discovery import BACKENDS, KEEPING, PORT, WAIT, backends, tail, updated_to, wait_for, who_answers  # noqa: F401

pytestmark = pytest.mark.root

VIP = "198.19.0.82"
API_PORT = 6443
NAMESPACE = "shop"
SERVICE = "backend"


def endpoint_slice(name: str, endpoints: list[tuple[str, dict]], port: int = PORT, service: str = SERVICE,
                   address_type: str = "IPv4") -> dict:
    """An EndpointSlice as the controller writes it: `endpoints` are
    (address, conditions) pairs, the port named `http`."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "endpoints": [{"addresses": [address], "conditions": conditions, "zone": "zone-a"}
                      for address, conditions in endpoints],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


class APIServer:
    """apps/kube_api.py in its own pod, over TLS, and a way to call it."""

    def __init__(self, lab: weftlab.Lab, extra: list[str] | None = None):
        self.pod = lab.add_pod("api")
        self.tls = lab.server_tls("kubeapi", [f"IP:{self.pod.ip4}"])
        self.token_file = lab.workdir / "kube-token"
        self.set_token("token-one")
        self.extra = extra or []
        self.proc: weftlab.Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"https://{self.pod.ip4}:{API_PORT}"

    def set_token(self, token: str) -> None:
        """The token file both sides read (the node re-reads it per request)."""
        tmp = self.token_file.with_suffix(".new")
        tmp.write_text(token + "\n")
        tmp.chmod(0o644)
        tmp.replace(self.token_file)

    def start(self, *args: str) -> None:
        self.starts += 1
        self.proc = self.pod.spawn([
            PY, APPS / "kube_api.py", "--listen", self.pod.ip4, "--port", API_PORT,
            "--cert", self.tls["cert"], "--key", self.tls["key"], "--token-file", self.token_file,
            *self.extra, *args,
        ], name=f"kube-api-{self.starts}")
        self.pod.wait_port(API_PORT, proc=self.proc)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop(timeout=5)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        args = ["-X", method, "--cacert", self.tls["ca"], "-H", f"Authorization: Bearer {self.token_file.read_text().strip()}",
                "-H", "Content-Type: application/json", "-w", "\n%{http_code}"]
        if body is not None:
            args += ["--data-binary", json.dumps(body)]
        res = self.pod.curl(self.url + path, *args, timeout=10)
        text, _, code = res.stdout.rpartition("\n")
        assert res.returncode == 0 and code.startswith("2"), f"{method} {path}: {code} {text} {res.stderr}"
        return json.loads(text)

    def slices_path(self, name: str = "") -> str:
        return f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices" + (f"/{name}" if name else "")

    def create(self, obj: dict) -> None:
        self.call("POST", self.slices_path(), obj)

    def replace(self, obj: dict) -> None:
        self.call("PUT", self.slices_path(obj["metadata"]["name"]), obj)

    def delete(self, name: str) -> None:
        self.call("DELETE", self.slices_path(name))

    def requests(self) -> list[tuple[str, str]]:
        """What weft asked for: (kind, query) of each list and watch request."""
        seen = []
        for method, path in self.call("GET", "/_test/requests")["requests"]:
            if method == "GET" and "/endpointslices?" in path:
                query = path.split("?", 1)[1]
                seen.append(("watch" if "watch=1" in query else "list", query))
        return seen


def client_config(api: APIServer, **kubernetes_api) -> dict:
    return {
        "node": {"id": "client"},
        "kubernetes_api": {"server": api.url, "token_file": str(api.token_file), "ca_file": api.tls["ca"],
                           **kubernetes_api},
        "clusters": [{
            "name": "kube", "addresses": [f"{VIP}:{PORT}"], "hostnames": ["kube"],
            "mesh": False, "protocol": "http1", "lb": "round_robin",
            "discovery": "kubernetes",
            "kubernetes": {"service": SERVICE, "namespace": NAMESPACE, "port": "http"},
        }],
    }


def wait_requests(api: APIServer, predicate, what: str, timeout: float = WAIT) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        seen = api.requests()
        if predicate(seen):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"the node never {what}; it asked:\n" + "\n".join(f"{k} {q}" for k, q in seen[-12:]))
        time.sleep(0.2)


def wait_log(client: weftlab.Pod, pattern: str, after: int = 0, timeout: float = WAIT) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in client.weft_log().splitlines() if re.search(pattern, line)]
        if len(lines) > after:
            return lines
        if time.monotonic() > deadline:
            pytest.fail(f"no log line matching {pattern!r}\n{tail(client.weft_log())}")
        time.sleep(0.2)


def test_kubernetes_discovery_follows_endpointslices_through_watches_410s_and_outages(lab, backends):
    one, two, three = (backends[n] for n in BACKENDS)
    # Pages of one slice, so a list is three requests; bookmarks every
    # second; watches end after 4 s (their timeoutSeconds is capped).
    api = APIServer(lab, ["--max-page", "1", "--bookmark-every", "1", "--max-watch", "4"])
    api.start()
    api.create(endpoint_slice("backend-a", [(one.ip4, READY)]))
    api.create(endpoint_slice("backend-b", [(two.ip4, NOT_READY)]))
    api.create(endpoint_slice("other-svc", [(three.ip4, READY)], service="other"))
    client = lab.add_pod("client", hosts={"kube": VIP})
    client.init()
    client.start_weft(client_config(api))

    # 1. The ready pod of the Service, nothing from the not-ready one or
    #    from another Service's slice; the list came in pages.
    wait_for(client, "kube", {"one"})
    seen = wait_requests(api, lambda s: any(k == "watch" for k, _ in s), "watched")
    lists = [q for k, q in seen if k == "list"]
    assert len(lists) >= 2 and "continue=" in lists[1], lists
    assert all("labelSelector=kubernetes.io%2Fservice-name%3Dbackend" in q for _, q in seen), seen
    assert updated_to(client, "kube", {f"{one.ip4}:{PORT}"})

    # 2. Watch events: `two` becomes ready, a third slice adds `three`
    #    (IPv6), `one` starts terminating (ready pods remain: it leaves).
    api.replace(endpoint_slice("backend-b", [(two.ip4, READY)]))
    wait_for(client, "kube", {"one", "two"})
    api.create(endpoint_slice("backend-c", [(three.ip6, READY)], address_type="IPv6"))
    wait_for(client, "kube", {"one", "two", "three"})
    api.replace(endpoint_slice("backend-a", [(one.ip4, TERMINATING)]))
    wait_for(client, "kube", {"two", "three"})
    api.delete("backend-c")
    wait_for(client, "kube", {"two"})
    lists_so_far = sum(1 for k, _ in api.requests() if k == "list")

    # 3. Watches end (timeoutSeconds) and are cut mid-stream: each is
    #    resumed from the last version seen (bookmarks move it), never by
    #    listing again. The server is unavailable (503) for a while: a
    #    change made then arrives through the resumed watch.
    wait_requests(api, lambda s: sum(1 for k, _ in s if k == "watch") >= 3, "re-watched after a watch ended")
    api.call("POST", "/_test/hold")
    api.replace(endpoint_slice("backend-a", [(one.ip4, READY)]))
    wait_log(client, r"kube.*watch with 503")
    api.call("POST", "/_test/release")
    wait_for(client, "kube", {"one", "two"})
    seen = api.requests()
    assert sum(1 for k, _ in seen if k == "list") == lists_so_far, "a resumed watch does not list again"
    resumed = [q for k, q in seen if k == "watch"]
    assert all("resourceVersion=" in q and "allowWatchBookmarks=true" in q for q in resumed), resumed
    versions = [int(re.search(r"resourceVersion=(\d+)", q).group(1)) for q in resumed]
    assert versions == sorted(versions) and versions[-1] > versions[0], versions

    # 4. While the node is away, a change is made and the history
    #    compacted past it: the resume gets 410 (an ERROR event), and the
    #    node lists again from scratch, seeing the change.
    api.call("POST", "/_test/hold")
    api.replace(endpoint_slice("backend-b", [(two.ip4, NOT_READY)]))
    api.call("POST", "/_test/compact")
    api.call("POST", "/_test/release")
    wait_for(client, "kube", {"one"})
    relisted = [q for k, q in api.requests() if k == "list"]
    assert len(relisted) > lists_so_far, "a 410 makes the node list again"

    # 5. The API server goes away: the last endpoints stay and the node
    #    says why (and counts it); traffic still flows to them.
    keeping_before = len([l for l in client.weft_log().splitlines() if KEEPING in l])
    problems_before = client.metric("weft_endpoint_discovery_problems_total")
    api.stop()
    lines = wait_log(client, re.escape(KEEPING), after=keeping_before)
    assert "kube" in lines[-1] and "backend" in lines[-1], lines[-1]
    assert set(who_answers(client, "kube", 6)) == {"one"}
    assert client.metric("weft_endpoint_discovery_problems_total") > problems_before

    # 6. A restored server (other pods, versions far ahead, no history):
    #    the node's old version is too old there (HTTP 410 this time), it
    #    lists again and follows.
    state = lab.workdir / "kube-state.json"
    state.write_text(json.dumps({NAMESPACE: [endpoint_slice("backend-a", [(three.ip4, READY)]),
                                             endpoint_slice("backend-b", [(two.ip4, READY)])]}))
    state.chmod(0o644)
    api.start("--state", str(state), "--first-version", "50000", "--gone-as-status")
    wait_for(client, "kube", {"two", "three"}, timeout=60)  # the backoff may have grown to 30 s
    assert any(k == "list" for k, _ in api.requests())


def test_kubernetes_discovery_refuses_a_wrong_server_and_follows_a_rotated_token(lab, backends):
    one = backends["one"]
    api = APIServer(lab)
    api.start()
    api.create(endpoint_slice("backend-a", [(one.ip4, READY)]))
    client = lab.add_pod("client", hosts={"kube": VIP})
    client.init()

    # A CA the server's certificate does not chain to: refused by TLS, no
    # endpoints, and the node says why.
    other_ca = lab.server_tls("elsewhere", ["IP:198.18.250.250"], ca_name="other-ca")["ca"]
    client.start_weft(client_config(api, ca_file=other_ca))
    line = wait_log(client, r"kube.*TLS: untrusted")[-1]
    assert "certificate verify failed" in line or "unable to get local issuer" in line, line
    assert not [k for k, _ in api.requests()], "nothing reached the API"
    assert "one" not in who_answers(client, "kube", 2)
    client.stop_weft()

    # The right CA but another name: the certificate is for the pod's
    # address, the node dials it by a name it does not carry.
    lab.write_hosts(client, {"kubeapi.test": api.pod.ip4})
    config = client_config(api)
    config["kubernetes_api"]["server"] = f"https://kubeapi.test:{API_PORT}"
    client.start_weft(config)
    wait_log(client, r"kube.*TLS: bad_identity")
    assert "one" not in who_answers(client, "kube", 2)
    client.stop_weft()

    # A token the server does not take: 401, said as such; the token file
    # rotated to the right one is read for the next request, and traffic
    # flows without a restart.
    api.set_token("token-two")
    wrong = lab.workdir / "client-token"
    wrong.write_text("token-one\n")
    wrong.chmod(0o644)
    client.start_weft(client_config(api, token_file=str(wrong)))
    wait_log(client, r"kube.*401 \(the token was refused\)")
    assert "one" not in who_answers(client, "kube", 2)
    tmp = wrong.with_suffix(".new")
    tmp.write_text("token-two\n")
    tmp.chmod(0o644)
    tmp.replace(wrong)
    wait_for(client, "kube", {"one"}, timeout=60)
