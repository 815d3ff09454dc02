"""Instructions per proxied request, counted by callgrind (`scripts/bench
--callgrind`, issue 12).

Wall-clock and CPU figures on this shared 2-core machine move by 10% from
one run to the next; instruction counts do not. Two weftlab pods, the same
path as the main bench (an HTTP/1.1 keep-alive client → weft → HTTP/2 mesh
→ weft → nginx serving 1 KiB), with both weft nodes running under
`valgrind --tool=callgrind`. Two runs from a fresh start, each a warm-up
and then a fixed number of requests from keep-alive clients
(apps/http_client.py load), the second with more; the nodes are stopped
(SIGTERM) and their totals read. The difference over the difference in
requests is the figure, per node, free of start-up and shutdown costs; the
same difference per function gives each node's costliest functions (self
cost, callgrind_annotate). (`callgrind_control` cannot reach nodes that
sleep in epoll_wait here, so the counters are not zeroed in place.)

Writes benchmarks/callgrind.md and callgrind.json under --out.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
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


def load(client: weftlab.Pod, requests: int, connections: int) -> dict:
    res = client.run([bench.PY, str(bench.APPS / "http_client.py"), "load", VIP, str(PORT),
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


def functions(dump: Path) -> dict[str, int]:
    """Self Ir of every function of one dump (callgrind_annotate)."""
    res = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
                         capture_output=True, text=True, timeout=300)
    costs: dict[str, int] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2) and not m.group(2).startswith(("Ir", "--")):
            # Keyed without the object (` [path]`): the binary's copy lives
            # in each run's own directory, and the runs' costs must meet.
            name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2).strip())
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


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


def run(args: argparse.Namespace, requests: int) -> dict[str, dict]:
    """One run: both nodes under callgrind, a warm-up, `requests` counted
    requests, the nodes stopped; per node its total Ir and its functions'
    self Ir ({function: Ir})."""
    with weftlab.Lab() as lab:
        work = lab.workdir
        htdocs = bench.write_htdocs(work)
        dumps = work / "callgrind"
        dumps.mkdir()
        dumps.chmod(0o777)  # the nodes run as uid 1337
        client, server = lab.add_pod("c"), lab.add_pod("s")
        bench.start_backend(server, work, htdocs, 1)
        client.init("--exclude-outbound-cidrs", f"{weftlab.POD_NET4}.0.0/16")
        server.init("--exclude-inbound-ports", str(PORT))
        configs = {
            "client": (client, {"node": {"id": "client"}, "outbound_policy": "allow_any",
                                "clusters": [bench.cluster("web", VIP, PORT, server.ip4)]}),
            "server": (server, {"node": {"id": "server"}}),
        }
        # Valgrind 3.19 cannot read the DWARF 5 that Swift writes: the nodes
        # run a copy without debug information (its symbols stay).
        binary = work / "weft-no-debuginfo"
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
        load(client, args.callgrind_warmup, args.callgrind_connections)
        t0 = time.monotonic()
        load(client, requests, args.callgrind_connections)
        bench.log(f"{requests} requests under callgrind in {time.monotonic() - t0:.0f} s")
        out = {}
        for name, proc in procs.items():
            status = proc.stop(timeout=120)
            if status != 0:
                raise weftlab.LabError(f"weft {name} under callgrind ended with {status}:\n{proc.log()[-2000:]}")
            dump = dumps / f"{name}.out"
            out[name] = {"ir": total_ir(dump), "functions": functions(dump)}
            if args.callgrind_dumps:
                # For callgrind_annotate --tree=caller and the like.
                keep = Path(args.callgrind_dumps)
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(dump, keep / f"{name}-{requests}.out")
        return out


def measure(args: argparse.Namespace) -> dict:
    few, many = args.callgrind_requests // 4, args.callgrind_requests + args.callgrind_requests // 4
    bench.log(f"two runs under callgrind: {few} and {many} requests after {args.callgrind_warmup} of warm-up")
    first, second = run(args, few), run(args, many)
    counted = many - few
    result = {"requests": counted, "runs": [few, many], "connections": args.callgrind_connections, "nodes": {}}
    for name in second:
        ir = second[name]["ir"] - first[name]["ir"]
        diff = {f: second[name]["functions"].get(f, 0) - first[name]["functions"].get(f, 0)
                for f in second[name]["functions"]}
        top = sorted(diff.items(), key=lambda item: -item[1])[:TOP]
        result["nodes"][name] = {
            "ir_per_request": round(ir / counted),
            "top": [{"percent": round(100 * i / ir, 1), "ir_per_request": round(i / counted), "function": f}
                    for (_, i), f in zip(top, demangle([shorten(f) for f, _ in top]))],
        }
        bench.log(f"{name}: {ir / counted:,.0f} instructions per request")
    return result


def report(env: dict, result: dict, commit: str) -> str:
    lines = ["# Instructions per proxied request (callgrind)", "",
             f"`scripts/bench --callgrind` at {commit}, {env.get('date', '')}: "
             f"HTTP/1.1 keep-alive requests for 1 KiB from {result['connections']} connections "
             "(apps/http_client.py) through weft → HTTP/2 mesh → weft → nginx, both nodes under "
             f"`valgrind --tool=callgrind`; two runs of {result['runs'][0]:,} and {result['runs'][1]:,} "
             f"requests after a warm-up, the difference over the {result['requests']:,} requests between them. "
             "Instruction counts are stable where "
             "wall-clock and CPU figures on this machine are not; they are not cycles (no cache or "
             "branch effects), and the kernel's share (syscalls, TCP) is not in them.", "",
             "| node | instructions per request |", "| --- | ---: |"]
    total = 0
    for name, node in result["nodes"].items():
        lines.append(f"| {name} | {node['ir_per_request']:,} |")
        total += node["ir_per_request"]
    lines += [f"| both | {total:,} |", ""]
    for name, node in result["nodes"].items():
        lines += [f"## {name} node: the {len(node['top'])} costliest functions (self)", "",
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
