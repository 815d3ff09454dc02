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


def test_weft_wait_returns_once_the_node_is_ready_and_fails_before(lab):
    # The classic sidecar's postStart hook (k8s/deployment.yaml).
    import time
    pod = lab.add_pod("solo")
    early = pod.run(pod.weft_cmd("wait", "--timeout", "1s", "--interval", "100ms"), check=False, timeout=20)
    assert early.returncode == 1, (early.stdout, early.stderr)
    assert "not ready after 1s" in early.stderr, early.stderr
    waiter = pod.spawn(pod.weft_cmd("wait", "--timeout", "30s"), name="weft-wait")
    time.sleep(1)
    assert waiter.alive(), "weft wait returned before the node was ready"
    pod.start_weft({})
    deadline = time.monotonic() + 10
    while waiter.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiter.stop() == 0, waiter.log()


def test_weft_explain_without_a_node_says_so_and_exits_1(lab):
    # (It used to crash on a promise left behind by the failed connect.)
    pod = lab.add_pod("solo")
    res = pod.run(pod.weft_cmd("explain", "198.19.0.1:80"), check=False, timeout=20)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "cannot reach the admin API at 127.0.0.1:15000" in res.stderr, res.stderr
