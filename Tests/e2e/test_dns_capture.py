"""DNS capture (issue 13), end to end.

An `app` pod runs `weft init --capture-dns` and weft with `listeners.dns`;
its resolv.conf names a real resolver, dnsmasq in a `dns` pod (no upstream,
`other.lab` and nothing else), and its hosts file knows no cluster name.
The unmodified resolver clients (glibc's getent, curl, Python sockets over
UDP and TCP) ask that resolver; weft answers the cluster hostname
`backend` with its VIP and passes every other query to dnsmasq unchanged.
"""

from __future__ import annotations

import shutil
import socket
import struct

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

VIP, PORT = "198.19.0.30", 9090
OTHER = "198.18.0.77"


@pytest.fixture(scope="module")
def dc(root, weft_bin):
    if not shutil.which("dnsmasq"):
        pytest.skip("dnsmasq not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        backend = lab.add_pod("backend")
        app = backend.spawn([PY, APPS / "http_app.py", "--port", PORT, "--name", "backend"], name="http_app")
        backend.wait_port(PORT, proc=app)
        dns = lab.add_pod("dns")
        lab.dnsmasq = dns.spawn(["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
                                 f"--pid-file={lab.workdir / 'dnsmasq.pid'}", f"--listen-address={dns.ip4}",
                                 "--bind-interfaces", "--port=53", "--no-resolv", "--no-poll", "--no-hosts",
                                 f"--address=/other.lab/{OTHER}", "--local=/lab/"], name="dnsmasq")
        dns.wait_port(53, proc=lab.dnsmasq)
        pod = lab.add_pod("app", nameservers=[dns.ip4])
        lab.write_resolv_conf(pod, [dns.ip4], search=["corp.lab"])
        pod.init("--capture-dns")
        pod.start_weft({
            "node": {"id": "app"},
            "listeners": {"dns": {}},
            "clusters": [{"name": "backend", "addresses": [f"{VIP}:{PORT}"], "hostnames": ["backend"],
                          "mesh": False, "endpoints": [{"address": f"{backend.ip4}:{PORT}"}]}],
        })
        lab.pod, lab.dns = pod, dns
        yield lab


def query(name: str, qtype: int = 1, qid: int = 0x4242) -> bytes:
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", qtype, 1)


RAW_CLIENT = r"""
import json, socket, struct, sys
server, mode, hexq = sys.argv[1], sys.argv[2], sys.argv[3]
q = bytes.fromhex(hexq)
if mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(q, (server, 53)); data = s.recv(4096)
else:
    s = socket.create_connection((server, 53), timeout=5)
    s.sendall(struct.pack(">H", len(q)) + q)
    n = struct.unpack(">H", s.recv(2))[0]; data = b""
    while len(data) < n: data += s.recv(n - len(data))
print(data.hex())
"""


def ask(lab, name: str, mode: str = "udp", qtype: int = 1, server: str | None = None, pod=None) -> bytes:
    res = (pod or lab.pod).run([PY, "-c", RAW_CLIENT, server or lab.dns.ip4, mode, query(name, qtype).hex()], timeout=20)
    return bytes.fromhex(res.stdout.strip())


def addresses(reply: bytes) -> list[str]:
    """The A/AAAA rdata of a reply whose answers name the question by pointer."""
    qd, an = struct.unpack(">HH", reply[4:8])
    i = 12
    while reply[i] != 0:
        i += reply[i] + 1
    i += 5
    out = []
    for _ in range(an):
        if reply[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while reply[i] != 0:
                i += reply[i] + 1
            i += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[i:i + 10])
        i += 10
        rdata = reply[i:i + rdlen]
        i += rdlen
        if rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return out


def test_an_unmodified_resolver_gets_the_vip_for_a_cluster_hostname(dc):
    res = dc.pod.run(["getent", "hosts", "backend"], check=False, timeout=20)
    assert res.returncode == 0 and res.stdout.split()[0] == VIP, (res.stdout, res.stderr)
    # With the search domain appended, as the stub resolver tries first.
    assert addresses(ask(dc, "backend.corp.lab")) == [VIP]
    # No IPv6 VIP: the name exists, with no AAAA record (NODATA, not NXDOMAIN).
    reply = ask(dc, "backend", qtype=28)
    assert reply[3] & 0x0F == 0 and addresses(reply) == [], reply.hex()
    assert "backend" not in dc.dnsmasq.log(), "the cluster name reached the upstream resolver"
    assert dc.pod.metric("weft_dns_queries_total", result="answered") >= 3


def test_other_names_go_to_the_upstream_resolver_unchanged(dc):
    res = dc.pod.run(["getent", "hosts", "other.lab"], check=False, timeout=20)
    assert res.returncode == 0 and res.stdout.split()[0] == OTHER, (res.stdout, res.stderr)
    assert "query[A] other.lab" in dc.dnsmasq.log()
    # NXDOMAIN comes back as dnsmasq said it.
    reply = ask(dc, "missing.lab")
    assert reply[3] & 0x0F == 3, reply.hex()  # NXDOMAIN
    assert dc.pod.metric("weft_dns_queries_total", result="forwarded") >= 2


def test_tcp_queries_are_answered_and_forwarded_too(dc):
    assert addresses(ask(dc, "backend", mode="tcp")) == [VIP]
    assert addresses(ask(dc, "other.lab", mode="tcp")) == [OTHER]


def test_an_app_calls_the_cluster_by_name_and_weft_carries_it(dc):
    opened = dc.pod.metric("weft_tcp_connections_total", direction="outbound")
    res = dc.pod.curl(f"http://backend:{PORT}/", "-o", "-", "-w", "\\n%{http_code}")
    assert res.stdout.startswith("hello from backend"), res.stdout
    assert res.stdout.strip().endswith("200"), res.stdout
    # The name led to the VIP, so the connection went through weft's outbound.
    assert dc.pod.metric("weft_tcp_connections_total", direction="outbound") == opened + 1


def test_hostile_queries_cost_nothing_and_harm_no_one(dc):
    garbage = [b"", b"\x00" * 11, b"\xff" * 12, b"\x12\x34\x81\x00" + b"\x00" * 8,  # a response, not a query
               bytes.fromhex("1234010000010000000000" "00c00c00010001"),  # a pointer to itself as the name
               bytes(range(256)) * 2]
    script = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"for _ in range(200):\n"
              f"    for g in {garbage!r}:\n"
              f"        s.sendto(g, ('{dc.dns.ip4}', 53))\n")
    dc.pod.run([PY, "-c", script], timeout=30)
    # Still answering, both ways.
    res = dc.pod.run(["getent", "hosts", "backend"], check=False, timeout=20)
    assert res.returncode == 0 and res.stdout.split()[0] == VIP
    assert addresses(ask(dc, "other.lab")) == [OTHER]
    assert dc.pod.weft.alive()


