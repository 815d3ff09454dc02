#!/usr/bin/env python3
"""weft, step by step: an unmodified app calls http://backend:9090/, a name
for a VIP nobody owns, and weft carries the connection across two pods.

Run it through scripts/demo (installs, builds, then runs this as root).
Everything lives in throw-away network namespaces and is removed at the end,
on Ctrl-C and on failure.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import weftlab  # noqa: E402

APPS = HERE.parent / "Tests" / "e2e" / "apps"
PY = sys.executable
VIP = "198.19.0.10"

TTY = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
PAUSE = float(os.environ.get("DEMO_PAUSE", "0.6" if TTY else "0"))


def c(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if TTY else text


def step(n: int, title: str) -> None:
    time.sleep(PAUSE)
    print()
    print(c("1;36", f"── {n}. {title} " + "─" * max(0, 60 - len(title))))


def say(text: str) -> None:
    print(textwrap.fill(" ".join(text.split()), width=78))


def show_cmd(where: str, cmd: str) -> None:
    print(c("2", f"[{where}]") + " " + c("1", f"$ {cmd}"))


def show_out(text: str, limit: int = 40) -> None:
    lines = text.rstrip("\n").splitlines()
    for line in lines[:limit]:
        print("    " + line)
    if len(lines) > limit:
        print(c("2", f"    ... ({len(lines) - limit} more lines)"))


def run_shown(pod: weftlab.Pod, cmd: list[str], display: str | None = None, user=None,
              limit: int = 40, check: bool = False):
    where = pod.name + (" as uid 1337" if user == 1337 else "")
    show_cmd(where, display or " ".join(cmd))
    res = pod.run(cmd, user=user, check=check, timeout=60)
    show_out(res.stdout + res.stderr, limit)
    return res


def log_since(proc: weftlab.Proc, offset: int) -> list[str]:
    return proc.log()[offset:].splitlines()


def interesting(lines: list[str], words: tuple[str, ...], limit: int = 8) -> list[str]:
    picked = [l for l in lines if any(w in l for w in words)]
    return picked[:limit] if picked else lines[:limit]


def metrics_lines(pod: weftlab.Pod, limit: int = 14) -> list[str]:
    try:
        text = pod.metrics_text()
    except weftlab.LabError as e:
        return [f"(metrics unavailable: {e})"]
    out = []
    for line in text.splitlines():
        if not line.startswith("weft_") or line.startswith("#"):
            continue
        value = line.rsplit(" ", 1)[-1]
        try:
            if float(value) == 0:
                continue
        except ValueError:
            pass
        if "_bucket" in line:
            continue
        out.append(line)
    return out[:limit] or ["(no non-zero weft_* samples)"]


def main() -> int:
    weft_bin = weftlab.default_weft_bin()
    print(c("1", "weft demo: an unmodified app, a VIP nobody owns, two weft nodes"))
    print(c("2", f"binary: {weft_bin}"))
    weftlab.cleanup_stale()

    with weftlab.Lab(weft_bin=weft_bin) as lab:
        step(1, "Two pods")
        client = lab.add_pod("client", hosts={"backend": VIP})
        backend = lab.add_pod("backend")
        say(f"""Two network namespaces ("pods") on a private bridge:
            client {client.ip4} / {client.ip6} and backend {backend.ip4} / {backend.ip6}.
            The service name "backend" stands for the VIP {VIP}, an address that
            no host or interface has, as a Kubernetes ClusterIP.""")
        http = backend.spawn([PY, APPS / "http_app.py", "--port", "9090", "--name", "backend"],
                             name="http_app")
        redis_dir = lab.workdir / "redis"
        redis_dir.mkdir()
        redis = backend.spawn(["redis-server", "--port", "6379", "--bind", "127.0.0.1", "::1",
                               "--save", "", "--appendonly", "no", "--dir", redis_dir],
                              name="redis")
        backend.wait_port(9090, proc=http)
        backend.wait_port(6379, proc=redis)
        print()
        say("""In the backend pod: a plain Python HTTP app on port 9090 (it answers
            with the address it saw the connection come from) and redis-server on
            port 6379, bound to loopback only.""")

        step(2, "The client pod's /etc/hosts")
        run_shown(client, ["cat", "/etc/hosts"], limit=3)
        say(f"""Nothing at {VIP} answers. Without weft a connection there fails:""")
        run_shown(client, ["curl", "-sS", "--max-time", "5", "http://backend:9090/"],
                  display="curl http://backend:9090/")

        step(3, "weft init: the interception rules")
        say("""`weft init` installs iptables nat rules in the pod (its own chains,
            WEFT_*). --dry-run prints them and touches nothing; here is the
            outbound part:""")
        res = client.init("--dry-run")
        show_cmd("client", "weft init --dry-run")
        ipv4 = res.stdout.split("IPv6")[0]
        lines = [l for l in ipv4.splitlines()
                 if l.startswith(("-A WEFT_OUTPUT", "-A OUTPUT", "-A WEFT_REDIRECT"))]
        show_out("\n".join(lines) if lines else res.stdout, limit=14)
        say("""In order: weft's own traffic (uid/gid 1337) is left alone; an app
            calling its own pod address over lo goes to the inbound side; other
            loopback traffic is left alone; every other TCP connection is
            redirected to weft's outbound port 15001. (The same again for IPv6,
            and a PREROUTING chain sends inbound connections to port 15006.)""")
        for pod in (client, backend):
            show_cmd(pod.name, "weft init")
            out = pod.init()
            show_out(out.stdout + out.stderr, limit=5)
        say("""App traffic is now redirected to weft: outbound connections to
            127.0.0.1:15001, inbound ones to port 15006. Traffic of uid 1337,
            weft's own user, is left alone.""")

        step(4, "Start weft in both pods (as uid 1337)")
        client_cfg = {
            "node": {"id": "client"},
            "outbound_policy": "allow_any",
            "clusters": [
                {"name": "backend", "addresses": [f"{VIP}:9090"], "hostnames": ["backend"],
                 "mesh": False, "lb": "round_robin",
                 "endpoints": [{"address": f"{backend.ip4}:9090"}]},
                {"name": "redis", "addresses": [f"{VIP}:6379"], "protocol": "tcp",
                 "mesh": False, "lb": "round_robin",
                 "endpoints": [{"address": f"{backend.ip4}:6379"}]},
            ],
        }
        print(c("2", "client's weft.yaml:"))
        show_out(weftlab.to_yaml(client_cfg), limit=30)
        backend.start_weft({"node": {"id": "backend"}})
        client.start_weft(client_cfg)
        say("""Both nodes answer GET :15020/ready with 200. The backend's config is
            just its node id: it only receives.""")

        step(5, "The unmodified client calls http://backend:9090/")
        c_off, b_off = len(client.weft.log()), len(backend.weft.log())
        res = run_shown(client, ["sh", "-c", "curl -sS -v --noproxy '*' --max-time 10 "
                                 "http://backend:9090/ 2>&1"],
                        display="curl -v http://backend:9090/")
        ok = res.returncode == 0 and "hello from backend" in res.stdout
        time.sleep(0.3)

        step(6, "What the backend app saw")
        show_out("\n".join(http.log().splitlines()[-2:]))
        say("""The app's peer is 127.0.0.1: the backend pod's weft (inbound side)
            delivered the connection over loopback.""")

        step(7, "The path, from weft's own logs")
        say(f"""client app -> iptables REDIRECT -> client weft outbound :15001 ->
            original destination {VIP}:9090 (SO_ORIGINAL_DST) -> cluster "backend"
            -> endpoint {backend.ip4}:9090 -> backend pod's iptables -> backend
            weft inbound :15006 -> 127.0.0.1:9090.""")
        words = ("198.19.0.10", "backend", "outbound", "inbound", "15006", "127.0.0.1:9090")
        print(c("2", "client weft:"))
        show_out("\n".join(interesting(log_since(client.weft, c_off), words)))
        print(c("2", "backend weft:"))
        show_out("\n".join(interesting(log_since(backend.weft, b_off), words)))
        print(c("2", "client :15020/metrics (non-zero weft_* samples):"))
        show_out("\n".join(metrics_lines(client)))
        print(c("2", "backend :15020/metrics:"))
        show_out("\n".join(metrics_lines(backend)))

        step(8, "Redis through the same VIP")
        run_shown(client, ["redis-cli", "-h", "backend", "-p", "6379", "PING"],
                  display="redis-cli -h backend -p 6379 PING")
        run_shown(client, ["redis-cli", "-h", "backend", "-p", "6379", "SET", "greeting", "hi"],
                  display="redis-cli -h backend SET greeting hi")
        run_shown(client, ["redis-cli", "-h", "backend", "-p", "6379", "GET", "greeting"],
                  display="redis-cli -h backend GET greeting")
        say("""redis-server listens on loopback only in its pod: only weft's inbound
            side can reach it. Opaque TCP, relayed by both nodes.""")

        step(9, "The same curl as uid 1337 (not intercepted)")
        res1337 = run_shown(client, ["curl", "-sS", "--noproxy", "*", "--max-time", "5",
                                     "http://backend:9090/"], user=1337,
                            display="setpriv --reuid 1337 curl http://backend:9090/")
        say("""It fails: uid 1337 is weft's own user, so iptables leaves it alone
            and the VIP is owned by nobody. It was the interception that made
            step 5 work.""")

        step(10, "Clean up")
        for pod in (client, backend):
            rc = pod.stop_weft()
            print(f"    weft in {pod.name} stopped (exit {rc})")
    print("    namespaces, processes and rules removed")
    good = ok and res1337.returncode != 0
    print()
    print(c("1;32", "demo finished") if good else c("1;31", "demo finished with unexpected results"))
    return 0 if good else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except weftlab.LabError as e:
        print(c("1;31", f"demo failed: {e}"), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted; lab removed", file=sys.stderr)
        sys.exit(130)
