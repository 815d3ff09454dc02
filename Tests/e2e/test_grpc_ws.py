"""HTTP/2 apps and upgraded connections through the mesh (issue 3), end to end.

gRPC (grpcio from PyPI) and h2load (Debian's nghttp2-client) speak
prior-knowledge h2c to `mesh: true` VIPs: the mesh carries them as HTTP/2 end
to end, trailers intact. A WebSocket (the `websockets` package) is an HTTP/1.1
Upgrade, carried on a CONNECT stream. The servers run in the backend pod.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from topology import APPS, GRPC_PORT, H2_PORT, PY, WS_PORT, build_http_mesh
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

MESH_PORT = 15008


@pytest.fixture(scope="module", params=["h2c", "mtls"])
def hm(request, root, weft_bin):
    """The suite runs twice: over plaintext h2c, and with mTLS between the nodes."""
    for tool in ("curl", "h2load", "nghttpd"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/install-deps)")
    for mod in ("grpc", "websockets"):
        try:
            __import__(mod)
        except ImportError:
            pytest.skip(f"python package {mod} not installed (Tests/e2e/requirements.txt)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        yield build_http_mesh(lab, tls=request.param == "mtls")


@pytest.fixture(scope="module")
def grpc_run(hm):
    # The native resolver reads the pod's /etc/hosts (backend-grpc -> VIP).
    res = hm.client.run([PY, APPS / "grpc_client.py", f"backend-grpc:{GRPC_PORT}",
                         "--timeout", "20"], check=False, timeout=60,
                        env={"GRPC_DNS_RESOLVER": "native"})
    assert res.returncode == 0, (res.stdout, res.stderr[-3000:])
    return json.loads(res.stdout)


def test_grpc_unary_with_metadata_and_trailers(grpc_run):
    u = grpc_run["unary"]
    assert u["code"] == "OK"
    assert u["ok"], u  # 1 MiB request echoed back byte for byte
    assert u["initial"].get("x-initial") == "yes"
    assert u["trailing"].get("x-trailer") == "unary-ok"
    assert u["trailing"].get("x-bin-bin") == "0001ff"          # binary trailer
    assert u["trailing"].get("x-seen-client") == "py-client"   # request metadata arrived


def test_grpc_error_status_details_and_trailers(grpc_run):
    f = grpc_run["fail"]
    assert f["code"] == "FAILED_PRECONDITION", f
    assert f["details"] == "refused: no thanks"
    assert f["trailing"].get("x-trailer") == "failing"


def test_grpc_bidirectional_streaming(grpc_run):
    b = grpc_run["bidi"]
    # each of the 50 messages was answered before the next one was sent
    assert b["answers_ok"] == 50, b
    assert b["extra"] == 0
    assert b["code"] == "OK"
    assert b["trailing"] == {"x-trailer": "bidi-done", "x-messages": "50"}


def test_websocket_echo(hm):
    res = hm.client.run([PY, APPS / "ws_client.py", f"ws://backend-ws:{WS_PORT}",
                         "--timeout", "20"], check=False, timeout=60)
    assert res.returncode == 0, (res.stdout, res.stderr[-3000:])
    got = json.loads(res.stdout)
    assert got == {"greeting": "hello /hello", "text_ok": 20, "binary_ok": True,
                   "binary_size": 1 << 20, "close_code": 1000}


def test_h2load_prior_knowledge_h2c_no_errors(hm):
    res = hm.client.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", "-T", "20", "-N", "20",
                         f"http://backend-h2:{H2_PORT}/"], check=False, timeout=90)
    out = res.stdout
    assert res.returncode == 0, (out[-3000:], res.stderr[-2000:])
    assert "Application protocol: h2c" in out, out[-3000:]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    assert m, out[-3000:]
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    assert (done, ok, failed, errored, timeout) == (2000, 2000, 0, 0, 0), m.group(0)
    assert re.search(r"status codes: 2000 2xx", out), out[-3000:]


def test_h2_traffic_rides_the_mesh(hm):
    # After the tests above: the h2c and gRPC streams went over 15008, on at
    # most one mesh connection per event loop.
    res = hm.client.run(["ss", "-Htn", "state", "established", f"( dport = :{MESH_PORT} )"],
                        check=False)
    conns = [line for line in res.stdout.splitlines() if line.strip()]
    loops = int(hm.client.run(["nproc"]).stdout.strip())
    assert 1 <= len(conns) <= loops, (res.stdout, loops)
    assert hm.client.metric("weft_mesh_streams_total") >= 2000


def test_nodes_alive_at_the_end(hm):
    assert hm.client.weft.alive(), hm.client.weft_log()[-4000:]
    assert hm.backend.weft.alive(), hm.backend.weft_log()[-4000:]
