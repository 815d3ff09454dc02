"""The VM host's systemd units (iptables/weft-init.service,
iptables/weft-proxy.service) pass `systemd-analyze verify` with no warning,
and the proxy unit says what the README promises: the proxy user, reload by
SIGHUP, a stop that leaves time to drain, the config checked before start.
No root needed."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from topology import REPO

UNITS = ("weft-init.service", "weft-proxy.service")


@pytest.fixture(scope="module")
def installed(tmp_path_factory, weft_bin) -> Path:
    """The units with /usr/local/bin/weft pointing at the binary under test
    (verify checks that every command exists)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    out = tmp_path_factory.mktemp("units")
    for name in UNITS:
        text = (REPO / "iptables" / name).read_text().replace("/usr/local/bin/weft", str(weft_bin))
        (out / name).write_text(text)
    return out


def test_the_units_verify_without_a_warning(installed):
    res = subprocess.run(["systemd-analyze", "verify", *[str(installed / n) for n in UNITS]],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    # Unknown keys and bad values are warnings, not failures: none allowed.
    assert res.stderr.strip() == "", res.stderr


def test_verify_would_catch_a_mistake(installed):
    # The check above can fail: a misspelt key in a copy is reported.
    broken = installed / "broken.service"
    broken.write_text((installed / "weft-proxy.service").read_text().replace("ExecReload=", "ExecReloadd="))
    res = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Unknown key" in res.stderr, res.stderr


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((REPO / "iptables" / name).read_text())
    return parser


def test_the_proxy_unit_runs_weft_as_the_proxy_user_and_drains_on_stop():
    service = unit("weft-proxy.service")["Service"]
    assert service["User"] == "weft" and service["Group"] == "weft"
    assert service["ExecStart"].startswith("/usr/local/bin/weft proxy --config /etc/weft/weft.yaml")
    assert service["ExecStartPre"] == "/usr/local/bin/weft check --config /etc/weft/weft.yaml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    # The default drain_timeout is 20 s: the stop timeout leaves room for it.
    assert int(service["TimeoutStopSec"]) > 20
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["CapabilityBoundingSet"] == ""
    after = unit("weft-proxy.service")["Unit"]["After"].split()
    assert "weft-init.service" in after
