"""mTLS between nodes (issue 10), end to end.

The client (`ns/default/sa/frontend`), `intruder` (`ns/default/sa/intruder`)
and backend nodes run with `listeners.mesh.tls` and certificates minted by
`weft certs`. The backend allows only the frontend to reach mesh_app's port
(`authorization`), refuses plaintext inbound (`inbound.plaintext: deny`)
and asks authz_app.py in an `authz` pod about every request (`ext_authz`).
An `attacker` pod with no weft speaks to the
backend's mesh port with `openssl s_client`, presenting no certificate, one
from another CA, an expired one, one of another trust domain, and (the
control) a good one. A capture of the mesh port (tshark) shows TLS 1.3 and
none of the request's bytes. The backend's certificate is rotated while a
long download runs.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from topology import (APPS, BACKEND_CONFIG, MESH_HTTP_PORT, PY, mesh_client_config,
                      start_mesh_apps)
import weftlab  # noqa: E402 - on sys.path via topology

pytestmark = pytest.mark.root

MESH_PORT = 15008
BASE = f"http://backend-mesh:{MESH_HTTP_PORT}"
PROXY_UID = 1337
AUTHZ_PORT = 9500


def weft_certs(weft_bin, *args: str) -> str:
    res = subprocess.run([str(weft_bin), "certs", *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


def node_dir(lab, identity: str) -> Path:
    """The directory of `identity`'s node.crt, node.key and ca.crt."""
    return Path(lab.mesh_tls(identity)["cert"]).parent


def tls_config(directory: Path) -> dict:
    return {"cert": str(directory / "node.crt"), "key": str(directory / "node.key"), "ca": str(directory / "ca.crt")}


@pytest.fixture(scope="module")
def mt(root, weft_bin):
    for tool in ("curl", "openssl", "tshark"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/install-deps)")
    try:
        __import__("cryptography")
        __import__("h2")
    except ImportError:
        pytest.skip("python packages cryptography and h2 (Tests/e2e/requirements.txt)")
    with weftlab.Lab(weft_bin=weft_bin) as lab:
        lab.backend_tls = node_dir(lab, "ns/shop/sa/backend")  # the lab's mesh CA comes with it
        ca = lab.workdir / "tls" / "ca"
        other_ca = lab.workdir / "tls" / "other-ca"
        weft_certs(weft_bin, "ca", "--trust-domain", "mesh.local", "--out", str(other_ca))
        lab.ca, lab.other_ca = ca, other_ca
        lab.client_tls = node_dir(lab, "ns/default/sa/frontend")
        lab.intruder_tls = node_dir(lab, "ns/default/sa/intruder")
        lab.weft_path = weft_bin
        lab.access_log = lab.workdir / "backend-access.log"

        from topology import MESH_HOSTS
        client = lab.add_pod("client", hosts=MESH_HOSTS)
        intruder = lab.add_pod("intruder", hosts=MESH_HOSTS)
        backend = lab.add_pod("backend")
        lab.attacker = lab.add_pod("attacker")
        authz = lab.add_pod("authz")
        lab.authz_app = authz.spawn([PY, APPS / "authz_app.py", "--port", AUTHZ_PORT], name="authz_app")
        authz.wait_port(AUTHZ_PORT, proc=lab.authz_app)
        lab.authz = authz
        start_mesh_apps(backend, lab.workdir)
        for pod in (client, intruder, backend):
            pod.init()
        lab.access_log.touch()
        os.chown(lab.access_log, PROXY_UID, PROXY_UID)
        backend.start_weft({
            **BACKEND_CONFIG,
            "listeners": {"mesh": {"tls": tls_config(lab.backend_tls)}, "inbound": {"plaintext": "deny"}},
            "authorization": [{"port": MESH_HTTP_PORT, "allow": ["spiffe://mesh.local/ns/default/sa/frontend"]}],
            "access_log": {"format": "json", "path": str(lab.access_log)},
            "clusters": [{"name": "authz", "protocol": "http1", "endpoints": [{"address": f"{authz.ip4}:{AUTHZ_PORT}"}]}],
            "ext_authz": {"cluster": "authz", "path": "/check", "timeout": "500ms", "forward_headers": ["x-user-id"]},
        })
        lab.client_config = {**mesh_client_config(backend),
                             "listeners": {"mesh": {"tls": tls_config(lab.client_tls)}}}
        client.start_weft(lab.client_config)
        intruder.start_weft({**mesh_client_config(backend), "node": {"id": "intruder"},
                             "listeners": {"mesh": {"tls": tls_config(lab.intruder_tls)}}})
        lab.client, lab.intruder, lab.backend = client, intruder, backend
        yield lab


