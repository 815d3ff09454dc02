"""Node lifecycle: health endpoints and a clean exit on SIGTERM."""

import pytest

pytestmark = pytest.mark.root


def test_sigterm_exits_cleanly(lab):
    pod = lab.add_pod("solo")
    pod.init()
    proc = pod.start_weft({})
    rc = pod.stop_weft(timeout=30)
    assert rc == 0, f"weft exited {rc} on SIGTERM\n{proc.log()[-4000:]}"
    code, _ = pod.http_get("http://127.0.0.1:15020/ready", timeout=2)
    assert code == 0  # nothing listens any more
