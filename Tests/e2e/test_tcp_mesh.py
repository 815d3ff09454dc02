"""The walking skeleton, end to end: an unmodified client in one pod calls a
hostname that resolves to a VIP nobody owns; iptables hands the connection to
the client's weft (outbound 15001), which matches the VIP to a cluster and
connects to the backend pod, whose iptables hand it to that pod's weft
(inbound 15006), which delivers it to the app over loopback."""

import re
import secrets

import pytest

from topology import APPS, BANNER_PORT, DOWN_PORT, HTTP_PORT, HTTP_PORT_UNLISTED, PY, REDIS_PORT

pytestmark = pytest.mark.root


def test_curl_vip_hostname_reaches_backend(mesh):
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("hello from backend;"), res.stdout


def test_curl_as_proxy_uid_is_not_intercepted_and_fails(mesh):
    # uid 1337 is weft's own user: its traffic is not redirected, and the VIP
    # belongs to nobody, so without weft the request cannot succeed. This is
    # what proves that interception made the previous test work.
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/", user=1337, timeout=5)
    assert res.returncode != 0, res.stdout
    assert "hello from backend" not in res.stdout
    # ... and weft, intercepted or not, is still serving the app user.
    again = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert again.returncode == 0, again.stderr


def test_backend_sees_connection_over_loopback(mesh):
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend; peer=127.0.0.1"


def test_repeated_requests_all_succeed(mesh):
    for i in range(20):
        res = mesh.client.curl(f"http://backend:{HTTP_PORT}/req{i}")
        assert res.returncode == 0, (i, res.stderr)
        assert res.stdout.startswith("hello from backend;")


def test_http_post_body_round_trip(mesh):
    body = secrets.token_hex(64 * 1024)  # 128 KiB
    data_file = mesh.lab.workdir / "post-body"
    data_file.write_text(body)
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/echo", "--data-binary", f"@{data_file}",
                           "-H", "Content-Type: application/octet-stream", timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout == body


