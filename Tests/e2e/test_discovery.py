"""Endpoint discovery (SPEC §5 "Discovery"), end to end with the real binary.

Three backend pods, `one`, `two` and `three`, each run an unmodified app
(mesh_app.py, answering `hello from <pod>`) on the same port; no weft runs
there. The client pod runs weft with one `mesh: false`, `protocol: http1`
cluster at a VIP, whose endpoints come from discovery:

* `discovery: dns` (`dns_refresh: 1s`) with the one endpoint `svc.test:9400`.
  The name is answered by a real DNS server, dnsmasq in a `dns` pod,
  listening only on that pod's address and serving A and AAAA records from a
  hosts file it re-reads on SIGHUP. The client pod's resolv.conf names that
  server and nothing else, and its /etc/hosts does not know `svc.test`.
  The records move from `one` to `one`, `two` (A) and `three` (AAAA only),
  then to `two` and `three`; traffic follows within a few seconds each time.
  With dnsmasq stopped the last answer stays (and the node says so); a new
  server with new records is followed again.
* `discovery: file` with a world-readable YAML list in the lab's work dir,
  replaced by rename as an operator's tool would: traffic follows a longer
  list; an invalid file keeps the last list (logged); a valid one after it
  (an IPv6 endpoint) is followed again.

`weft_endpoint_updates_total` rises with each change and stays put when an
answer could not be had. Every wait is bounded; the assertions are about
which apps answer, never about how fast.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

PORT = 9400
DNS_VIP = "198.19.0.80"
FILE_VIP = "198.19.0.81"
NAME = "svc.test"
BACKENDS = ("one", "two", "three")
WAIT = 15.0  # seconds: the bound on "within a few seconds"
KEEPING = "endpoint discovery: keeping the last endpoints"


@pytest.fixture
def backends(lab) -> dict[str, weftlab.Pod]:
    """Three pods, each with an app named after the pod on PORT."""
    pods = {}
    for name in BACKENDS:
        pod = lab.add_pod(name)
        proc = pod.spawn([PY, APPS / "mesh_app.py", "--port", PORT, "--name", name], name=f"app-{name}")
        pod.wait_port(PORT, proc=proc)
        pods[name] = pod
    return pods


def cluster(name: str, vip: str, **discovery) -> dict:
    return {
        "name": name,
        "addresses": [f"{vip}:{PORT}"],
        "hostnames": [name],
        "mesh": False,
        "protocol": "http1",
        "lb": "round_robin",
        **discovery,
    }


def who_answers(client: weftlab.Pod, host: str, count: int) -> list[str]:
    """`count` requests to `host`, each on a new connection: the names of the
    apps that answered (what came back instead, for anything else)."""
    names = []
    for _ in range(count):
        res = client.curl(f"http://{host}:{PORT}/hello", "-w", "\n%{http_code}", timeout=10)
        body, _, code = res.stdout.rpartition("\n")
        m = re.match(r"hello from (\S+);", body)
        if res.returncode == 0 and code == "200" and m:
            names.append(m.group(1))
        else:
            names.append(f"<exit {res.returncode} status {code} {body.strip()[:60]!r} {res.stderr.strip()[:80]!r}>")
    return names


def wait_for(client: weftlab.Pod, host: str, want: set[str], timeout: float = WAIT) -> None:
    """Bounded: until a run of requests (three per wanted app) is answered by
    exactly the apps in `want`, every one of them."""
    deadline = time.monotonic() + timeout
    while True:
        seen = who_answers(client, host, 3 * len(want))
        if set(seen) == want:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{host}: after {timeout:.0f}s still answered by {seen}, want {sorted(want)}\n"
                        f"--- weft log (tail) ---\n{tail(client.weft_log())}")
        time.sleep(0.3)


def updates(client: weftlab.Pod) -> float:
    return client.metric("weft_endpoint_updates_total")


def wait_updates_above(client: weftlab.Pod, before: float, timeout: float = WAIT) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = updates(client)
        if value > before or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def keeping_lines(client: weftlab.Pod, cluster_name: str) -> list[str]:
    return [line for line in client.weft_log().splitlines() if KEEPING in line and cluster_name in line]


def wait_keeping(client: weftlab.Pod, cluster_name: str, more_than: int, timeout: float = WAIT) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = keeping_lines(client, cluster_name)
        if len(lines) > more_than or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def updated_to(client: weftlab.Pod, cluster_name: str, endpoints: set[str]) -> bool:
    """Did the node log an update of `cluster_name` to exactly `endpoints`?"""
    for line in client.weft_log().splitlines():
        m = re.search(r'msg="endpoints updated" cluster=(\S+) endpoints=(\S*)', line)
        if m and m.group(1) == cluster_name and set(m.group(2).split(",")) == endpoints:
            return True
    return False


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# dns


class DnsServer:
    """dnsmasq in a pod: only that pod's IPv4 address, port 53, no upstream,
    no /etc/hosts; `.test` answered from `hosts_file` alone (a name it lacks
    is NXDOMAIN, a missing family an empty answer). Answers carry TTL 0."""

    def __init__(self, pod: weftlab.Pod):
        self.pod = pod
        self.hosts_file = pod.lab.workdir / "dns-records"
        self.proc: weftlab.Proc | None = None
        self.starts = 0

    def records(self, entries: list[tuple[str, str]]) -> None:
        """(address, name) lines; re-read by a running server on SIGHUP."""
        tmp = self.hosts_file.with_suffix(".new")
        tmp.write_text("".join(f"{address}\t{name}\n" for address, name in entries))
        tmp.chmod(0o644)  # dnsmasq re-reads it after dropping root
        os.replace(tmp, self.hosts_file)
        if self.proc is not None and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGHUP)  # ip netns exec execs: this is dnsmasq

    def start(self) -> None:
        self.starts += 1
        self.proc = self.pod.spawn([
            "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
            f"--pid-file={self.pod.lab.workdir / f'dnsmasq-{self.starts}.pid'}",
            f"--listen-address={self.pod.ip4}", "--bind-interfaces", "--port=53",
            "--no-resolv", "--no-poll", "--no-hosts", f"--addn-hosts={self.hosts_file}",
            "--local=/test/", "--local-ttl=0",
        ], name="dnsmasq")
        self.pod.wait_port(53, proc=self.proc)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop(timeout=5)

    def log(self) -> str:
        return self.proc.log() if self.proc else ""


def test_dns_discovery_follows_the_records_and_keeps_the_last_answer(lab, backends):
    if not shutil.which("dnsmasq"):
        pytest.skip("dnsmasq not installed (scripts/install-deps)")
    one, two, three = (backends[n] for n in BACKENDS)
    dns = DnsServer(lab.add_pod("dns"))
    dns.records([(one.ip4, NAME)])
    dns.start()
    client = lab.add_pod("client", hosts={"disc": DNS_VIP}, nameservers=[dns.pod.ip4])
    # The name is DNS's alone: neither the client's hosts file nor the
    # machine's knows it.
    assert NAME not in (weftlab.NETNS_ETC / client.ns / "hosts").read_text()
    assert NAME not in Path("/etc/hosts").read_text()
    client.init()
    client.start_weft({
        "node": {"id": "client"},
        "clusters": [cluster("disc", DNS_VIP, discovery="dns", dns_refresh="1s",
                             endpoints=[{"address": f"{NAME}:{PORT}"}])],
    })

    # 1. One A record: one endpoint.
    wait_for(client, "disc", {"one"})
    assert set(who_answers(client, "disc", 6)) == {"one"}
    first = updates(client)
    assert first >= 1, "the first answer is an endpoint update"
    assert re.search(rf"query\[A\] {re.escape(NAME)} from {re.escape(client.ip4)}\b", dns.log()), \
        f"the node's lookups did not reach dnsmasq\n{tail(dns.log())}"

    # 2. Two A records and an AAAA record (`three` has no A record): all
    #    three apps, the third over IPv6.
    dns.records([(one.ip4, NAME), (two.ip4, NAME), (three.ip6, NAME)])
    wait_for(client, "disc", {"one", "two", "three"})
    assert set(who_answers(client, "disc", 9)) == {"one", "two", "three"}
    second = wait_updates_above(client, first)
    assert second > first
    assert re.search(rf"query\[AAAA\] {re.escape(NAME)} from {re.escape(client.ip4)}\b", dns.log())
    assert updated_to(client, "disc", {f"{one.ip4}:{PORT}", f"{two.ip4}:{PORT}", f"[{three.ip6}]:{PORT}"})

    # 3. `one` leaves, the others stay.
    dns.records([(two.ip4, NAME), (three.ip6, NAME)])
    wait_for(client, "disc", {"two", "three"})
    third = wait_updates_above(client, second)
    assert third > second

    # 4. The server stops answering: the last answer is kept and said so,
    #    traffic still spreads over the same endpoints, nothing is counted.
    before = len(keeping_lines(client, "disc"))
    dns.stop()
    lines = wait_keeping(client, "disc", before)
    assert len(lines) > before, f"no {KEEPING!r} for cluster disc\n{tail(client.weft_log())}"
    assert NAME in lines[-1], lines[-1]
    assert set(who_answers(client, "disc", 6)) == {"two", "three"}
    # Several failed refreshes later, still the same.
    wait_keeping(client, "disc", len(lines) + 1)
    assert set(who_answers(client, "disc", 6)) == {"two", "three"}
    assert updates(client) == third, "a failed lookup changes nothing"

    # 5. A server answers again, with other records: followed again.
    dns.records([(three.ip4, NAME)])
    dns.start()
    wait_for(client, "disc", {"three"})
    assert wait_updates_above(client, third) > third
    assert updated_to(client, "disc", {f"{three.ip4}:{PORT}"})


# --------------------------------------------------------------------------
# file


def write_endpoints(path: Path, text: str) -> None:
    """Replaces the endpoint list the way an operator's tool would: a new
    file renamed over the old one (new inode), readable by uid 1337."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def endpoint_list(addresses: list[str]) -> str:
    return weftlab.to_yaml([{"address": a} for a in addresses])


