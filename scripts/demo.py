#!/usr/bin/env python3
"""weft, step by step: an unmodified app calls http://backend:9090/, a name
for a VIP nobody owns. weft intercepts the connection, carries each HTTP/1.1
request as a stream on one HTTP/2 connection to the backend pod's weft (the
mesh, port 15008), which hands it to the app as ordinary HTTP/1.1.

Run it through scripts/demo (installs, builds, then runs this as root).
Everything lives in throw-away network namespaces and is removed at the end,
on Ctrl-C and on failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import weftlab  # noqa: E402

APPS = HERE.parent / "Tests" / "e2e" / "apps"
PY = sys.executable
VIP = "198.19.0.10"          # "backend": the app on 9090 and redis on 6379
VIP_REPORTS = "198.19.0.11"  # "reports": a service whose app is not running
MESH_PORT = 15008
REQUESTS, CLIENTS = 50, 5

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


def note(text: str) -> None:
    print(c("2", text))


def show_cmd(where: str, cmd: str) -> None:
    print(c("2", f"[{where}]") + " " + c("1", f"$ {cmd}"))


def show_out(text: str, limit: int = 40) -> None:
    lines = text.rstrip("\n").splitlines()
    for line in lines[:limit]:
        print("    " + line)
    if len(lines) > limit:
        print(c("2", f"    ... ({len(lines) - limit} more lines)"))


def run_shown(pod: weftlab.Pod, cmd: list[str] | str, display: str | None = None, user=None,
              limit: int = 40, show: bool = True):
    where = pod.name + (" as uid 1337" if user == 1337 else "")
    show_cmd(where, display or (cmd if isinstance(cmd, str) else " ".join(map(str, cmd))))
    res = pod.run(cmd, user=user, check=False, timeout=60)
    if show:
        show_out(res.stdout + res.stderr, limit)
    return res


class Checks:
    """What the demo expects to see; any miss makes it exit 1."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failed.append(what)
            print(c("1;31", f"    !! expected: {what}"))
        return ok


def show_mesh_metrics(pod: weftlab.Pod) -> None:
    """Show the pod's mesh metrics the way a user would fetch them."""
    run_shown(pod, f"curl -s http://127.0.0.1:{weftlab.HEALTH_PORT}/metrics | grep '^weft_mesh_'",
              display=f"curl -s :{weftlab.HEALTH_PORT}/metrics | grep ^weft_mesh_")


def log_since(proc: weftlab.Proc, offset: int) -> list[str]:
    return proc.log()[offset:].splitlines()


def mesh_conns(pod: weftlab.Pod) -> list[str]:
    res = pod.run(["ss", "-Htn", "state", "established", f"( dport = :{MESH_PORT} )"], check=False)
    return [line for line in res.stdout.splitlines() if line.strip()]


