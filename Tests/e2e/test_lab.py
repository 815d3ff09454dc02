"""The lab itself (scripts/weftlab.py): pods reach each other over IPv4 and
IPv6, hosts files work, a VIP nobody intercepts fails at once, and teardown
leaves nothing behind. No weft involved."""

import json
import os
import subprocess
import sys

import pytest

from topology import APPS, PY, VIP
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root


@pytest.fixture
def bare_lab(root):
    with weftlab.Lab(weft_bin="/bin/true") as lab:
        yield lab


def test_pods_reach_each_other_v4_v6(bare_lab):
    a = bare_lab.add_pod("a", hosts={"svc": VIP})
    b = bare_lab.add_pod("b")
    app = b.spawn([PY, APPS / "http_app.py", "--port", "9090", "--name", "b"])
    b.wait_port(9090, proc=app)
    r4 = a.curl(f"http://{b.ip4}:9090/")
    assert r4.stdout.strip() == f"hello from b; peer={a.ip4}", r4.stderr
    r6 = a.curl(f"http://[{b.ip6}]:9090/")
    assert r6.stdout.strip() == f"hello from b; peer={a.ip6}", r6.stderr
    # Every pod knows the others as <name>.pod.
    rn = a.curl("http://b.pod:9090/")
    assert rn.returncode == 0 and rn.stdout.startswith("hello from b;")


def test_hosts_file_maps_vip(bare_lab):
    a = bare_lab.add_pod("a", hosts={"backend": VIP})
    res = a.run([PY, "-c", "import socket; print(socket.gethostbyname('backend'))"])
    assert res.stdout.strip() == VIP
    # The root namespace's /etc/hosts is not touched.
    assert "backend" not in open("/etc/hosts").read().split()


def test_resolv_conf_per_pod(bare_lab):
    a = bare_lab.add_pod("a", nameservers=["198.18.0.53"])
    b = bare_lab.add_pod("b")
    assert a.run(["cat", "/etc/resolv.conf"]).stdout.splitlines()[0] == "nameserver 198.18.0.53"
    # Rewritten in place: what the pod sees follows.
    bare_lab.write_resolv_conf(a, ["198.18.0.54", "2001:2::54"])
    assert a.run(["cat", "/etc/resolv.conf"]).stdout.splitlines()[:2] == [
        "nameserver 198.18.0.54", "nameserver 2001:2::54"]
    # A pod without one, and the machine, keep the machine's file.
    machine = open("/etc/resolv.conf").read()
    assert b.run(["cat", "/etc/resolv.conf"]).stdout == machine
    assert "198.18.0.5" not in machine
    with pytest.raises(weftlab.LabError):
        bare_lab.write_resolv_conf(a, ["not-an-address"])
    # The file goes with the pod.
    path = weftlab.NETNS_ETC / a.ns / "resolv.conf"
    assert path.exists()
    bare_lab.close()
    assert not path.exists()


def test_vip_without_interception_fails_fast(bare_lab):
    a = bare_lab.add_pod("a", hosts={"backend": VIP})
    res = a.curl("http://backend:9090/", timeout=20)
    assert res.returncode != 0
    # "unreachable" from the gateway, not a connect timeout (curl exit 28).
    assert res.returncode != 28, res.stderr


def test_nothing_in_root_namespace():
    # The lab never routes its ranges from the root namespace.
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    routes6 = subprocess.run(["ip", "-6", "route", "show"], capture_output=True, text=True).stdout
    assert "198.18." not in routes and "198.19." not in routes
    assert "2001:2:" not in routes6


def test_teardown_leaves_nothing(root):
    lab = weftlab.Lab(weft_bin="/bin/true")
    lab.start()
    pod = lab.add_pod("x")
    proc = pod.spawn(["sleep", "300"])
    # a grandchild in another process group, still inside the namespace
    pod.run("setsid sleep 301 >/dev/null 2>&1 < /dev/null &")
    names = lab.namespaces()
    workdir = lab.workdir
    lab.close()
    lab.close()  # idempotent
    left = set(weftlab.list_netns())
    assert not (set(names) & left)
    assert not any((weftlab.NETNS_ETC / n).exists() for n in names)
    assert proc.popen.poll() is not None
    assert not workdir.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 301" not in ps


def test_cleanup_stale_removes_dead_runs_only(root, tmp_path):
    # A lab "owned" by a process that no longer exists ...
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = weftlab.Lab(weft_bin="/bin/true")
    stale.start()
    stale.add_pod("x")
    (weftlab.MARKER_DIR / f"{stale.prefix}.json").write_text(
        json.dumps({"pid": dead.pid, "workdir": str(stale.workdir)}))
    # ... and one owned by a live process (this one is ours, so use our parent).
    live = weftlab.Lab(weft_bin="/bin/true")
    live.start()
    live.add_pod("y")
    (weftlab.MARKER_DIR / f"{live.prefix}.json").write_text(
        json.dumps({"pid": os.getppid(), "workdir": str(live.workdir)}))
    try:
        removed = weftlab.cleanup_stale(verbose=False)
        assert set(stale.namespaces()) <= set(removed)
        assert not (set(live.namespaces()) & set(removed))
        assert set(live.namespaces()) <= set(weftlab.list_netns())
    finally:
        stale.close()
        live.close()
    assert not (set(stale.namespaces() + live.namespaces()) & set(weftlab.list_netns()))


def test_sigterm_tears_lab_down(root, tmp_path):
    # A separate Python process builds a lab, then is SIGTERMed.
    script = tmp_path / "child.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(weftlab.REPO_ROOT / 'scripts')!r})\n"
        "import weftlab\n"
        "lab = weftlab.Lab(weft_bin='/bin/true'); lab.start(); p = lab.add_pod('z')\n"
        "p.spawn(['sleep', '300'])\n"
        "print(lab.prefix, flush=True)\n"
        "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        prefix = child.stdout.readline().strip()
        assert prefix.startswith("wl")
        assert any(n.startswith(prefix) for n in weftlab.list_netns())
        child.terminate()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not any(n.startswith(prefix + "-") for n in weftlab.list_netns())
    assert not any(p.name.startswith(prefix) for p in weftlab.NETNS_ETC.glob("*"))
