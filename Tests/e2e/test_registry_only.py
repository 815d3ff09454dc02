"""`outbound_policy: registry_only`: a destination no cluster names is refused
(and counted); cluster destinations still work."""

import pytest

from topology import HTTP_PORT, HTTP_PORT_UNLISTED, build_mesh, client_config

pytestmark = pytest.mark.root


def test_registry_only_refuses_passthrough(lab):
    mesh = build_mesh(lab, policy="allow_any")
    url = f"http://{mesh.backend.ip4}:{HTTP_PORT_UNLISTED}/"

    # Under allow_any the unlisted destination is relayed...
    res = mesh.client.curl(url)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("hello from backend-8080;")

    # ... under registry_only the same connection is refused and counted.
    mesh.client.stop_weft()
    mesh.client.start_weft(client_config(mesh.backend, policy="registry_only"))
    before = mesh.client.metric("weft_outbound_refused_total", reason="registry_only")
    res = mesh.client.curl(url, timeout=10)
    assert res.returncode != 0, res.stdout
    assert "hello from" not in res.stdout
    after = mesh.client.metric("weft_outbound_refused_total", reason="registry_only")
    assert after >= before + 1

    # A cluster VIP is in the registry: it still works.
    res = mesh.client.curl(f"http://backend:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from backend; peer=127.0.0.1"
    assert mesh.client.weft.alive()

