"""`weft check --config FILE`: every problem named with its path, exit 1;
a good config exits 0. No root needed."""

import re
import subprocess
from pathlib import Path

import pytest

from topology import REPO

GOOD = """\
node:
  id: client
listeners:
  outbound: { port: 15001 }
  inbound: { port: 15006 }
  health: { port: 15020 }
outbound_policy: allow_any
detect_timeout: 1s
opaque_ports: [25, 3306, 6379]
clusters:
  - name: backend
    addresses: ["198.19.0.10:9090"]
    hostnames: ["backend"]
    protocol: auto
    mesh: false
    lb: round_robin
    endpoints:
      - { address: "198.18.0.3:9090" }
      - { address: "[2001:2::3]:9090" }
"""


def check(weft_bin, tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "weft.yaml"
    cfg.write_text(text)
    return subprocess.run([str(weft_bin), "check", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)


def test_good_config_exits_zero(weft_bin, tmp_path):
    res = check(weft_bin, tmp_path, GOOD)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("text", ["{}\n", "outbound_policy: registry_only\n"],
                         ids=["empty", "no-clusters"])
def test_inbound_only_config_is_valid(weft_bin, tmp_path, text):
    res = check(weft_bin, tmp_path, text)
    assert res.returncode == 0, res.stdout + res.stderr


def test_bad_endpoint_names_its_path(weft_bin, tmp_path):
    res = check(weft_bin, tmp_path, GOOD.replace("198.18.0.3:9090", "198.18.0.2:99999"))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "clusters[0].endpoints[0].address" in out
    assert "198.18.0.2:99999" in out


def test_unknown_key_is_an_error(weft_bin, tmp_path):
    res = check(weft_bin, tmp_path, GOOD.replace("    lb: round_robin\n",
                                                 "    lb: round_robin\n    colour: blue\n"))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "clusters[0]" in out and "colour" in out


def test_every_problem_is_reported(weft_bin, tmp_path):
    text = (GOOD.replace("198.19.0.10:9090", "198.19.0.10:0")
                .replace("[2001:2::3]:9090", "2001:2::3:9090")
                .replace("outbound_policy: allow_any", "outbound_policy: sometimes"))
    res = check(weft_bin, tmp_path, text)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    for path in ("clusters[0].addresses[0]", "clusters[0].endpoints[1].address", "outbound_policy"):
        assert path in out, (path, out)


def test_bad_yaml_exits_one(weft_bin, tmp_path):
    res = check(weft_bin, tmp_path, "clusters: [\n")
    assert res.returncode == 1, res.stdout + res.stderr


def configmap_weft_yaml() -> str:
    """The `weft.yaml` key of k8s/configmap.yaml (a literal block)."""
    lines = (REPO / "k8s" / "configmap.yaml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(r"\s+weft\.yaml:\s*\|", l))
    body = []
    indent = None
    for line in lines[start + 1:]:
        if line.strip() == "":
            body.append("")
            continue
        cur = len(line) - len(line.lstrip())
        if indent is None:
            indent = cur
        if cur < indent:
            break
        body.append(line[indent:])
    return "\n".join(body).strip() + "\n"


def test_k8s_configmap_config_is_valid(weft_bin, tmp_path):
    res = check(weft_bin, tmp_path, configmap_weft_yaml())
    assert res.returncode == 0, res.stdout + res.stderr


def test_docs_example_config_is_valid(weft_bin, tmp_path):
    example = REPO / "docs" / "examples" / "weft.yaml"
    if not example.is_file():
        pytest.skip("docs/examples/weft.yaml not present")
    res = check(weft_bin, tmp_path, example.read_text())
    assert res.returncode == 0, res.stdout + res.stderr