def mesh_app_log(lab) -> str:
    return next(p for p in lab.backend.procs if p.name == "mesh_app").log()


def wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_mesh_requests_ride_mtls_between_the_nodes(mt):
    before = mt.backend.metric("weft_tls_handshakes_total", side="server", session="full")
    res = mt.client.curl(f"{BASE}/hello", "-o", "-", "-w", "\\n%{http_code}")
    assert res.stdout.strip().endswith("200"), res.stdout
    assert "hello from mesh-backend" in res.stdout
    # At least one verified TLS connection on each side (the client node
    # may have opened it for an earlier request of this module).
    assert mt.client.metric("weft_tls_handshakes_total", side="client", session="full") >= 1
    assert mt.backend.metric("weft_tls_handshakes_total", side="server", session="full") >= max(before, 1)
    # And nothing was refused between the two real nodes.
    for reason in ("no_certificate", "untrusted", "expired", "bad_identity", "handshake"):
        assert mt.backend.metric("weft_tls_refused_total", side="server", reason=reason) == 0
        assert mt.client.metric("weft_tls_refused_total", side="client", reason=reason) == 0


# -- who may reach what ----------------------------------------------------------


def access_lines(lab) -> list[dict]:
    return [json.loads(line) for line in lab.access_log.read_text().splitlines() if line.strip()]


def test_authorization_lets_the_allowed_identity_in_and_answers_others_403(mt):
    res = mt.client.curl(f"{BASE}/hello?from=frontend", "-o", "/dev/null", "-w", "%{http_code}")
    assert res.stdout == "200"
    res = mt.intruder.curl(f"{BASE}/hello?from=intruder", "-D", "-", "-o", "/dev/null")
    assert res.stdout.startswith("HTTP/1.1 403"), res.stdout
    assert "weft-reason: unauthorized" in res.stdout.lower(), res.stdout
    assert "from=intruder" not in mesh_app_log(mt)
    # The intruder's node did connect (mTLS is fine); its identity is what
    # the rule refuses. A port without a rule takes any authenticated peer.
    assert mt.intruder.metric("weft_tls_handshakes_total", side="client", session="full") >= 1
    res = mt.intruder.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                           f"http://backend-h2:8082/"], check=False, timeout=20)
    assert res.stdout == "200", res.stdout + res.stderr
    assert mt.backend.metric("weft_error_responses_total", status="403", reason="unauthorized") >= 1
    # The access log names each caller's verified identity.
    assert wait_for(lambda: any("from=intruder" in (line.get("path") or "") for line in access_lines(mt)))
    by_path = {line["path"]: line for line in access_lines(mt) if line.get("path")}
    frontend = by_path["/hello?from=frontend"]
    assert frontend["peer_identity"] == "spiffe://mesh.local/ns/default/sa/frontend", frontend
    assert frontend["status"] == 200
    intruder = by_path["/hello?from=intruder"]
    assert intruder["peer_identity"] == "spiffe://mesh.local/ns/default/sa/intruder", intruder
    assert (intruder["status"], intruder["reason"]) == (403, "unauthorized"), intruder


