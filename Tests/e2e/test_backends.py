"""`weft init --backend legacy|nft|auto`: both iptables variants install,
re-apply and remove exactly, auto follows the variant that already holds
rules, and traffic flows with either."""

import shutil

import pytest

from topology import HTTP_PORT, REDIS_PORT, build_mesh

pytestmark = pytest.mark.root

BACKENDS = ["legacy", "nft"]


def need(backend):
    if not shutil.which(f"iptables-{backend}-restore"):
        pytest.skip(f"iptables-{backend} not installed")


def snapshot(pod, backend):
    return pod.nat_rules(4, backend), pod.nat_rules(6, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_install_twice_and_remove_exactly(lab, backend):
    need(backend)
    pod = lab.add_pod("b")
    other = "nft" if backend == "legacy" else "legacy"
    before, before_other = snapshot(pod, backend), snapshot(pod, other)
    pod.init("--backend", backend)
    first = snapshot(pod, backend)
    assert first != before
    assert "WEFT_OUTPUT" in first[0] and "WEFT_OUTPUT" in first[1]
    pod.init("--backend", backend)
    assert snapshot(pod, backend) == first
    # The other variant was not touched.
    assert snapshot(pod, other) == before_other
    pod.init("--backend", backend, "--remove")
    assert snapshot(pod, backend) == before


def test_auto_follows_the_variant_holding_rules(lab):
    need("legacy")
    pod = lab.add_pod("auto")
    # Someone (a CNI, kube-proxy) already uses legacy in this namespace.
    pod.run(["iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-d", "198.19.99.0/24", "-j", "RETURN"])
    nft_before = snapshot(pod, "nft")
    pod.init()  # --backend auto
    assert "WEFT_OUTPUT" in pod.nat_rules(4, "legacy")
    assert snapshot(pod, "nft") == nft_before
    pod.init("--remove")
    assert "WEFT_" not in pod.nat_rules(4, "legacy")
    assert "198.19.99.0/24" in pod.nat_rules(4, "legacy")


def test_traffic_with_legacy_backend(lab):
    need("legacy")
    mesh = build_mesh(lab, init_flags=("--backend", "legacy"))
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend; peer=127.0.0.1"
    res = mesh.client.curl(f"http://backend6:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend; peer=::1"
    res = mesh.client.run(["redis-cli", "-h", "backend", "-p", str(REDIS_PORT), "PING"],
                          check=False, timeout=30)
    assert res.stdout.strip() == "PONG", res.stderr
