"""`weft inject` as a user runs it: manifests on stdin or from a file, the
result on stdout (valid Kubernetes objects, by kubernetes-validate), what
was done on stderr, a second pass changing nothing. No root needed."""

from __future__ import annotations

import subprocess

import yaml as pyyaml  # PyYAML comes with kubernetes-validate

from topology import REPO


def inject(weft_bin, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(weft_bin), "inject", *args], input=stdin, capture_output=True, text=True, timeout=30)


def test_the_example_deployment_is_injected_validated_and_stable(weft_bin, tmp_path):
    source = (REPO / "k8s" / "native-sidecar.yaml").read_text()
    # An app without weft: the example's workloads with weft's containers taken out.
    docs = list(pyyaml.safe_load_all(source))
    for doc in docs:
        spec = doc["spec"]["template"]["spec"]
        spec["initContainers"] = [c for c in spec.get("initContainers", []) if not c["name"].startswith("weft-")]
        if not spec["initContainers"]:
            del spec["initContainers"]
        spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] != "weft-config"]
        if not spec["volumes"]:
            del spec["volumes"]
    plain = pyyaml.safe_dump_all(docs)
    once = inject(weft_bin, "--config-map", "weft-frontend", stdin=plain)
    assert once.returncode == 0, once.stderr
    assert once.stderr.splitlines() == ["weft inject: Deployment/frontend-native: injected",
                                        "weft inject: Job/nightly-report: injected"], once.stderr
    out = tmp_path / "injected.yaml"
    out.write_text(once.stdout)
    import kubernetes_validate.utils
    version = kubernetes_validate.utils.latest_version()
    validate = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "kubernetes_validate", "--strict",
                               "-k", version, str(out)], capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    injected = list(pyyaml.safe_load_all(once.stdout))
    job = injected[1]["spec"]["template"]["spec"]
    assert [c["name"] for c in job["initContainers"]] == ["weft-init", "weft-proxy"]
    assert job["initContainers"][1]["restartPolicy"] == "Always"
    assert job["volumes"] == [{"name": "weft-config", "configMap": {"name": "weft-frontend"}}]
    # Twice: the same bytes, and nothing injected again.
    twice = inject(weft_bin, "-f", str(out))
    assert twice.returncode == 0 and twice.stdout == once.stdout
    assert "already injected" in twice.stderr


def test_bad_input_is_refused_with_nothing_on_stdout(weft_bin, tmp_path):
    res = inject(weft_bin, stdin="kind: Deployment\napiVersion: apps/v1\nspec: {template: 3}\n")
    assert res.returncode == 1 and res.stdout == ""
    assert "no pod template at spec.template" in res.stderr
    res = inject(weft_bin, "-f", str(tmp_path / "missing.yaml"))
    assert res.returncode != 0 and "cannot read" in res.stderr
