"""Instructions per proxied request, counted by callgrind (`scripts/bench
--callgrind`, issue 12).

Wall-clock and CPU figures on this shared 2-core machine move by 10% from
one run to the next; instruction counts do not. Two weftlab pods, the same
path as the main bench (an HTTP/1.1 keep-alive client → weft → HTTP/2 mesh
→ weft → nginx serving 1 KiB), with both weft nodes running under
`valgrind --tool=callgrind`; then the same path through the main bench's
HAProxy pair, the comparison issue 12 asks for. For each, two runs from a
fresh start, each a warm-up and then a fixed number of requests from
keep-alive clients (apps/http_client.py load), the second with more; the
nodes are stopped and their totals read. The difference over the
difference in requests is the figure, per node, free of start-up and
shutdown costs; the same difference per function gives each node's
costliest functions (self cost, callgrind_annotate), and per object its
split between the binary and the libraries. (`callgrind_control` cannot
reach nodes that sleep in epoll_wait here, so the counters are not zeroed
in place.)

Writes benchmarks/callgrind.md and callgrind.json under --out.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import bench
import weftlab

PORT = bench.BACKEND_PORT
VIP = "198.19.0.91"
TOP = 30  # functions listed per node


def wait_ready(pod: weftlab.Pod, proc: weftlab.Proc, timeout: float = 180) -> None:
    """/ready on the health port answers 200 (slow under valgrind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise weftlab.LabError(f"weft under callgrind exited early:\n{proc.log()[-3000:]}")
        status, _ = pod.http_get("http://127.0.0.1:15020/ready", timeout=5)
        if status == 200:
            return
        time.sleep(0.5)
    raise weftlab.LabError(f"weft under callgrind not ready after {timeout:.0f}s:\n{proc.log()[-3000:]}")


def load(client: weftlab.Pod, host: str, port: int, requests: int, connections: int) -> dict:
    res = client.run([bench.PY, str(bench.APPS / "http_client.py"), "load", host, str(port),
                      "--connections", str(connections), "--requests", str(requests), "--path", "/1k",
                      "--deadline", "800"],
                     check=False, timeout=900)
    try:
        out = json.loads(res.stdout)
    except json.JSONDecodeError as e:
        raise weftlab.LabError(f"load client: {res.stdout}\n{res.stderr}") from e
    if out.get("failed"):
        raise weftlab.LabError(f"load client: {out}")
    return out


def total_ir(dump: Path) -> int:
    """The `totals:` (or `summary:`) Ir of one callgrind dump."""
    for line in dump.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise weftlab.LabError(f"no totals in {dump}")


def functions(dump: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Self Ir of every function of one dump (callgrind_annotate), and of
    every object (the binary or shared library the code is in)."""
    res = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(dump)],
                         capture_output=True, text=True, timeout=300)
    costs: dict[str, int] = {}
    # callgrind_annotate names the object only for a function's own lines:
    # code inlined from another file comes without it, and takes the object
    # its function is named with elsewhere.
    owner: dict[str, str] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2) and not m.group(2).startswith(("Ir", "--")):
            # Keyed without the object (` [path]`): the binary's copy lives
            # in each run's own directory, and the runs' costs must meet.
            symbol = m.group(2).strip()
            name = re.sub(r"\s+\[[^\]]*\]$", "", symbol)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
            obj = re.search(r"\[([^\]]*)\]$", symbol)
            if obj:
                owner.setdefault(function_of(name), object_name(obj.group(1)))
    objects: dict[str, int] = {}
    for name, ir in costs.items():
        lib = owner.get(function_of(name), "?")
        objects[lib] = objects.get(lib, 0) + ir
    return costs, objects


def function_of(name: str) -> str:
    """`_int_free` for `./malloc/./malloc/malloc.c:_int_free` or `???:_int_free`."""
    m = re.match(r"^(\?\?\?|[^\s:]*[/.][^\s:]*):(.*)$", name)
    return m.group(2) if m else name


def object_name(path: str) -> str:
    """`libc.so.6` for /usr/lib/x86_64-linux-gnu/libc.so.6; the weft
    binary (a copy in each run's directory) as `weft`."""
    name = Path(path).name
    return "weft" if name.startswith("weft") else re.sub(r"\.so(\.[\d.]+)?$", ".so", name)


def demangle(names: list[str]) -> list[str]:
    """Swift symbols (valgrind leaves them mangled) made readable."""
    res = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                         capture_output=True, text=True, timeout=60)
    out = res.stdout.splitlines()
    return out if res.returncode == 0 and len(out) == len(names) else names


def shorten(symbol: str) -> str:
    """A callgrind symbol without its file (`???:` or a path) and object, long names cut."""
    name = re.sub(r"\s+\[[^\]]*\]$", "", symbol)
    m = re.match(r"^(\?\?\?|[^\s:]*[/.][^\s:]*):(.*)$", name)
    return m.group(2) if m else name


def cut(name: str) -> str:
    return name if len(name) <= 110 else name[:107] + "..."


def start_weft(lab: weftlab.Lab, client: weftlab.Pod, server: weftlab.Pod, dumps: Path
               ) -> tuple[dict[str, weftlab.Proc], str, int]:
    """Both weft nodes under callgrind, ready; the app calls the VIP."""
    client.init("--exclude-outbound-cidrs", f"{weftlab.POD_NET4}.0.0/16")
    server.init("--exclude-inbound-ports", str(PORT))
    configs = {
        "client": (client, {"node": {"id": "client"}, "outbound_policy": "allow_any",
                            "clusters": [bench.cluster("web", VIP, PORT, server.ip4)]}),
        "server": (server, {"node": {"id": "server"}}),
    }
    # Valgrind 3.19 cannot read the DWARF 5 that Swift writes: the nodes
    # run a copy without debug information (its symbols stay).
    binary = lab.workdir / "weft-no-debuginfo"
    subprocess.run(["objcopy", "--strip-debug", str(lab.weft_bin), str(binary)], check=True, timeout=120)
    binary.chmod(0o755)
    procs = {}
    for name, (pod, config) in configs.items():
        path = pod.write_weft_config(config)
        procs[name] = pod.spawn(["valgrind", "--tool=callgrind", "--dump-instr=no",
                                 f"--callgrind-out-file={dumps}/{name}.out", str(binary), "proxy",
                                 "--config", str(path), "--log-level", "warning"],
                                user=weftlab.PROXY_UID, name=f"weft-{name}")
    for name, (pod, _) in configs.items():
        wait_ready(pod, procs[name])
    return procs, VIP, PORT


def start_haproxy(lab: weftlab.Lab, client: weftlab.Pod, server: weftlab.Pod, dumps: Path
                  ) -> tuple[dict[str, weftlab.Proc], str, int]:
    """The main bench's HAProxy pair (HTTP/2 between them), one thread each,
    under callgrind; the app calls the client pod's HAProxy."""
    sides = {
        "client": (client, f"127.0.0.1:{bench.HAPROXY_CLIENT_PORT}",
                   f"server s1 {server.ip4}:{bench.HAPROXY_SERVER_PORT} proto h2", bench.HAPROXY_CLIENT_PORT),
        "server": (server, f":{bench.HAPROXY_SERVER_PORT} proto h2", f"server app 127.0.0.1:{PORT}",
                   bench.HAPROXY_SERVER_PORT),
    }
    procs = {}
    for name, (pod, bind, server_line, port) in reversed(sides.items()):
        conf = bench.haproxy_conf(lab.workdir, f"haproxy-{name}", bind, server_line, 1)
        procs[name] = pod.spawn(["valgrind", "--tool=callgrind", "--dump-instr=no",
                                 f"--callgrind-out-file={dumps}/{name}.out", "haproxy", "-db", "-f", str(conf)],
                                name=f"haproxy-{name}")
        pod.wait_port(port, proc=procs[name], timeout=180)
    return dict(reversed(procs.items())), "127.0.0.1", bench.HAPROXY_CLIENT_PORT


# How each proxy starts, and the signal that stops it cleanly (SIGTERM
# is HAProxy's hard stop, which ends it by the signal; SIGUSR1 lets it
# finish and exit 0).
PROXIES = {"weft": (start_weft, signal.SIGTERM), "haproxy": (start_haproxy, signal.SIGUSR1)}


def run(args: argparse.Namespace, proxy: str, requests: int) -> dict[str, dict]:
    """One run: both nodes of `proxy` under callgrind, a warm-up,
    `requests` counted requests, the nodes stopped; per node its total Ir
    and its functions' self Ir ({function: Ir})."""
    with weftlab.Lab() as lab:
        work = lab.workdir
        htdocs = bench.write_htdocs(work)
        dumps = work / "callgrind"
        dumps.mkdir()
        dumps.chmod(0o777)  # weft nodes run as uid 1337
        client, server = lab.add_pod("c"), lab.add_pod("s")
        bench.start_backend(server, work, htdocs, 1)
        start, stop_signal = PROXIES[proxy]
        procs, host, port = start(lab, client, server, dumps)
        load(client, host, port, args.callgrind_warmup, args.callgrind_connections)
        t0 = time.monotonic()
        load(client, host, port, requests, args.callgrind_connections)
        bench.log(f"{proxy}: {requests} requests under callgrind in {time.monotonic() - t0:.0f} s")
        out = {}
        for name, proc in procs.items():
            status = proc.stop(timeout=120, sig=stop_signal)
            if status != 0:
                raise weftlab.LabError(f"{proxy} {name} under callgrind ended with {status}:\n{proc.log()[-2000:]}")
            dump = dumps / f"{name}.out"
            costs, objects = functions(dump)
            out[name] = {"ir": total_ir(dump), "functions": costs, "objects": objects}
            if args.callgrind_dumps:
                # For callgrind_annotate --tree=caller and the like.
                keep = Path(args.callgrind_dumps)
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(dump, keep / (f"{name}-{requests}.out" if proxy == "weft" else f"{proxy}-{name}-{requests}.out"))
        return out


def measure(args: argparse.Namespace) -> dict:
    """Each proxy's nodes: instructions a request, the costliest functions,
    the split by object."""
    few, many = args.callgrind_requests // 4, args.callgrind_requests + args.callgrind_requests // 4
    counted = many - few
    result = {"requests": counted, "runs": [few, many], "connections": args.callgrind_connections, "proxies": {}}
    for proxy in PROXIES:
        bench.log(f"{proxy}: two runs under callgrind, {few} and {many} requests after "
                  f"{args.callgrind_warmup} of warm-up")
        first, second = run(args, proxy, few), run(args, proxy, many)
        nodes = result["proxies"][proxy] = {}
        for name in second:
            ir = second[name]["ir"] - first[name]["ir"]
            diff = {f: second[name]["functions"].get(f, 0) - first[name]["functions"].get(f, 0)
                    for f in second[name]["functions"]}
            top = sorted(diff.items(), key=lambda item: -item[1])[:TOP]
            objects = {o: second[name]["objects"].get(o, 0) - first[name]["objects"].get(o, 0)
                       for o in second[name]["objects"]}
            nodes[name] = {
                "ir_per_request": round(ir / counted),
                "objects": {o: round(i / counted) for o, i in sorted(objects.items(), key=lambda item: -item[1])
                            if i / counted >= 50},
                "top": [{"percent": round(100 * i / ir, 1), "ir_per_request": round(i / counted), "function": f}
                        for (_, i), f in zip(top, demangle([shorten(f) for f, _ in top]))],
            }
            bench.log(f"{proxy} {name}: {ir / counted:,.0f} instructions per request")
    return result


def report(env: dict, result: dict, commit: str) -> str:
    proxies = result["proxies"]
    lines = ["# Instructions per proxied request (callgrind)", "",
             f"`scripts/bench --callgrind` at {commit}, {env.get('date', '')}: "
             f"HTTP/1.1 keep-alive requests for 1 KiB from {result['connections']} connections "
             "(apps/http_client.py) through a client-pod proxy → HTTP/2 → a server-pod proxy → nginx, "
             "both proxies under `valgrind --tool=callgrind`: weft's nodes, then the main bench's HAProxy "
             "pair (one thread each). Two runs of each, "
             f"{result['runs'][0]:,} and {result['runs'][1]:,} requests after a warm-up, the difference "
             f"over the {result['requests']:,} requests between them. Instruction counts are stable where "
             "wall-clock and CPU figures on this machine are not; they are not cycles (no cache or "
             "branch effects), and the kernel's share (syscalls, TCP) is not in them.", "",
             "| node | " + " | ".join(proxies) + " |", "| --- |" + " ---: |" * len(proxies)]
    names = list(next(iter(proxies.values())))
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{nodes[name]['ir_per_request']:,}" for nodes in proxies.values())
                     + " |")
    lines += ["| both | " + " | ".join(f"{sum(n['ir_per_request'] for n in nodes.values()):,}"
                                      for nodes in proxies.values()) + " |", ""]
    for proxy, nodes in proxies.items():
        lines += [f"## {proxy}: instructions a request by object (self, 50 or more)", "",
                  "| object | " + " | ".join(nodes) + " |", "| --- |" + " ---: |" * len(nodes)]
        objects = list(dict.fromkeys(o for node in nodes.values() for o in node["objects"]))
        lines += [f"| {o} | " + " | ".join(f"{node['objects'].get(o, 0):,}" for node in nodes.values()) + " |"
                  for o in objects]
        lines.append("")
    for name, node in proxies["weft"].items():
        lines += [f"## weft {name} node: the {len(node['top'])} costliest functions (self)", "",
                  "| share | per request | function |", "| ---: | ---: | --- |"]
        lines += [f"| {t['percent']:.1f}% | {t['ir_per_request']:,} | `{cut(t['function'])}` |" for t in node["top"]]
        lines.append("")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    env = bench.machine_info()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=bench.REPO).stdout.strip()
    weftlab.cleanup_stale()
    result = measure(args)
    out = Path(args.out) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "callgrind.json").write_text(json.dumps({"machine": env, "commit": commit, "result": result}, indent=1) + "\n")
    md = report(env, result, commit)
    (out / "callgrind.md").write_text(md + "\n")
    print(md)
    return 0
