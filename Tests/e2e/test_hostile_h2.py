"""A hostile HTTP/2 peer at the mesh port (issue 14), end to end.

A `node` pod runs weft and mesh_app.py on :9390; an `attacker` pod, with no
weft of its own, speaks HTTP/2 straight to the node's mesh port with
h2_peer.py (the `h2` package's frames, its own checks off). One misbehaving
peer must not degrade the node for anyone else.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from topology import APPS, PY
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

APP_PORT, MESH_PORT = 9390, 15008
H2_APP_PORT = 9392  # nghttpd --no-tls: an HTTP/2 (h2c) app behind the node


@pytest.fixture(scope="module")
def lab(root, weft_bin):
    try:
        __import__("h2")
    except ImportError:
        pytest.skip("python package h2 not installed (Tests/e2e/requirements.txt)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        node = lab.add_pod("node")
        attacker = lab.add_pod("attacker")
        app = node.spawn([PY, APPS / "mesh_app.py", "--port", APP_PORT, "--name", "node"], name="mesh_app")
        node.wait_port(APP_PORT, proc=app)
        htdocs = lab.workdir / "htdocs"
        htdocs.mkdir(exist_ok=True)
        (htdocs / "index.html").write_text("h2c app\n")
        htdocs.chmod(0o755)
        h2app = node.spawn(["nghttpd", "--no-tls", "-d", htdocs, H2_APP_PORT], name="nghttpd")
        node.wait_port(H2_APP_PORT, proc=h2app)
        node.init()
        node.start_weft({"node": {"id": "node"}})
        lab.node, lab.attacker, lab.app = node, attacker, app
        yield lab


def peer(lab, mode: str, *args: str, dst: str | None = None) -> dict:
    dst = dst or f"{lab.node.ip4}:{APP_PORT}"
    res = lab.attacker.run([PY, APPS / "h2_peer.py", mode, lab.node.ip4, str(MESH_PORT), "--dst", dst, *args],
                           check=False, timeout=120)
    assert res.returncode == 0, (res.stdout, res.stderr[-2000:])
    return json.loads(res.stdout)


def test_a_rapid_reset_flood_neither_floods_the_app_nor_hurts_later_requests(lab):
    node = lab.node
    connects = node.metric("weft_upstream_connects_total")
    pool_full = node.metric("weft_limit_hits_total", limit="upstream_pool")
    floods = node.metric("weft_limit_hits_total", limit="http2_flood")
    flood = peer(lab, "rapid-reset", "--streams", "2000")
    print(f"rapid reset: {flood}")
    assert flood["sent"] >= 100
    # Once 500 streams are open and most were reset before an answer, the
    # node ends the connection itself, and counts it.
    assert flood["goaway"] is not None and flood["goaway"]["error"] == 11, flood  # ENHANCE_YOUR_CALM
    assert node.metric("weft_limit_hits_total", limit="http2_flood") == floods + 1
    opened = node.metric("weft_upstream_connects_total") - connects
    print(f"connections weft opened to the app during the flood: {opened:.0f}")
    # Cancelled streams give back what they started: a stream cancelled
    # while it waited for a connection leaves the queue, so the app sees a
    # fraction of the flood (one connection per cancelled stream before).
    # Those whose connection came first had their request sent: that
    # connection is closed, as the app is mid-answer.
    assert opened < flood["sent"] / 4, (opened, flood["sent"])
    assert node.metric("weft_limit_hits_total", limit="upstream_pool") == pool_full
    # Every later request is answered by the app.
    after = peer(lab, "request", "--count", "50")
    assert [a["status"] for a in after["answers"]] == [200] * 50, after


def test_a_rapid_reset_flood_towards_an_http2_app_leaves_its_connection_usable(lab):
    # Streams for an h2c app ride one multiplexed connection from the node
    # to the app: each cancelled mesh stream must cancel its app stream and
    # give back its slot, or the app connection fills up for good.
    node = lab.node
    dst = f"{node.ip4}:{H2_APP_PORT}"
    # Three floods, each on its own connection (the node ends each one
    # after 500 streams reset before their answer).
    for _ in range(3):
        flood = peer(lab, "rapid-reset", "--streams", "2000", "--orig-proto", "HTTP/2", dst=dst)
        print(f"rapid reset towards the h2c app: {flood}")
        assert flood["sent"] >= 100
    after = peer(lab, "request", "--count", "50", "--orig-proto", "HTTP/2", dst=dst)
    assert [a["status"] for a in after["answers"]] == [200] * 50, after
    # And the HTTP/1 app is served as before.
    plain = peer(lab, "request", "--count", "5")
    assert [a["status"] for a in plain["answers"]] == [200] * 5, plain


def test_headers_on_a_lower_stream_id_is_a_connection_error(lab):
    result = peer(lab, "lower-stream")
    print(f"lower stream id: {result}")
    assert result["first"] == 200
    assert result["stream3"] is None, "the request on stream 3 was served"
    assert result["goaway"] is not None and result["goaway"]["error"] == 1, result  # PROTOCOL_ERROR


def test_a_request_for_another_address_gets_403_with_its_reason_not_a_bare_reset(lab):
    result = peer(lab, "request", dst="198.18.0.250:80")
    assert result["answers"] == [{"status": 403, "reason": "not_local", "reset": None}], result
    # Nor for one of weft's own ports, whatever address names it.
    own = peer(lab, "request", dst=f"{lab.node.ip4}:15000")
    assert own["answers"][0]["status"] == 403, own


def test_malformed_requests_are_reset_and_never_reach_the_app_as_http1(lab):
    result = peer(lab, "malformed")
    print(f"malformed: {result}")
    for case, outcome in result["cases"].items():
        # RST_STREAM PROTOCOL_ERROR (1), never an answer from the app.
        assert outcome["status"] is None and outcome["reset"] == 1, (case, outcome)
    assert len(result["cases"]) == 7
    assert result["good"] == 200, "a malformed request spoiled the connection for the next one"
    seen = lab.app.log()
    for case in result["cases"]:
        assert f"/{case}" not in seen, f"{case} reached the app:\n{seen[-2000:]}"
    assert "/good" in seen


def test_a_body_its_head_does_not_frame_never_reaches_the_app_as_a_request(lab):
    result = peer(lab, "unframed-body")
    print(f"unframed-body: {result}")
    # A GET whose stream goes on: its body is sent to the app chunked.
    assert result["cases"]["get"]["status"] == 200, result
    # HTTP/1.0 has no chunks: a body of no length is refused, never written.
    assert result["cases"]["http10"]["status"] == 400, result
    assert result["cases"]["http10"]["reason"] == "bad_mesh_request", result
    seen = lab.app.log()
    assert "/get-with-body" in seen
    assert "/smuggled" not in seen, f"a body was read as a request:\n{seen[-2000:]}"


# kind, frames sent, whether the node says why with GOAWAY ENHANCE_YOUR_CALM
# (the other two end in nghttp2's own checks: the connection is just closed).
FLOODS = [
    ("empty-data", 100, True),
    ("priority", 150, True),
    ("window-update", 100, True),
    ("continuation", 200, False),
    ("ping", 50_000, False),
    ("settings", 50_000, False),
]


@pytest.mark.parametrize("kind,count,calm", FLOODS, ids=[f[0] for f in FLOODS])
def test_a_frame_flood_ends_that_connection_is_counted_and_spares_everyone_else(lab, kind, count, calm):
    node = lab.node
    floods = node.metric("weft_limit_hits_total", limit="http2_flood")
    result = peer(lab, "flood", "--kind", kind, "--count", str(count))
    print(f"{kind} flood: {result}")
    assert result["closed"], f"the node put up with {result['sent']} {kind} frames"
    if calm:
        assert result["goaway"] is not None and result["goaway"]["error"] == 11, result
    assert node.metric("weft_limit_hits_total", limit="http2_flood") == floods + 1
    after = peer(lab, "request", "--count", "5")
    assert [a["status"] for a in after["answers"]] == [200] * 5, after


def test_an_hpack_bomb_is_refused_without_losing_the_connection(lab):
    node = lab.node
    header_limits = node.metric("weft_limit_hits_total", limit="header_list")
    result = peer(lab, "hpack-bomb")
    print(f"hpack bomb: {result}")
    # 100 bytes that decode to 400 KB: over the 64 KiB header-list cap, so
    # the stream is reset (REFUSED_STREAM or PROTOCOL_ERROR), never served...
    assert result["bomb"]["status"] is None and result["bomb"]["reset"] is not None, result
    assert node.metric("weft_limit_hits_total", limit="header_list") == header_limits + 1
    assert "/bomb" not in lab.app.log()
    # ...and the connection's HPACK state is intact: the next request is served.
    assert result["after"] == {"status": 200, "reset": None}, result


SILENT_PORT = 9394  # accepts connections (the kernel does) and never answers


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_peer_opening_more_streams_than_announced_loses_its_connection_and_is_counted(lab):
    # Requests for an app that never answers keep their streams open, so
    # the node really holds 1024 of them when the 1025th arrives.
    node = lab.node
    silent = node.spawn([PY, "-c", "import socket, time\n"
                         "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                         f"s.bind(('0.0.0.0', {SILENT_PORT})); s.listen(4096); time.sleep(300)"],
                        name="silent_app")
    try:
        node.wait_port(SILENT_PORT, proc=silent)
        fds = open_fds(node.weft.pid)
        over = node.metric("weft_limit_hits_total", limit="http2_streams")
        connects = node.metric("weft_upstream_connects_total", result="success")
        result = peer(lab, "many-streams", "--streams", "1100", dst=f"{node.ip4}:{SILENT_PORT}")
        opened = node.metric("weft_upstream_connects_total", result="success") - connects
        print(f"too many streams: {result}; the node opened {opened:.0f} connections to the app")
        assert result["announced"] == 1024, result
        # The peer had acknowledged the limit, so going over it ends the
        # connection (RFC 9113 §5.1.2 allows a stream or connection error;
        # nghttp2 takes the latter); streams 1..2047 were the ones processed.
        assert result["goaway"] is not None and result["goaway"]["error"] == 1, result  # PROTOCOL_ERROR
        assert result["goaway"]["last_stream_id"] == 2 * 1024 - 1, result
        assert node.metric("weft_limit_hits_total", limit="http2_streams") == over + 1
        # The streams the node had started on (a connection each to the
        # app, opened 16 at a time) give back what they took once the
        # peer's connection is gone. Connects still in flight then (16 at
        # most) may stay as idle keep-alive connections of the pool.
        assert opened > 16, f"only {opened} connections: the check below would prove nothing"
        deadline = time.monotonic() + 20
        while open_fds(node.weft.pid) > fds + 16 and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"node descriptors: {fds} before, {open_fds(node.weft.pid)} after")
        assert open_fds(node.weft.pid) <= fds + 16, (fds, open_fds(node.weft.pid))
    finally:
        silent.stop()
    after = peer(lab, "request", "--count", "5")
    assert [a["status"] for a in after["answers"]] == [200] * 5, after


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_peer_that_never_opens_its_window_costs_the_node_bounded_memory(lab):
    # 8 streams of 32 MiB each towards a peer whose stream windows stay 0:
    # the node holds back (a stream's queue stops at its watermark and the
    # app's socket is read no further), so its memory stays flat instead of
    # taking the 256 MiB the app is ready to send.
    node = lab.node
    before = rss_kib(node.weft.pid)
    holder = lab.attacker.spawn([PY, APPS / "h2_peer.py", "zero-window", lab.node.ip4, str(MESH_PORT),
                                 "--dst", f"{node.ip4}:{APP_PORT}", "--count", "8",
                                 "--path", f"/bytes?n={32 << 20}", "--hold", "6"], name="zero-window")
    time.sleep(4)  # a bound for the app to push what it can, not a measurement
    during = rss_kib(node.weft.pid)
    deadline = time.monotonic() + 30
    while holder.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert holder.stop() == 0, holder.log()[-2000:]
    result = json.loads(holder.log().strip().splitlines()[-1])
    print(f"zero window: RSS {before} kB before, {during} kB while held; {result}")
    assert result["statuses"] == [200] * 8, result
    assert result["body_bytes"] == 0, "DATA arrived through a closed window"
    assert during - before < 32 * 1024, f"the node buffered {during - before} kB for a peer that reads nothing"
    after = peer(lab, "request", "--count", "5")
    assert [a["status"] for a in after["answers"]] == [200] * 5, after