def test_strict_mode_refuses_plaintext_inbound_while_mesh_traffic_flows(mt):
    # The attacker calls the backend's app directly: redirected to the
    # inbound listener, which takes no plaintext.
    res = mt.attacker.run(["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                           f"http://{mt.backend.ip4}:{MESH_HTTP_PORT}/hello?from=plaintext"], check=False, timeout=20)
    assert res.returncode != 0 and res.stdout in ("", "000"), (res.returncode, res.stdout, res.stderr)
    assert "from=plaintext" not in mesh_app_log(mt)
    res = mt.client.curl(f"{BASE}/hello?from=mesh-in-strict-mode", "-o", "/dev/null", "-w", "%{http_code}")
    assert res.stdout == "200"


# -- ext_authz ---------------------------------------------------------------------


def checks(lab) -> list[dict]:
    return [json.loads(line) for line in lab.authz_app.log().splitlines() if line.startswith("{")]


def test_ext_authz_enriches_allowed_requests_with_the_services_headers(mt):
    res = mt.client.curl(f"{BASE}/headers?who=alice", "-H", "Authorization: Bearer alice",
                         "-H", "X-User-Id: mallory")
    got = json.loads(res.stdout)
    headers = {}
    for name, value in got["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    assert headers.get("x-user-id") == ["alice"], headers  # the caller's own claim is gone
    assert "x-not-forwarded" not in headers, headers
    check = next(c for c in checks(mt) if c["forwarded_uri"] == "/headers?who=alice")
    assert (check["method"], check["path"], check["forwarded_method"]) == ("POST", "/check", "GET"), check
    assert check["client_cert"] == "URI=spiffe://mesh.local/ns/default/sa/frontend", check
    assert check["user_header"] is None, "the caller's x-user-id reached the service"
    assert mt.backend.metric("weft_ext_authz_total", result="allowed") >= 1


def test_ext_authz_denials_reach_the_caller_as_the_service_answered(mt):
    denied = mt.backend.metric("weft_ext_authz_total", result="denied")
    res = mt.client.curl(f"{BASE}/hello?who=eve", "-H", "Authorization: Bearer eve", "-D", "-")
    assert res.stdout.startswith("HTTP/1.1 401"), res.stdout
    assert "www-authenticate: Bearer" in res.stdout, res.stdout
    assert res.stdout.endswith("no entry\n"), res.stdout
    assert "who=eve" not in mesh_app_log(mt)
    # An HTTP/2 app's request is judged the same way.
    res = mt.client.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                         "-H", "Authorization: Bearer eve", "http://backend-h2:8082/"], check=False, timeout=20)
    assert res.stdout == "401", res.stdout + res.stderr
    res = mt.client.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                         "-H", "Authorization: Bearer alice", "http://backend-h2:8082/"], check=False, timeout=20)
    assert res.stdout == "200", res.stdout + res.stderr
    assert mt.backend.metric("weft_ext_authz_total", result="denied") == denied + 2


def test_ext_authz_down_denies_with_403_and_recovers_when_it_is_back(mt):
    mt.authz_app.stop()
    try:
        res = mt.client.curl(f"{BASE}/hello?who=alice-while-down", "-H", "Authorization: Bearer alice", "-D", "-")
        assert res.stdout.startswith("HTTP/1.1 403"), res.stdout
        assert "weft-reason: ext_authz_failure" in res.stdout.lower(), res.stdout
        assert "alice-while-down" not in mesh_app_log(mt)
        assert mt.backend.metric("weft_ext_authz_total", result="failed") >= 1
    finally:
        mt.authz_app = mt.authz.spawn([PY, APPS / "authz_app.py", "--port", AUTHZ_PORT], name="authz_app")
        mt.authz.wait_port(AUTHZ_PORT, proc=mt.authz_app)
    res = mt.client.curl(f"{BASE}/hello?who=alice-again", "-H", "Authorization: Bearer alice",
                         "-o", "/dev/null", "-w", "%{http_code}")
    assert res.stdout == "200", res.stdout


# -- openssl s_client as the attacker ------------------------------------------


def h2_request_bytes(dst: str, path: str) -> bytes:
    """A client preface, SETTINGS and one mesh request, as raw bytes."""
    import h2.config
    import h2.connection
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "app"),
                          ("weft-dst", dst), ("weft-orig-proto", "HTTP/1.1")], end_stream=True)
    return conn.data_to_send()