def main() -> int:
    # Ctrl-C always interrupts, even when started with SIGINT ignored (as a
    # background job): the lab tears itself down, then KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    weft_bin = weftlab.default_weft_bin()
    print(c("1", "weft demo: an unmodified app, a VIP nobody owns, two weft nodes, one HTTP/2 hop"))
    note(f"binary: {weft_bin}")
    weftlab.cleanup_stale()
    checks = Checks()

    with weftlab.Lab(weft_bin=weft_bin) as lab:
        step(1, "Two pods")
        client = lab.add_pod("client", hosts={"backend": VIP, "reports": VIP_REPORTS})
        backend = lab.add_pod("backend")
        say(f"""Two network namespaces ("pods") on a private bridge:
            client {client.ip4} and backend {backend.ip4}. In the client pod the
            names "backend" and "reports" stand for the VIPs {VIP} and
            {VIP_REPORTS}: addresses that no host or interface has, like
            Kubernetes ClusterIPs.""")
        http = backend.spawn([PY, APPS / "mesh_app.py", "--port", "9090", "--name", "backend"],
                             name="mesh_app")
        redis_dir = lab.workdir / "redis"
        redis_dir.mkdir()
        redis = backend.spawn(["redis-server", "--port", "6379", "--bind", "127.0.0.1", "::1",
                               "--save", "", "--appendonly", "no", "--dir", redis_dir],
                              name="redis")
        backend.wait_port(9090, proc=http)
        backend.wait_port(6379, proc=redis)
        print()
        say("""In the backend pod: a plain Python HTTP/1.1 app on port 9090 (its
            /headers page shows exactly what it received) and redis-server on
            port 6379, bound to loopback only. Nothing runs for "reports".""")

        step(2, "Without weft, the VIP goes nowhere")
        run_shown(client, ["cat", "/etc/hosts"], limit=2)
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
        say("""weft's own traffic (uid/gid 1337) is left alone; every other TCP
            connection an app makes is redirected to weft's outbound port 15001
            (inbound connections go to port 15006; the mesh port 15008 is never
            redirected). Now for real, in both pods:""")
        for pod in (client, backend):
            show_cmd(pod.name, "weft init")
            out = pod.init()
            show_out(out.stdout + out.stderr, limit=5)

        step(4, "Start weft in both pods (as uid 1337)")
        client_cfg = {
            "node": {"id": "client"},
            "outbound_policy": "allow_any",
            "clusters": [
                {"name": "backend", "addresses": [f"{VIP}:9090"], "hostnames": ["backend"],
                 "mesh": True,
                 "endpoints": [{"address": f"{backend.ip4}:9090"}]},
                {"name": "reports", "addresses": [f"{VIP_REPORTS}:8080"], "hostnames": ["reports"],
                 "mesh": True,
                 "endpoints": [{"address": f"{backend.ip4}:8080"}]},
                {"name": "redis", "addresses": [f"{VIP}:6379"], "protocol": "tcp",
                 "mesh": False,
                 "endpoints": [{"address": f"{backend.ip4}:6379"}]},
            ],
        }
        note("client's weft.yaml:")
        show_out(weftlab.to_yaml(client_cfg), limit=30)
        backend.start_weft({"node": {"id": "backend"}})
        client.start_weft(client_cfg)
        say("""`mesh: true` says the endpoints run weft: HTTP to them travels over
            the mesh. The redis cluster is a plain one (`mesh: false`): its
            bytes are relayed as TCP. The backend's config is just its node
            id: it only receives. Both nodes answer GET :15020/ready with 200.""")

        step(5, "The unmodified client calls http://backend:9090/")
        c_off = len(client.weft.log())
        res = run_shown(client, "curl -sS -v --max-time 10 http://backend:9090/ 2>&1 "
                                "| grep -E '^(\\* Connected|> [A-Z]|< HTTP|< [Cc]ontent-|hello)'",
                        display="curl -v http://backend:9090/")
        checks.expect("hello from backend" in res.stdout, "curl through the VIP answered")
        time.sleep(0.2)
        note("client weft's log (debug):")
        show_out("\n".join(l.split(" ", 1)[-1] for l in log_since(client.weft, c_off)
                           if "protocol detected" in l or "mesh connection opened" in l), limit=4)
        say("""curl spoke HTTP/1.1 to the VIP. The client pod's weft turned the
            request into an HTTP/2 stream to the backend pod's weft on port
            15008, and turned the answer back into HTTP/1.1.""")

        step(6, "What the backend app received")
        show_cmd("client", "curl http://backend:9090/headers")
        res = client.curl("http://backend:9090/headers")
        try:
            seen = json.loads(res.stdout)
        except ValueError:
            seen = {"headers": [], "peer": "?", "method": "?", "path": "?", "version": "?"}
            show_out(res.stdout + res.stderr)
        note("    the app's answer, as a request dump:")
        show_out(f"{seen['method']} {seen['path']} {seen['version']}    (from {seen['peer']})\n"
                 + "\n".join(f"{k}: {v}" for k, v in seen["headers"]))
        names = [k.lower() for k, _ in seen["headers"]]
        checks.expect(seen["version"] == "HTTP/1.1", "the app saw HTTP/1.1")
        checks.expect(seen["peer"] == "127.0.0.1", "the app saw peer 127.0.0.1")
        checks.expect(("host", "backend:9090") in [(k.lower(), v) for k, v in seen["headers"]],
                      "the app saw Host: backend:9090")
        checks.expect(not [n for n in names if n.startswith("weft-")], "no weft-* header reached the app")
        say(f"""An ordinary HTTP/1.1 request from 127.0.0.1 (the backend pod's weft
            delivers over loopback), Host kept. On the HTTP/2 hop the request
            also carried `weft-orig-proto: HTTP/1.1` and `weft-dst:
            {backend.ip4}:9090`; the receiving weft removed them, so the app
            never sees a weft-* header.""")

        step(7, "The mesh connection between the nodes")
        cores = int(client.run(["nproc"]).stdout.strip())
        run_shown(client, ["ss", "-tn", "state", "established"], display="ss -tn state established")
        before = mesh_conns(client)
        checks.expect(1 <= len(before) <= cores,
                      f"1 to {cores} established connection(s) to :{MESH_PORT}")
        one = len(before) == 1
        say(f"""The curls have exited and their connections are gone. Only weft's
            own HTTP/2 {"connection" if one else "connections"} to the backend
            node's mesh port, {backend.ip4}:{MESH_PORT}, {"remains" if one else "remain"},
            kept open for the next requests. weft
            opens at most one per peer node per event loop, and runs one event
            loop per core: this machine has {cores}, so there can be up to
            {cores} (here: {len(before)}).""")

        step(8, f"{REQUESTS} more requests, no new mesh connection")
        streams0 = client.metric("weft_mesh_streams_total", role="client")
        per = REQUESTS // CLIENTS
        cmd = (f"(for i in $(seq {CLIENTS}); do curl -s -o /dev/null -w '%{{http_code}}\\n' "
               f"\"http://backend:9090/?c=$i&n=[1-{per}]\" & done; wait) | sort | uniq -c")
        say(f"""{CLIENTS} curl processes at once, each sending {per} requests on one
            keep-alive connection; then count the status codes:""")
        res = run_shown(client, cmd)
        checks.expect(res.stdout.split() == [str(REQUESTS), "200"], f"{REQUESTS} × 200")
        run_shown(client, ["ss", "-Htn", "state", "established", f"( dport = :{MESH_PORT} )"],
                  display=f"ss -Htn state established '( dport = :{MESH_PORT} )'")
        after = mesh_conns(client)
        show_mesh_metrics(client)
        streams1 = client.metric("weft_mesh_streams_total", role="client")
        gauge = client.metric("weft_mesh_connections", role="client")
        checks.expect(streams1 - streams0 >= REQUESTS, f"streams grew by at least {REQUESTS}")
        checks.expect(1 <= gauge <= cores and 1 <= len(after) <= cores,
                      f"at most {cores} mesh connection(s), one per event loop")
        reused = set(before) <= set(after)
        say(f"""{CLIENTS} app connections, {REQUESTS} requests: the client's stream
            counter grew by {int(streams1 - streams0)}, one stream per request,
            while weft_mesh_connections stayed at {int(gauge)}
            {"(the same local ports as in step 7)" if reused else ""}. Every
            request to the backend node is multiplexed onto those
            connections. The backend node counts the same streams as
            server:""")
        show_mesh_metrics(backend)

        step(9, "A service whose app is down: 502 with a reason")
        res = run_shown(client, "curl -sS -i --max-time 10 http://reports:8080/ 2>&1",
                        display="curl -i http://reports:8080/")
        checks.expect(res.stdout.startswith("HTTP/1.1 502") and "weft-reason:" in res.stdout.lower(),
                      "502 with a weft-reason header")
        run_shown(backend, f"curl -s http://127.0.0.1:{weftlab.HEALTH_PORT}/metrics "
                           "| grep '^weft_error_responses_total{status=\"502\",reason=\"connect_failure\"}'",
                  display=f"curl -s :{weftlab.HEALTH_PORT}/metrics "
                          "| grep '^weft_error_responses_total{status=\"502\",reason=\"connect_failure\"}'")
        say("""Nothing listens on port 8080 in the backend pod. The backend's weft
            could not connect to the app, so it answered the stream with 502
            and `weft-reason: connect_failure`, at once (no hang, no reset),
            and counted it; the client's weft passed the answer on as
            HTTP/1.1.""")

        step(10, "Redis through the same VIP (plain TCP)")
        run_shown(client, ["redis-cli", "-h", "backend", "-p", "6379", "SET", "greeting", "hi"],
                  display="redis-cli -h backend SET greeting hi")
        res = run_shown(client, ["redis-cli", "-h", "backend", "-p", "6379", "GET", "greeting"],
                        display="redis-cli -h backend GET greeting")
        checks.expect(res.stdout.strip() == "hi", "redis GET returned hi")
        say(f"""redis-server listens on loopback only in its pod. The redis
            cluster is `mesh: false`, so the client's weft relays the bytes as
            opaque TCP to {backend.ip4}:6379, where the backend's iptables hand
            them to its weft's inbound port 15006, which delivers them to
            127.0.0.1:6379. (On a `mesh: true` cluster the same bytes would ride a
            CONNECT stream on the mesh connection to the backend's port 15008.)""")

        step(11, "The same curl as uid 1337 (not intercepted)")
        res1337 = run_shown(client, ["curl", "-sS", "--noproxy", "*", "--max-time", "5",
                                     "http://backend:9090/"], user=1337,
                            display="setpriv --reuid 1337 curl http://backend:9090/")
        checks.expect(res1337.returncode != 0, "uid 1337's curl fails")
        say("""It fails: uid 1337 is weft's own user, so iptables leaves it alone
            and the VIP is owned by nobody. It was the interception that made
            everything above work.""")

        step(12, "A VM-style host: the name comes from weft (DNS capture)")
        vm = lab.add_pod("vm", nameservers=[backend.ip4])
        say(f"""A third host, "vm", like a VM: its hosts file knows no "backend", and
            its resolver ({backend.ip4}) runs no DNS server for it. Its app
            cannot even resolve the name:""")
        res = run_shown(vm, ["getent", "hosts", "backend"], display="getent hosts backend")
        note(f"(no answer: exit {res.returncode})")
        checks.expect(res.returncode != 0, "without weft the VM cannot resolve backend")
        vm.init("--capture-dns")
        vm_cfg = {"node": {"id": "vm"}, "listeners": {"dns": {}},
                  "clusters": [client_cfg["clusters"][0]]}
        vm.start_weft(vm_cfg)
        say("""`weft init --capture-dns` sends the host's DNS (UDP and TCP 53, not
            weft's own) to weft on 127.0.0.1:15053, and `listeners: { dns: {} }`
            turns on the answering: a cluster's `hostnames` get its VIP, every
            other name goes to the host's resolver unchanged. Now:""")
        res = run_shown(vm, ["getent", "hosts", "backend"], display="getent hosts backend")
        checks.expect(res.stdout.split()[:1] == [VIP], "DNS capture answers backend with its VIP")
        res = run_shown(vm, ["curl", "-sS", "--max-time", "10", "http://backend:9090/"],
                        display="curl http://backend:9090/")
        checks.expect("hello from backend" in res.stdout, "the VM's app reaches backend by name")
        say("""No hosts-file edit: the unmodified app resolved "backend" through weft and
            its request rode the mesh like the client pod's.""")

        step(13, "Clean up")
        for pod in (client, backend, vm):
            rc = pod.stop_weft()
            print(f"    weft in {pod.name} stopped (exit {rc})")
            checks.expect(rc == 0, f"weft in {pod.name} exits 0 on SIGTERM")
    print("    namespaces, processes and rules removed")
    print()
    if checks.failed:
        print(c("1;31", "demo finished with unexpected results: " + "; ".join(checks.failed)))
        return 1
    print(c("1;32", "demo finished"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except weftlab.LabError as e:
        print(c("1;31", f"demo failed: {e}"), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted; lab removed", file=sys.stderr)
        sys.exit(130)
