"""Shared fixtures for weft's end-to-end tests.

The tests run the real `weft` binary (WEFT_BIN, default .build/debug/weft) in
network-namespace pods built by scripts/weftlab.py: real iptables, real
SO_ORIGINAL_DST, unmodified clients (curl, redis-cli, python sockets) and
servers (a Python HTTP app, redis-server, a banner server).

The client/backend topology is in topology.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from topology import (  # noqa: F401 - re-exported for the test modules
    APPS, BACKEND_CONFIG, BANNER_PORT, HTTP_PORT, HTTP_PORT_UNLISTED, PY, REDIS_PORT, REPO, VIP,
    VIP6, Mesh, build_mesh, client_config, start_backend_apps,
)
import weftlab  # noqa: E402 - importable once topology has put scripts/ on sys.path


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (network namespaces, iptables)")


@pytest.fixture(scope="session")
def weft_bin() -> Path:
    path = weftlab.default_weft_bin()
    if not path.is_file():
        pytest.skip(f"weft binary not built at {path} (swift build, or set WEFT_BIN)")
    return path


@pytest.fixture(scope="session")
def root():
    if not weftlab.is_root():
        pytest.skip("needs root (network namespaces and iptables)")
    # Whatever a killed earlier run left behind goes first.
    weftlab.cleanup_stale()
    yield
    weftlab.cleanup_stale()


@pytest.fixture
def lab(root, weft_bin):
    """A fresh, empty lab for one test."""
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        yield lab


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every process log of every live lab."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for lab in list(weftlab._live_labs):
            for key, text in lab.logs().items():
                tail = "\n".join(text.splitlines()[-120:])
                report.sections.append((f"lab {lab.prefix} {key}", tail or "(empty)"))


@pytest.fixture(scope="module")
def mesh(root, weft_bin):
    """client + backend pods, both intercepted, both running weft."""
    for tool in ("curl", "redis-server", "redis-cli"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        yield build_mesh(lab)
