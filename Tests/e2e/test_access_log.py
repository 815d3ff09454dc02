"""Access logs, request ids and trace context (SPEC §6), end to end.

A client pod and a backend pod, each with a weft node and an access log:
the client's in `text` to a file, the backend's in `json` to a file. The
backend runs mesh_app.py on :9390 (its /headers shows what the app
received) and banner_app.py on :7400 (TCP). The client's clusters:

    198.19.0.110:9390    log-http   mesh: true, the backend's mesh_app
    198.19.0.111:7400    log-tcp    protocol: tcp, mesh: true, the banner app

A second client pod, `flood`, logs to a FIFO that a reader holds open and
never reads: its writer blocks, and lines must be dropped and counted while
every request still succeeds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

APP_PORT, TCP_PORT = 9390, 7400
HTTP_SVC, HTTP_VIP = "log-http", "198.19.0.110"
TCP_SVC, TCP_VIP = "log-tcp", "198.19.0.111"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
REQUEST_ID = re.compile(r"^[0-9A-Za-z]{15}$")
TEXT_LINE = re.compile(
    r'^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<direction>\S+) (?P<cluster>\S+) (?P<endpoint>\S+) '
    r'"(?P<method>\S+) (?P<authority>\S+) (?P<path>\S+)" (?P<status>\S+) (?P<reason>\S+) (?P<bytes_in>\d+) '
    r'(?P<bytes_out>\d+) (?P<duration_ms>\d+\.\d{3}) (?P<attempts>\d+) (?P<request_id>\S+) (?P<trace_id>\S+) '
    r'(?P<peer>\S+)$')


def clusters(backend: weftlab.Pod) -> list[dict]:
    return [
        {"name": HTTP_SVC, "addresses": [f"{HTTP_VIP}:{APP_PORT}"], "hostnames": [HTTP_SVC], "mesh": True,
         "endpoints": [{"address": f"{backend.ip4}:{APP_PORT}"}]},
        {"name": TCP_SVC, "addresses": [f"{TCP_VIP}:{TCP_PORT}"], "hostnames": [TCP_SVC], "mesh": True,
         "protocol": "tcp", "endpoints": [{"address": f"{backend.ip4}:{TCP_PORT}"}]},
    ]


@pytest.fixture(scope="module")
def lab(root, weft_bin):
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        hosts = {HTTP_SVC: HTTP_VIP, TCP_SVC: TCP_VIP}
        client = lab.add_pod("client", hosts=hosts)
        flood = lab.add_pod("flood", hosts=hosts)
        backend = lab.add_pod("backend")
        app = backend.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", "backend"], name="mesh_app")
        backend.wait_port(APP_PORT, proc=app)
        banner = backend.spawn([PY, APPS / "banner_app.py", "--port", TCP_PORT], name="banner_app")
        backend.wait_port(TCP_PORT, proc=banner)
        for pod in (client, flood, backend):
            pod.init()
        lab.client_log = lab.workdir / "client-access.log"
        lab.backend_log = lab.workdir / "backend-access.log"
        for path in (lab.client_log, lab.backend_log):
            path.touch()
            path.chmod(0o666)  # weft runs as uid 1337
        backend.start_weft({"node": {"id": "backend"},
                            "access_log": {"format": "json", "path": str(lab.backend_log)}})
        client.start_weft({"node": {"id": "client"}, "clusters": clusters(backend),
                           "access_log": {"format": "text", "path": str(lab.client_log)}})
        lab.client, lab.flood, lab.backend = client, flood, backend
        yield lab


def lines_for(path, request_id: str, timeout: float = 5) -> list[str]:
    """The lines of `path` that mention `request_id` (written within 100 ms
    of the request's end; waits a bounded time)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in path.read_text().splitlines() if request_id in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def get_headers(pod: weftlab.Pod, *headers: str) -> dict:
    args = [a for h in headers for a in ("-H", h)]
    res = pod.curl(f"http://{HTTP_SVC}:{APP_PORT}/headers", *args, check=True)
    seen = json.loads(res.stdout)
    return {name.lower(): value for name, value in seen["headers"]}


def test_a_request_without_an_id_gets_one_that_every_log_and_the_app_see(lab):
    seen = get_headers(lab.client)
    request_id = seen["x-request-id"]
    assert REQUEST_ID.match(request_id), request_id
    # Another request, another id.
    assert get_headers(lab.client)["x-request-id"] != request_id
    # The client node's text line and the backend node's JSON line name it.
    [text] = lines_for(lab.client_log, request_id)
    fields = TEXT_LINE.match(text)
    assert fields, text
    assert (fields["direction"], fields["cluster"], fields["endpoint"]) == \
        ("outbound", HTTP_SVC, f"{lab.backend.ip4}:{APP_PORT}")
    assert (fields["method"], fields["authority"], fields["path"], fields["status"], fields["reason"]) == \
        ("GET", f"{HTTP_SVC}:{APP_PORT}", "/headers", "200", "-")
    assert int(fields["bytes_out"]) > 0 and fields["attempts"] == "1" and fields["trace_id"] == "-"
    [line] = lines_for(lab.backend_log, request_id)
    entry = json.loads(line)
    assert (entry["direction"], entry["protocol"], entry["method"], entry["path"], entry["status"]) == \
        ("inbound", "http", "GET", "/headers", 200)
    assert entry["endpoint"] == f"127.0.0.1:{APP_PORT}"
    assert entry["bytes_out"] == int(fields["bytes_out"])


def test_an_id_the_app_sent_is_kept(lab):
    seen = get_headers(lab.client, "X-Request-Id: my-own-id-42")
    assert seen["x-request-id"] == "my-own-id-42"
    assert len(lines_for(lab.client_log, "my-own-id-42")) == 1
    assert len(lines_for(lab.backend_log, "my-own-id-42")) == 1


def test_trace_context_crosses_the_mesh_unchanged_and_the_logs_carry_the_trace_id(lab):
    seen = get_headers(lab.client, f"traceparent: {TRACEPARENT}", f"tracestate: {TRACESTATE}",
                       "X-Request-Id: traced-1")
    assert (seen["traceparent"], seen["tracestate"]) == (TRACEPARENT, TRACESTATE)
    [text] = lines_for(lab.client_log, "traced-1")
    assert TEXT_LINE.match(text)["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    [line] = lines_for(lab.backend_log, "traced-1")
    entry = json.loads(line)
    assert (entry["trace_id"], entry["traceparent"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", TRACEPARENT)


def test_a_tcp_session_is_one_line_with_its_bytes(lab):
    before = len(lab.client_log.read_text().splitlines())
    # The banner app says `220 banner\r\n`, the client sends `ping\n` and reads the echo.
    res = lab.client.run([PY, APPS / "tcp_client.py", "banner", TCP_SVC, str(TCP_PORT)], check=False, timeout=30)
    assert res.returncode == 0, (res.stdout, res.stderr)
    deadline = time.monotonic() + 5
    while True:
        new = lab.client_log.read_text().splitlines()[before:]
        sessions = [TEXT_LINE.match(line) for line in new if '"TCP - -"' in line]
        if sessions or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(sessions) == 1, new
    session = sessions[0]
    assert (session["cluster"], session["endpoint"], session["status"]) == \
        (TCP_SVC, f"{lab.backend.ip4}:{TCP_PORT}", "-")
    assert (int(session["bytes_in"]), int(session["bytes_out"])) == (5, 12 + 5)


def test_a_writer_that_falls_behind_drops_lines_and_counts_them_never_traffic(lab):
    flood = lab.flood
    fifo = lab.workdir / "flood-access.fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    fifo.chmod(0o666)  # weft runs as uid 1337
    # A reader that holds the FIFO open and reads nothing: the pipe fills.
    holder = subprocess.Popen([PY, "-c", f"import time; f = open({str(fifo)!r}, 'rb'); time.sleep(300)"])
    try:
        flood.start_weft({"node": {"id": "flood"}, "clusters": clusters(lab.backend),
                          "access_log": {"format": "json", "path": str(fifo)}})
        total = 6000
        result = flood.run([PY, APPS / "balance_client.py", "http-load", HTTP_SVC, str(APP_PORT),
                            "--count", str(total), "--concurrency", "8", "--deadline", "120", "--timeout", "10"],
                           check=False, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
        assert len(json.loads(result.stdout)["answers"]) == total
        time.sleep(0.3)  # the last batches reach the queue
        dropped = flood.metric("weft_access_log_lines_total", result="dropped")
        written = flood.metric("weft_access_log_lines_total", result="written")
        print(f"writer stuck: {total} requests answered, {dropped:.0f} lines dropped, {written:.0f} written")
        assert dropped > 0 and written < total
        assert flood.metric("weft_requests_total", direction="outbound", status_class="2xx") == total
    finally:
        holder.kill()
        holder.wait()
        # With the reader gone, writes fail fast (EPIPE, ignored): the node
        # stops cleanly.
        assert flood.stop_weft() == 0
