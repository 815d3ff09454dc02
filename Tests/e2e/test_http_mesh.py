"""HTTP/1.1 through the HTTP/2 mesh (issue 3), end to end.

An unmodified client (curl, or Python's socket/http.client) in the client pod
calls `backend-mesh`, a VIP of a `mesh: true` cluster. The client node carries
each request as an HTTP/2 stream over one persistent connection to the backend
node's mesh port (15008), which delivers it to mesh_app.py over loopback as
ordinary HTTP/1.1. Every HTTP semantic must survive the two translations.

Some tests assert what only the mesh can do (connections to 15008,
weft_mesh_* metrics, 502 + weft-reason, stripping hop-by-hop headers): they
would fail if `mesh: true` clusters fell back to a plain TCP relay.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from topology import (APPS, MESH_DOWN_PORT, MESH_HTTP_PORT, PY,
                      build_http_mesh)
import weftlab  # noqa: E402 - on sys.path via topology

sys.path.insert(0, str(APPS))
from mesh_app import pattern  # noqa: E402

pytestmark = pytest.mark.root

HOST = "backend-mesh"
BASE = f"http://{HOST}:{MESH_HTTP_PORT}"
MESH_PORT = 15008
MiB = 1 << 20

HOP_BY_HOP = {"connection", "keep-alive", "te", "transfer-encoding", "upgrade",
              "proxy-connection", "proxy-authorization", "x-hop-named"}


@pytest.fixture(scope="module", params=["h2c", "mtls"])
def hm(request, root, weft_bin):
    """client + backend pods; the backend's apps known to the client node
    only as `mesh: true` clusters. The suite runs twice: over plaintext h2c,
    and with mTLS between the nodes."""
    for tool in ("curl", "ss"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/install-deps)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        yield build_http_mesh(lab, tls=request.param == "mtls")


# -- helpers -----------------------------------------------------------------


def curl_full(pod, url, *args, timeout=30):
    """curl with the response headers dumped into stdout ahead of the body:
    returns (completed, status, headers {lower: value}, body)."""
    res = pod.curl(url, "-D", "-", *args, timeout=timeout)
    return (res, *split_response(res.stdout))


def split_response(text):
    # (pod.run decodes text with universal newlines: CRLF arrives as LF)
    status, headers, body = 0, {}, text.replace("\r\n", "\n")
    # skip any 1xx blocks curl printed before the final response
    while True:
        head, sep, rest = body.partition("\n\n")
        if not sep:
            return status, headers, body
        lines = head.split("\n")
        m = re.match(r"HTTP/\S+ (\d{3})", lines[0])
        if not m:
            return status, headers, body
        status = int(m.group(1))
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = rest
        if status >= 200:
            return status, headers, body


def sequence(pod, *requests, pipeline=False, timeout=20):
    cmd = [PY, APPS / "http_client.py", "sequence", HOST, str(MESH_HTTP_PORT), *requests,
           "--timeout", str(timeout)]
    if pipeline:
        cmd.append("--pipeline")
    res = pod.run(cmd, check=False, timeout=timeout + 20)
    assert res.returncode == 0, (res.stdout, res.stderr)
    return json.loads(res.stdout)


def mesh_conns(pod) -> set[str]:
    """Local address:port of each established TCP connection to port 15008."""
    res = pod.run(["ss", "-Htn", "state", "established", f"( dport = :{MESH_PORT} )"],
                  check=False)
    return {line.split()[-2] for line in res.stdout.splitlines() if line.strip()}


def nproc(pod) -> int:
    return int(pod.run(["nproc"]).stdout.strip())


def echoed_headers(pod, *curl_args):
    res = pod.curl(f"{BASE}/headers", *curl_args)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    return seen, [(k.lower(), v) for k, v in seen["headers"]]


# -- plain requests ------------------------------------------------------------


def test_curl_http11(hm):
    res = hm.client.curl(f"{BASE}/hello", "-w", "%{http_version} %{http_code}\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["hello from mesh-backend; peer=127.0.0.1", "1.1 200"]


def test_curl_http10(hm):
    res = hm.client.curl(f"{BASE}/hello", "-0", "-w", "%{http_code}\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["hello from mesh-backend; peer=127.0.0.1", "200"]
    # The app is asked as HTTP/1.0 would ask; Host is there.
    seen, headers = echoed_headers(hm.client, "-0")
    assert ("host", f"{HOST}:{MESH_HTTP_PORT}") in headers
    assert seen["method"] == "GET"


def test_http10_client_gets_no_chunked_framing(hm):
    # The app streams without a length; an HTTP/1.0 client must get a body it
    # can read (close-delimited or with a length), never chunked framing.
    res, status, headers, body = curl_full(hm.client, f"{BASE}/slow?chunks=5&delay=0.02", "-0")
    assert res.returncode == 0, res.stderr
    assert status == 200
    assert "chunked" not in headers.get("transfer-encoding", ""), headers
    assert body == "".join(f"chunk {i:04d}\n" for i in range(5))


# -- bodies ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upload_file(hm):
    path = hm.lab.workdir / "upload-32m"
    data = os.urandom(32 * MiB)
    path.write_bytes(data)
    path.chmod(0o644)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("mode", ["content-length", "chunked", "expect-100-continue"])
def test_32mb_upload_sha256(hm, upload_file, mode):
    path, want = upload_file
    args = ["-X", "POST", "--data-binary", f"@{path}", "-H", "Content-Type: application/octet-stream"]
    if mode == "content-length":
        args += ["-H", "Expect:"]           # curl would add Expect for a body this big
    elif mode == "chunked":
        args += ["-H", "Transfer-Encoding: chunked", "-H", "Expect:"]
    else:
        # curl waits this long for the 100 before sending anyway: the
        # interim response has to come back through both nodes.
        args += ["-H", "Expect: 100-continue", "--expect100-timeout", "20", "-v"]
    res = hm.client.curl(f"{BASE}/sha256", *args, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    assert got["size"] == 32 * MiB, got
    assert got["sha256"] == want, got
    if mode == "expect-100-continue":
        assert re.search(r"^< HTTP/1\.1 100 Continue", res.stderr, re.M), res.stderr[-2000:]


def test_upgrade_with_a_body_is_served_as_a_plain_request(hm, upload_file):
    # An Upgrade whose request has a body is declined (docs/mesh.md): the
    # 32 MiB body streams to the app whole, in HTTP/1.1, and curl reads
    # the plain response.
    path, want = upload_file
    res = hm.client.curl(f"{BASE}/sha256", "-X", "POST", "--data-binary", f"@{path}", "-H", "Expect:",
                         "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                         "-w", "\n%{http_code}", timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    body, status = res.stdout.rsplit("\n", 1)
    assert status == "200", res.stdout[-500:]
    got = json.loads(body)
    assert got["size"] == 32 * MiB, got
    assert got["sha256"] == want, got


def test_64mb_download_arrives_whole(hm):
    n = 64 * MiB
    out = hm.lab.workdir / "download-64m"
    res = hm.client.curl(f"{BASE}/bytes?n={n}", "-o", str(out),
                         "-w", "%{http_code} %{size_download}", timeout=90)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["200", str(n)]
    data = out.read_bytes()
    out.unlink()
    assert len(data) == n
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(pattern(n)).hexdigest()


def test_slow_chunked_response_arrives_in_full(hm):
    res, status, headers, body = curl_full(hm.client, f"{BASE}/slow?chunks=20&delay=0.05")
    assert res.returncode == 0, res.stderr
    assert status == 200
    assert body == "".join(f"chunk {i:04d}\n" for i in range(20))


# -- status codes and framing -------------------------------------------------------


def test_head_keeps_content_length_and_sends_no_body(hm):
    # On one connection: a stray body byte after the HEAD answer would break
    # the GET's response.
    head, get = sequence(hm.client, "HEAD /bytes?n=12345", "GET /hello")
    assert head["status"] == 200
    assert head["headers"].get("content-length") == "12345", head
    assert head["body"] == ""
    assert get["status"] == 200
    assert get["body"].startswith("hello from mesh-backend"), get
    res = hm.client.curl(f"{BASE}/bytes?n=12345", "-I")
    assert res.returncode == 0, res.stderr
    assert re.search(r"^content-length: 12345\r?$", res.stdout, re.I | re.M), res.stdout


def test_204_and_304_pass_without_body(hm):
    r204, r304, after = sequence(hm.client, "GET /status/204", "GET /status/304", "GET /hello")
    assert r204["status"] == 204 and r204["headers"].get("x-app-status") == "204", r204
    assert r304["status"] == 304 and r304["headers"].get("etag") == '"v1"', r304
    assert after["status"] == 200 and after["body"].startswith("hello from"), after
    for code in (204, 304):
        res = hm.client.curl(f"{BASE}/status/{code}", "-w", "%{http_code}")
        assert res.returncode == 0, res.stderr
        assert res.stdout == str(code)


def test_app_503_passes_through_unchanged(hm):
    res, status, headers, body = curl_full(hm.client, f"{BASE}/status/503")
    assert res.returncode == 0, res.stderr
    assert status == 503
    assert body == "status 503 from mesh-backend\n"
    assert headers.get("x-app-status") == "503"
    assert headers.get("retry-after") == "7"
    assert "weft-reason" not in headers, headers  # the app's answer, not weft's


# -- headers ---------------------------------------------------------------------


def test_host_kept_and_no_weft_headers_reach_the_app(hm):
    seen, headers = echoed_headers(hm.client, "-H", "X-Custom: kept, as is")
    assert ("host", f"{HOST}:{MESH_HTTP_PORT}") in headers, headers
    assert ("x-custom", "kept, as is") in headers
    assert not [k for k, _ in headers if k.startswith("weft-")], headers
    assert seen["peer"] == "127.0.0.1"


def test_hop_by_hop_headers_never_reach_the_app(hm):
    # Through a plain TCP relay the app sees all of these; the mesh strips them.
    seen, headers = echoed_headers(
        hm.client,
        "-H", "Connection: keep-alive, X-Hop-Named",
        "-H", "X-Hop-Named: secret",
        "-H", "Keep-Alive: timeout=5, max=100",
        "-H", "TE: gzip",
        "-H", "Upgrade: foo/1",
        "-H", "Proxy-Connection: keep-alive",
        "-H", "Proxy-Authorization: Basic d2VmdDp3ZWZ0",
        "-H", "X-End-To-End: stays",
    )
    names = {k for k, _ in headers}
    assert not names & HOP_BY_HOP, headers
    assert ("x-end-to-end", "stays") in headers
    assert ("host", f"{HOST}:{MESH_HTTP_PORT}") in headers


def test_client_sent_weft_headers_are_not_passed_or_trusted(hm):
    # An app cannot steer the receiver (weft-dst) or smuggle weft-* headers.
    seen, headers = echoed_headers(
        hm.client,
        "-H", "weft-dst: 127.0.0.1:22",
        "-H", "Weft-Orig-Proto: HTTP/2",
        "-H", "weft-reason: spoofed",
    )
    assert seen["path"] == "/headers"
    assert not [k for k, _ in headers if k.startswith("weft-")], headers


# -- connections -------------------------------------------------------------------


def test_two_pipelined_requests_answered_in_order(hm):
    # The first answer is slow and chunked; the second must still come second.
    first, second = sequence(hm.client, "GET /slow?chunks=5&delay=0.05", "GET /headers?seq=2",
                             pipeline=True)
    assert first["status"] == 200
    assert first["body"] == "".join(f"chunk {i:04d}\n" for i in range(5))
    assert second["status"] == 200
    assert json.loads(second["body"])["path"] == "/headers?seq=2"


@pytest.fixture(scope="module")
def load_run(hm):
    """4000 GETs from 32 keep-alive app connections, once per module; then
    what the client pod and node say about the mesh connections."""
    res = hm.client.run([PY, APPS / "http_client.py", "load", HOST, str(MESH_HTTP_PORT),
                         "--connections", "32", "--requests", "4000", "--deadline", "100",
                         "--timeout", "15"], check=False, timeout=150)
    return {
        "rc": res.returncode,
        "result": json.loads(res.stdout) if res.stdout.strip() else {"stderr": res.stderr},
        "conns": mesh_conns(hm.client),
        "nproc": nproc(hm.client),
        "metrics": hm.client.metrics_text(),
    }


def test_4000_requests_from_32_connections_all_succeed(load_run):
    r = load_run["result"]
    assert load_run["rc"] == 0, r
    assert r["ok"] == 4000 and r["failed"] == 0, r
    assert r["connections_opened"] == 32, r


def test_4000_requests_share_one_mesh_connection_per_event_loop(load_run):
    conns, loops, text = load_run["conns"], load_run["nproc"], load_run["metrics"]
    assert 1 <= len(conns) <= loops, (conns, loops)
    gauge = weftlab.metric_value(text, "weft_mesh_connections", role="client")
    assert 1 <= gauge <= loops, (gauge, loops)
    streams = weftlab.metric_value(text, "weft_mesh_streams_total")
    assert streams >= 4000, streams


# -- failures ------------------------------------------------------------------------


def test_closed_app_port_on_meshed_endpoint_answers_502(hm):
    res, status, headers, body = curl_full(hm.client, f"http://backend-down:{MESH_DOWN_PORT}/",
                                           timeout=10)
    assert res.returncode == 0, res.stderr  # an HTTP answer, not a reset or a hang
    assert status == 502, (status, headers, body)
    assert headers.get("weft-reason"), headers
    ok = hm.client.curl(f"{BASE}/hello")
    assert ok.returncode == 0, ok.stderr


def _slow_download_then_kill_peer(hm, name):
    """Start a 20 s chunked download, SIGKILL the backend's weft once bytes
    flow, and return (curl exit code, http code, bytes received)."""
    out = hm.lab.workdir / f"{name}.out"
    url = f"{BASE}/slow?chunks=400&delay=0.05"
    proc = hm.client.spawn(["curl", "-sS", "-N", "--noproxy", "*", "--max-time", "60",
                            "-o", str(out), "-w", "\nCODE=%{http_code}\n", url], name=name)
    deadline = time.monotonic() + 15
    while not (out.exists() and out.stat().st_size >= 3 * 11):
        assert proc.alive(), proc.log()
        assert time.monotonic() < deadline, "no bytes of the slow download arrived"
        time.sleep(0.05)
    hm.backend.weft.stop(timeout=5, sig=signal.SIGKILL)
    try:
        rc = proc.popen.wait(timeout=20)  # far below curl's own --max-time 60
    except subprocess.TimeoutExpired:
        pytest.fail("the app's request hangs after the peer node died")
    m = re.search(r"CODE=(\d{3})", proc.log())
    return rc, int(m.group(1)) if m else 0, out.read_bytes() if out.exists() else b""


def _restart_backend_and_wait_for_success(hm):
    hm.backend.start_weft(hm.backend.weft_config_path.read_text())  # as before (mTLS or not)
    deadline = time.monotonic() + 20
    while True:
        res = hm.client.curl(f"{BASE}/hello", timeout=5)
        if res.returncode == 0 and res.stdout.startswith("hello from mesh-backend"):
            break
        assert time.monotonic() < deadline, ("no success after the peer restarted",
                                             res.returncode, res.stdout, res.stderr)
        time.sleep(0.25)
    for i in range(5):
        res = hm.client.curl(f"{BASE}/hello?again={i}")
        assert res.returncode == 0 and res.stdout.startswith("hello from"), (i, res.stderr)


def test_peer_killed_mid_stream_no_hang_then_recovers(hm):
    rc, code, body = _slow_download_then_kill_peer(hm, "killed-download")
    full = "".join(f"chunk {i:04d}\n" for i in range(400)).encode()
    assert rc != 28, "curl timed out: the app's request hung"
    # A 502 (before the response began), or a cut-off body (reset/short read).
    assert code == 502 or (rc != 0 and body != full), (rc, code, len(body))
    _restart_backend_and_wait_for_success(hm)


def test_peer_restart_gives_a_new_mesh_connection(hm):
    ok = hm.client.curl(f"{BASE}/hello")
    assert ok.returncode == 0, ok.stderr
    before = mesh_conns(hm.client)
    assert before, "no mesh connection to the backend node"
    rc, code, _ = _slow_download_then_kill_peer(hm, "killed-download-2")
    assert rc != 28 and (code == 502 or rc != 0), (rc, code)
    # While the peer node is down, requests answer 502 at once (connect failure).
    for i in range(3):
        res, status, headers, body = curl_full(hm.client, f"{BASE}/hello?down={i}", timeout=10)
        assert res.returncode == 0, res.stderr
        assert status == 502 and headers.get("weft-reason"), (status, headers, body)
    _restart_backend_and_wait_for_success(hm)
    after = mesh_conns(hm.client)
    assert after, "no mesh connection after the restart"
    assert not (after & before), (before, after)
    assert len(after) <= nproc(hm.client), after
    # The lost connection is no longer counted: the gauge matches the sockets.
    gauge = hm.client.metric("weft_mesh_connections", role="client")
    assert gauge == len(after), (gauge, after)


def test_nodes_alive_at_the_end(hm):
    assert hm.client.weft.alive(), hm.client.weft_log()[-4000:]
    assert hm.backend.weft.alive(), hm.backend.weft_log()[-4000:]
