"""Reload (SPEC §5 "Reload"), end to end with the real binary.

One client pod and one backend pod. The backend runs three unmodified apps
(mesh_app.py, each answering `hello from <name>`) on three ports, behind its
own weft node. The client node knows one cluster, `plain` (mesh: false,
protocol http1) at a VIP, whose endpoints are those ports; the test edits
the client's config file (and sends SIGHUP) while traffic runs:

* adding two endpoints to the file while a slow download runs: within a few
  seconds requests reach all three apps, the download completes intact;
* SIGHUP with the file unchanged: counted as `unchanged`, nothing moves;
* an invalid file: counted as `failure`, the configuration in force stays
  and traffic keeps flowing; fixing the file applies again.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

sys.path.insert(0, str(APPS))
from mesh_app import pattern  # noqa: E402

pytestmark = pytest.mark.root

VIP, PORT = "198.19.0.50", 9400
APP_PORTS = {"one": 9401, "two": 9402, "three": 9403}


def client_config(backend: weftlab.Pod, names: list[str]) -> dict:
    return {
        "node": {"id": "client"},
        "clusters": [{
            "name": "plain",
            "addresses": [f"{VIP}:{PORT}"],
            "hostnames": ["plain"],
            "mesh": False,
            "protocol": "http1",
            "endpoints": [{"address": f"{backend.ip4}:{APP_PORTS[name]}"} for name in names],
        }],
    }


@pytest.fixture
def pods(lab):
    client = lab.add_pod("client", hosts={"plain": VIP})
    backend = lab.add_pod("backend")
    for name, port in APP_PORTS.items():
        proc = backend.spawn([PY, APPS / "mesh_app.py", "--port", port, "--name", name], name=f"app-{name}")
        backend.wait_port(port, proc=proc)
    for pod in (client, backend):
        pod.init()
    backend.start_weft({"node": {"id": "backend"}})
    client.start_weft(client_config(backend, ["one"]))
    return client, backend


def who_answers(client: weftlab.Pod, count: int) -> list[str]:
    """`count` requests, each on a new connection; the app names that answered."""
    names = []
    for _ in range(count):
        res = client.curl(f"http://plain:{PORT}/hello", timeout=10)
        assert res.returncode == 0, res.stderr
        names.append(res.stdout.split()[2].rstrip(";"))
    return names


def rewrite(client: weftlab.Pod, config: dict | str) -> None:
    """Replaces the config file the way an operator's tool would: a new
    file renamed over the old one (new inode)."""
    path = client.weft_config_path
    text = config if isinstance(config, str) else weftlab.to_yaml(config)
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def wait_metric(client: weftlab.Pod, result: str, at_least: float, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = client.metric("weft_config_reloads_total", result=result)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_file_change_adds_endpoints_while_a_download_runs(pods):
    client, backend = pods
    assert set(who_answers(client, 6)) == {"one"}

    size = 16 << 20
    out = client.lab.workdir / "download.bin"
    download = client.spawn(["curl", "-sS", "--noproxy", "*", "--max-time", "60", "--limit-rate", "1M",
                             "-o", str(out), f"http://plain:{PORT}/bytes?n={size}"], name="download")
    try:
        time.sleep(1)  # the download is under way
        rewrite(client, client_config(backend, ["one", "two", "three"]))
        assert wait_metric(client, "success", 1) >= 1, client.weft.log()[-2000:]
        assert download.alive(), "the reload came after the download ended: nothing was proven"
        deadline = time.monotonic() + 10
        seen: set[str] = set()
        while seen != set(APP_PORTS) and time.monotonic() < deadline:
            seen |= set(who_answers(client, 3))
        assert seen == set(APP_PORTS), seen
        assert download.popen.wait(timeout=60) == 0, download.log()
    finally:
        download.stop()
    body = out.read_bytes()
    assert len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(size)).digest(), "download corrupted"


def test_sighup_unchanged_and_invalid_file(pods):
    client, backend = pods
    os.killpg(client.weft.popen.pid, signal.SIGHUP)  # its own process group
    assert wait_metric(client, "unchanged", 1) >= 1
    assert client.metric("weft_config_reloads_total", result="success") == 0

    rewrite(client, "clusters:\n  - name: plain\n    endpoints: [{ address: nowhere }]\n")
    assert wait_metric(client, "failure", 1) >= 1, client.weft.log()[-2000:]
    assert set(who_answers(client, 6)) == {"one"}, "the configuration in force stays"
    assert "configuration reload refused" in client.weft.log()

    rewrite(client, client_config(backend, ["two"]))
    assert wait_metric(client, "success", 1) >= 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(who_answers(client, 3)) != {"two"}:
        time.sleep(0.2)
    assert set(who_answers(client, 6)) == {"two"}