def s_client(lab, path: str, *args: str) -> str:
    """openssl s_client to the backend's mesh port, trusting the mesh CA,
    sending one mesh request for `path`; gives up after 4 s."""
    request = h2_request_bytes(f"{lab.backend.ip4}:{MESH_HTTP_PORT}", path)
    res = lab.attacker.run(["timeout", "4", "openssl", "s_client", "-connect", f"{lab.backend.ip4}:{MESH_PORT}",
                            "-CAfile", str(lab.ca / "ca.crt"), "-ign_eof", *args],
                           input=request, text=False, check=False, timeout=20)
    return (res.stdout + res.stderr).decode(errors="replace")


def mint_with_cryptography(lab, name: str, uri: str, not_before: datetime.datetime,
                           not_after: datetime.datetime, ca: Path | None = None) -> tuple[Path, Path]:
    """A leaf certificate weft itself would never mint, signed by the mesh CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ca = ca or lab.ca
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = lab.workdir / "tls" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "node.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "node.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return out / "node.crt", out / "node.key"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def refusal_cases(lab) -> list[tuple[str, list[str], str]]:
    """(case, s_client arguments, the reason the backend counts)."""
    hour = datetime.timedelta(hours=1)
    expired = mint_with_cryptography(lab, "expired", "spiffe://mesh.local/ns/default/sa/frontend",
                                     now() - 3 * hour, now() - hour)
    future = mint_with_cryptography(lab, "future", "spiffe://mesh.local/ns/default/sa/frontend",
                                    now() + hour, now() + 3 * hour)
    foreign = mint_with_cryptography(lab, "foreign", "spiffe://other.local/ns/default/sa/frontend",
                                     now() - hour, now() + hour)
    not_spiffe = mint_with_cryptography(lab, "not-spiffe", "https://frontend.mesh.local/",
                                        now() - hour, now() + hour)
    weft_certs(lab.weft_path, "node", "--ca", str(lab.other_ca), "--identity", "ns/default/sa/frontend",
               "--out", str(lab.workdir / "tls" / "stranger"))
    stranger = lab.workdir / "tls" / "stranger"
    alpn = ["-alpn", "h2"]
    return [
        ("no certificate", alpn, "no_certificate"),
        ("another CA", alpn + ["-cert", str(stranger / "node.crt"), "-key", str(stranger / "node.key")], "untrusted"),
        ("expired", alpn + ["-cert", str(expired[0]), "-key", str(expired[1])], "expired"),
        ("not yet valid", alpn + ["-cert", str(future[0]), "-key", str(future[1])], "not_yet_valid"),
        ("another trust domain", alpn + ["-cert", str(foreign[0]), "-key", str(foreign[1])], "bad_identity"),
        ("no SPIFFE ID", alpn + ["-cert", str(not_spiffe[0]), "-key", str(not_spiffe[1])], "bad_identity"),
        ("no ALPN", ["-cert", str(lab.client_tls / "node.crt"), "-key", str(lab.client_tls / "node.key")], "no_alpn"),
        ("TLS 1.2", alpn + ["-tls1_2", "-cert", str(lab.client_tls / "node.crt"),
                            "-key", str(lab.client_tls / "node.key")], "handshake"),
    ]


def test_openssl_clients_without_a_valid_mesh_identity_are_refused_and_served_nothing(mt):
    backend = mt.backend
    for case, args, reason in refusal_cases(mt):
        counted = backend.metric("weft_tls_refused_total", side="server", reason=reason)
        marker = "/refused-" + case.replace(" ", "-")
        out = s_client(mt, marker, *args)
        assert wait_for(lambda: backend.metric("weft_tls_refused_total", side="server", reason=reason) == counted + 1), \
            f"{case}: not counted as {reason}\n{out[-3000:]}"
        assert marker not in mesh_app_log(mt), f"{case}: the app was served\n{out[-3000:]}"
        print(f"{case}: refused as {reason}")
    # Each refusal is logged with its reason.
    log = backend.weft_log()
    for reason in ("no_certificate", "untrusted", "expired", "bad_identity", "no_alpn"):
        assert f"reason={reason}" in log, reason


def test_an_openssl_client_with_a_mesh_certificate_is_served(mt):
    # The control for the refusals: the same client, a good certificate.
    served = mt.backend.metric("weft_tls_handshakes_total", side="server", session="full")
    out = s_client(mt, "/served-by-openssl", "-alpn", "h2",
                   "-cert", str(mt.client_tls / "node.crt"), "-key", str(mt.client_tls / "node.key"))
    assert "Verify return code: 0 (ok)" in out, out[-3000:]
    assert "ALPN protocol: h2" in out, out[-3000:]
    assert "TLSv1.3" in out, out[-3000:]
    assert wait_for(lambda: "/served-by-openssl" in mesh_app_log(mt)), out[-3000:]
    assert mt.backend.metric("weft_tls_handshakes_total", side="server", session="full") == served + 1


def test_a_returning_peer_resumes_its_tls_session(mt):
    # The first connection saves the session ticket the node sent; the
    # second offers it back and skips the certificate exchange.
    session = mt.workdir / "openssl-session.pem"
    args = ["-alpn", "h2", "-cert", str(mt.client_tls / "node.crt"), "-key", str(mt.client_tls / "node.key")]
    resumed = mt.backend.metric("weft_tls_handshakes_total", side="server", session="resumed")
    first = s_client(mt, "/resume-1", *args, "-sess_out", str(session))
    assert "Verify return code: 0 (ok)" in first, first[-3000:]
    assert session.exists() and session.stat().st_size > 0, first[-3000:]
    second = s_client(mt, "/resume-2", *args, "-sess_in", str(session))
    assert "Reused, TLSv1.3" in second, second[-3000:]
    assert wait_for(lambda: mt.backend.metric("weft_tls_handshakes_total", side="server", session="resumed")
                    == resumed + 1)
    # The node knows who resumed: the request is served as the frontend's.
    assert wait_for(lambda: "/resume-2" in mesh_app_log(mt))


def test_a_plaintext_peer_is_refused_at_a_tls_mesh_port(mt):
    counted = mt.backend.metric("weft_tls_refused_total", side="server", reason="handshake")
    script = ("import socket, sys\n"
              f"s = socket.create_connection(('{mt.backend.ip4}', {MESH_PORT}), timeout=5)\n"
              f"s.sendall(bytes.fromhex('{h2_request_bytes(f'{mt.backend.ip4}:{MESH_HTTP_PORT}', '/plaintext').hex()}'))\n"
              "data = b''\n"
              "while True:\n"
              "    try:\n"
              "        chunk = s.recv(4096)\n"
              "    except (ConnectionResetError, TimeoutError):\n"
              "        break\n"
              "    if not chunk:\n"
              "        break\n"
              "    data += chunk\n"
              "print(data.hex())\n")
    res = mt.attacker.run([PY, "-c", script], timeout=20)
    reply = bytes.fromhex(res.stdout.strip())
    # At most a TLS alert record (content type 21), never HTTP/2 frames.
    assert reply == b"" or reply[0] == 21, reply[:64]
    assert wait_for(lambda: mt.backend.metric("weft_tls_refused_total", side="server", reason="handshake") == counted + 1)
    assert "/plaintext" not in mesh_app_log(mt)


# -- what the wire shows -------------------------------------------------------


def test_a_capture_of_the_mesh_port_shows_tls13_and_no_cleartext(mt):
    pcap = mt.workdir / "mesh-port.pcap"
    capture = mt.backend.spawn(["tshark", "-q", "-i", "any", "-f", f"tcp port {MESH_PORT}", "-w", str(pcap)],
                               name="tshark")
    try:
        assert wait_for(lambda: "Capturing on" in capture.log(), timeout=15), capture.log()
        # A new mesh connection, so the handshake is in the capture.
        mt.client.stop_weft()
        mt.client.start_weft(mt.client_config)
        marker = "weft-cleartext-marker-" + "x" * 64
        for _ in range(3):
            res = mt.client.curl(f"{BASE}/echo", "-d", marker, "-o", "-")
            assert res.stdout == marker, res.stdout
        time.sleep(1)  # the last records reach the capture file
    finally:
        capture.stop(sig=signal.SIGINT)
    raw = pcap.read_bytes()
    assert len(raw) > 2000, "nothing captured"
    assert marker.encode() not in raw, "the request body crossed the mesh in cleartext"
    decode = ["-d", f"tcp.port=={MESH_PORT},tls"]
    fields = subprocess.run(["tshark", "-r", str(pcap), *decode, "-Y", "tls.handshake.type == 2", "-T", "fields",
                             "-e", "tls.handshake.extensions.supported_version"],
                            capture_output=True, text=True, timeout=60)
    versions = set(fields.stdout.split())
    print(f"ServerHello supported_version: {versions}")
    assert versions == {"0x0304"}, (versions, fields.stderr)  # TLS 1.3
    records = subprocess.run(["tshark", "-r", str(pcap), *decode, "-Y", "tls.record.opaque_type == 23",
                              "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=60)
    assert len(records.stdout.split()) >= 6, records.stdout  # encrypted application data both ways
    plain = subprocess.run(["tshark", "-r", str(pcap), "-d", f"tcp.port=={MESH_PORT},http2", "-Y", "http2.type == 1"],
                           capture_output=True, text=True, timeout=60)
    assert plain.stdout.strip() == "", "HTTP/2 HEADERS readable on the wire:\n" + plain.stdout[:2000]


# -- rotation --------------------------------------------------------------------


def presented_serial(lab) -> str:
    out = lab.attacker.run(["sh", "-c", f"timeout 4 openssl s_client -connect {lab.backend.ip4}:{MESH_PORT} "
                                        f"-CAfile {lab.ca}/ca.crt -alpn h2 -cert {lab.client_tls}/node.crt "
                                        f"-key {lab.client_tls}/node.key </dev/null 2>/dev/null "
                                        "| openssl x509 -noout -serial"], check=False, timeout=20)
    return out.stdout.strip()


def test_rotating_the_certificate_keeps_open_connections_and_new_ones_get_the_new_one(mt):
    old_serial = presented_serial(mt)
    assert old_serial.startswith("serial="), old_serial
    # A download of 40 chunks, one every 0.25 s, through the mesh.
    download = mt.client.spawn(["curl", "-sS", "-o", str(mt.workdir / "slow.out"), "-w", "%{http_code}",
                                f"{BASE}/slow?chunks=40&delay=0.25"], name="slow-download")
    time.sleep(2)
    weft_certs(mt.weft_path, "node", "--ca", str(mt.ca), "--identity", "ns/shop/sa/backend",
               "--out", str(mt.backend_tls))
    for path in mt.backend_tls.iterdir():
        os.chown(path, PROXY_UID, PROXY_UID)
    assert wait_for(lambda: "mesh TLS files reloaded" in mt.backend.weft_log(), timeout=10), mt.backend.weft_log()[-2000:]
    new_serial = presented_serial(mt)
    assert new_serial.startswith("serial=") and new_serial != old_serial, (old_serial, new_serial)
    assert wait_for(lambda: not download.alive(), timeout=30)
    assert download.stop() == 0
    assert download.log().strip() == "200", download.log()
    body = (mt.workdir / "slow.out").read_text()
    assert body == "".join(f"chunk {i:04d}\n" for i in range(40)), body[-200:]
    # Requests after the rotation are served (the client node reconnects or
    # keeps its connection; both sides still trust each other).
    res = mt.client.curl(f"{BASE}/hello", "-o", "/dev/null", "-w", "%{http_code}")
    assert res.stdout == "200"


def test_weft_check_loads_the_tls_files_and_names_the_identity(mt):
    config = mt.backend.weft_config_path
    res = subprocess.run([str(mt.weft_path), "check", "--config", str(config)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    assert "mesh mTLS as spiffe://mesh.local/ns/shop/sa/backend" in res.stdout, res.stdout
    broken = mt.workdir / "broken-tls.yaml"
    broken.write_text(json.dumps({"listeners": {"mesh": {"tls": {
        "cert": str(mt.backend_tls / "node.crt"), "key": str(mt.client_tls / "node.key"),
        "ca": str(mt.ca / "ca.crt")}}}}))
    res = subprocess.run([str(mt.weft_path), "check", "--config", str(broken)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1
    assert "the key does not match the node certificate" in res.stderr, res.stderr