def test_upstream_original_forwards_each_query_where_the_app_sent_it(dc):
    """`upstream: original`: an app that asks another server than
    resolv.conf's (here `dns2`, whose other.lab differs) gets that server's
    answer; over UDP the node finds where the query was going in conntrack,
    which needs CAP_NET_ADMIN. Without it, UDP queries go to resolv.conf's
    server (said once in the log) and TCP ones still where they were sent."""
    lab = dc
    second = lab.add_pod("dns2")
    elsewhere = "198.18.0.88"
    dnsmasq2 = second.spawn(["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
                             f"--pid-file={lab.workdir / 'dnsmasq2.pid'}", f"--listen-address={second.ip4}",
                             "--bind-interfaces", "--port=53", "--no-resolv", "--no-poll", "--no-hosts",
                             f"--address=/other.lab/{elsewhere}", "--local=/lab/"], name="dnsmasq2")
    second.wait_port(53, proc=dnsmasq2)
    pod = lab.add_pod("app2")
    lab.write_resolv_conf(pod, [lab.dns.ip4])
    pod.init("--capture-dns")
    config = {
        "node": {"id": "app2"},
        "listeners": {"dns": {"upstream": "original"}},
        "clusters": [{"name": "backend", "addresses": [f"{VIP}:{PORT}"], "hostnames": ["backend"],
                      "mesh": False, "endpoints": [{"address": f"198.18.0.2:{PORT}"}]}],
    }
    try:
        pod.start_weft(config, caps=["net_admin"])
        for mode in ("udp", "tcp"):
            assert addresses(ask(lab, "other.lab", mode, server=second.ip4, pod=pod)) == [elsewhere], mode
            assert addresses(ask(lab, "other.lab", mode, server=lab.dns.ip4, pod=pod)) == [OTHER], mode
            # Cluster names are answered by weft whichever server was asked.
            assert addresses(ask(lab, "backend", mode, server=second.ip4, pod=pod)) == [VIP], mode
        assert "query[A] other.lab from " + pod.ip4 in dnsmasq2.log()
        assert "original destination" not in pod.weft_log()
        pod.stop_weft()

        pod.start_weft(config)  # no capability
        assert addresses(ask(lab, "other.lab", "udp", server=second.ip4, pod=pod)) == [OTHER]
        assert addresses(ask(lab, "other.lab", "tcp", server=second.ip4, pod=pod)) == [elsewhere]
        line = next((l for l in pod.weft_log().splitlines() if "original destination of UDP queries is unknown" in l), "")
        assert "CAP_NET_ADMIN" in line, pod.weft_log()[-2000:]
    finally:
        pod.stop_weft()
