"""`weft init` in a pod namespace: idempotent, exactly reversible, a dry run
touches nothing, bad flag values are refused before anything is touched."""

import pytest

pytestmark = pytest.mark.root

# Rules that are not weft's: they must survive init and --remove untouched.
FOREIGN_V4 = [
    ["iptables", "-t", "nat", "-N", "LAB_KEEP"],
    ["iptables", "-t", "nat", "-A", "LAB_KEEP", "-p", "tcp", "--dport", "7777", "-j", "RETURN"],
    ["iptables", "-t", "nat", "-A", "OUTPUT", "-d", "198.19.99.0/24", "-j", "LAB_KEEP"],
    ["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "7778", "-j", "RETURN"],
]
FOREIGN_V6 = [
    ["ip6tables", "-t", "nat", "-N", "LAB_KEEP6"],
    ["ip6tables", "-t", "nat", "-A", "OUTPUT", "-d", "2001:2:0:99::/64", "-j", "LAB_KEEP6"],
]


def snapshot(pod):
    return pod.nat_rules(4), pod.nat_rules(6)


@pytest.fixture
def pod(lab):
    return lab.add_pod("init")


def test_init_adds_rules_for_both_families(pod):
    pod.init()
    v4, v6 = snapshot(pod)
    for text in (v4, v6):
        for chain in ("WEFT_INBOUND", "WEFT_IN_REDIRECT", "WEFT_OUTPUT", "WEFT_REDIRECT"):
            assert f":{chain} -" in text, (chain, text)
        assert "--to-ports 15001" in text
        assert "--to-ports 15006" in text
        assert "weft/" in text  # every rule is commented
        assert "-j WEFT_OUTPUT" in text and "-j WEFT_INBOUND" in text


def test_init_twice_gives_same_ruleset(pod):
    pod.init()
    first = snapshot(pod)
    pod.init()
    second = snapshot(pod)
    assert first == second


@pytest.mark.parametrize("foreign", [False, True], ids=["fresh", "with-foreign-rules"])
def test_remove_restores_nat_tables_exactly(pod, foreign):
    if foreign:
        for cmd in FOREIGN_V4 + FOREIGN_V6:
            pod.run(cmd)
    before = snapshot(pod)
    pod.init()
    applied = snapshot(pod)
    assert applied != before
    if foreign:
        assert "LAB_KEEP" in applied[0] and "LAB_KEEP6" in applied[1]
    pod.init("--remove")
    assert snapshot(pod) == before
    # Removing again (nothing to remove) is harmless and still changes nothing.
    pod.init("--remove")
    assert snapshot(pod) == before


def test_remove_after_double_init(pod):
    before = snapshot(pod)
    pod.init()
    pod.init()
    pod.init("--remove")
    assert snapshot(pod) == before


def test_dry_run_changes_nothing(pod):
    before = snapshot(pod)
    res = pod.init("--dry-run")
    assert snapshot(pod) == before
    assert "*nat" in res.stdout
    assert "WEFT_OUTPUT" in res.stdout and "COMMIT" in res.stdout
    # Also once rules are in place.
    pod.init()
    applied = snapshot(pod)
    pod.init("--dry-run", "--outbound-port", "15101")
    assert snapshot(pod) == applied


def test_dry_run_remove_changes_nothing(pod):
    pod.init()
    applied = snapshot(pod)
    pod.init("--dry-run", "--remove")
    assert snapshot(pod) == applied


BAD_FLAGS = [
    (["--outbound-port", "70000"], "70000"),
    (["--inbound-port", "0"], "0"),
    (["--exclude-outbound-cidrs", "198.19.0.0/33"], "198.19.0.0/33"),
    (["--exclude-outbound-cidrs", "not-a-cidr"], "not-a-cidr"),
    (["--exclude-inbound-ports", "22,99999"], "99999"),
    (["--backend", "bogus"], "bogus"),
]


@pytest.mark.parametrize("flags,bad", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
@pytest.mark.parametrize("state", ["empty", "applied"])
def test_bad_flag_is_refused_and_changes_nothing(pod, flags, bad, state):
    if state == "applied":
        pod.init()
    before = snapshot(pod)
    res = pod.init(*flags, check=False)
    assert res.returncode != 0
    err_lines = [l for l in res.stderr.splitlines() if l.strip()]
    # Exactly one line, naming the flag and the bad value.
    assert len(err_lines) == 1, res.stderr
    assert bad in err_lines[0] and flags[0] in err_lines[0], res.stderr
    assert snapshot(pod) == before