def test_file_discovery_follows_the_file_and_keeps_the_last_list(lab, backends):
    one, two, three = (backends[n] for n in BACKENDS)
    directory = lab.workdir / "endpoints"
    directory.mkdir()
    directory.chmod(0o755)
    path = directory / "filed.yaml"
    write_endpoints(path, endpoint_list([f"{one.ip4}:{PORT}"]))
    client = lab.add_pod("client", hosts={"filed": FILE_VIP})
    client.init()
    client.start_weft({
        "node": {"id": "client"},
        "clusters": [cluster("filed", FILE_VIP, discovery="file", file=str(path))],
    })

    # 1. The file's one endpoint.
    wait_for(client, "filed", {"one"})
    assert set(who_answers(client, "filed", 6)) == {"one"}
    first = updates(client)
    assert first >= 1, "the first read is an endpoint update"

    # 2. A longer list: traffic reaches all three.
    write_endpoints(path, endpoint_list([f"{p.ip4}:{PORT}" for p in (one, two, three)]))
    wait_for(client, "filed", {"one", "two", "three"})
    assert set(who_answers(client, "filed", 9)) == {"one", "two", "three"}
    second = wait_updates_above(client, first)
    assert second > first

    # 3. An invalid file: logged, the last list stays, nothing counted.
    before = len(keeping_lines(client, "filed"))
    write_endpoints(path, "- { address: nowhere }\n- { address: \"" + f"{two.ip4}:{PORT}" + "\" }\n")
    lines = wait_keeping(client, "filed", before)
    assert len(lines) > before, f"no {KEEPING!r} for cluster filed\n{tail(client.weft_log())}"
    assert "nowhere" in lines[-1], lines[-1]
    assert set(who_answers(client, "filed", 9)) == {"one", "two", "three"}
    # Not even YAML: the same.
    write_endpoints(path, "endpoints: [\n")
    again = wait_keeping(client, "filed", len(lines))
    assert len(again) > len(lines), f"no {KEEPING!r} for the second invalid file\n{tail(client.weft_log())}"
    assert "YAML" in again[-1], again[-1]
    assert set(who_answers(client, "filed", 9)) == {"one", "two", "three"}
    assert updates(client) == second, "an invalid file changes nothing"

    # 4. Valid again (one IPv6 endpoint): followed.
    write_endpoints(path, endpoint_list([f"[{three.ip6}]:{PORT}"]))
    wait_for(client, "filed", {"three"})
    assert wait_updates_above(client, second) > second
    assert updated_to(client, "filed", {f"[{three.ip6}]:{PORT}"})