def test_redis_ping(mesh):
    res = mesh.client.run(["redis-cli", "-h", "backend", "-p", str(REDIS_PORT), "PING"],
                          check=False, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "PONG"


def test_redis_one_megabyte_set_get(mesh):
    value = secrets.token_hex(512 * 1024)  # 1 MiB of ASCII
    assert len(value) == 1024 * 1024
    cli = ["redis-cli", "-h", "backend", "-p", str(REDIS_PORT)]
    res = mesh.client.run(cli + ["-x", "SET", "big"], input=value, check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OK", res.stdout[:200]
    res = mesh.client.run(cli + ["--raw", "GET", "big"], check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    got = res.stdout[:-1] if res.stdout.endswith("\n") else res.stdout
    assert len(got) == len(value)
    assert got == value
    res = mesh.client.run(cli + ["STRLEN", "big"], check=False, timeout=30)
    assert res.stdout.strip() == str(len(value))


def test_server_speaks_first_on_opaque_port(mesh):
    # The client only reads: the banner must arrive through both nodes
    # without the client writing a byte (3306 is an opaque port: no detection).
    res = mesh.client.run([PY, APPS / "tcp_client.py", "banner", "backend", str(BANNER_PORT),
                           "--timeout", "10"], check=False, timeout=40)
    assert res.returncode == 0, (res.stdout, res.stderr)
    first, echo = res.stdout.splitlines()[:2]
    assert first == "220 banner"
    assert echo == "ping"


def test_half_close_and_backpressure_through_both_nodes(mesh):
    # 4 MiB written while the echo flows back, then a half-close: the rest of
    # the echo and the server's EOF must still arrive through both relays.
    res = mesh.client.run([PY, APPS / "tcp_client.py", "halfclose", "backend", str(BANNER_PORT),
                           "--size", str(4 << 20), "--timeout", "60"], check=False, timeout=120)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert res.stdout.splitlines() == ["220 banner", f"echoed {4 << 20}"]


def test_endpoint_down_fails_without_hanging(mesh):
    # The endpoint's pod has nothing on the port. The cluster is HTTP (its
    # protocol detected), so the app gets weft's 502 at once (SPEC §4), not
    # a hang until its own timeout. The backend pod's inbound listener takes
    # the connection and resets it when its app is not there, so the reason
    # is a reset (a pod without weft would give connect_failure).
    res = mesh.client.curl(f"http://backend:{DOWN_PORT}/", "-D", "-", timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("HTTP/1.1 502"), res.stdout
    assert re.search(r"weft-reason: (reset|connect_failure)", res.stdout), res.stdout
    ok = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert ok.returncode == 0, ok.stderr


def test_passthrough_allow_any(mesh):
    # 198.18.0.x:8080 is named by no cluster: relayed as TCP to where the app
    # sent it (and delivered by the backend's inbound side over loopback).
    res = mesh.client.curl(f"http://{mesh.backend.ip4}:{HTTP_PORT_UNLISTED}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend-8080; peer=127.0.0.1"


def test_direct_connection_to_outbound_port_is_refused(mesh):
    before = mesh.client.metric("weft_outbound_refused_total", reason="not_redirected")
    for host in ("127.0.0.1", "::1"):
        # The app user's traffic to 127.0.0.0/8 and ::1 is not redirected, so
        # this reaches 15001 directly: original destination == local address.
        res = mesh.client.run([PY, APPS / "tcp_client.py", "probe", host, "15001",
                               "--timeout", "10"], check=False, timeout=40)
        assert res.returncode == 0, (host, res.stdout, res.stderr)
        assert res.stdout.strip() in ("closed", "reset"), (host, res.stdout)
    after = mesh.client.metric("weft_outbound_refused_total", reason="not_redirected")
    assert after >= before + 2
    # The node keeps serving.
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("hello from backend;")


def test_app_calling_its_own_pod_address(mesh):
    # An app calling its own pod IP goes through the node's inbound side.
    app = mesh.client.spawn([PY, APPS / "http_app.py", "--port", "7070", "--name", "self"],
                            name="self_app")
    mesh.client.wait_port(7070, proc=app)
    try:
        res = mesh.client.curl(f"http://{mesh.client.ip4}:7070/")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "hello from self; peer=127.0.0.1"
    finally:
        app.stop()


@pytest.mark.parametrize("target", ["own-outbound", "peer-inbound", "peer-outbound"])
def test_connection_to_a_weft_listener_is_refused_not_looped(mesh, target):
    host, port = {"own-outbound": (mesh.client.ip4, 15001),
                  "peer-inbound": (mesh.backend.ip4, 15006),
                  "peer-outbound": (mesh.backend.ip4, 15001)}[target]
    res = mesh.client.curl(f"http://{host}:{port}/", "-D", "-", timeout=20)
    assert res.returncode != 28, res.stderr  # refused, not hanging in a loop
    if res.returncode == 0:
        # A peer's listener is an unknown destination; when clusters have
        # hostnames, its HTTP is served per request (SPEC §4 step 2), so
        # the refusal reaches the app as weft's 502 instead of a reset.
        assert res.stdout.startswith("HTTP/1.1 502"), res.stdout
        assert "weft-reason: " in res.stdout, res.stdout
    for pod in (mesh.client, mesh.backend):
        assert pod.weft.alive(), pod.weft_log()[-4000:]
    ok = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert ok.returncode == 0, ok.stderr


def test_ipv6_cluster_vip(mesh):
    res = mesh.client.curl(f"http://backend6:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend; peer=::1"


def test_ipv6_pod_address_passthrough(mesh):
    res = mesh.client.curl(f"http://[{mesh.backend.ip6}]:{HTTP_PORT_UNLISTED}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend-8080; peer=::1"


def test_health_endpoints(mesh):
    for pod in (mesh.client, mesh.backend):
        for path in ("/ready", "/healthz"):
            code, _ = pod.http_get(f"http://127.0.0.1:15020{path}")
            assert code == 200, (pod.name, path)
        code, body = pod.http_get("http://127.0.0.1:15020/metrics")
        assert code == 200
        assert "weft_" in body


def test_nodes_still_alive(mesh):
    assert mesh.client.weft.alive(), mesh.client.weft_log()[-4000:]
    assert mesh.backend.weft.alive(), mesh.backend.weft_log()[-4000:]
