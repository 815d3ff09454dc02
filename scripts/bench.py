#!/usr/bin/env python3
"""weft's benchmark (issue 4): weft against the direct path, an HAProxy pair
and an nginx pair, in the same lab namespaces, in one run, as ratios.

Run it with `scripts/bench` (as root), which installs the tools, builds weft
in release mode and calls this file with WEFT_BIN set. Everything happens in a
throw-away weftlab lab (pods 198.18.0.0/16, VIPs 198.19.0.0/16) that is torn
down at the end, on failure and on Ctrl-C. Every load loop is bounded in time
(wrk -d, subprocess timeouts) and count (redis-benchmark -n, h2load -n).

    client pod 198.18.0.2                         server pod 198.18.0.3
    wrk / redis-benchmark / h2load                nginx :8080 (1 KiB file)
    weft proxy (outbound 15001)  --h2 mesh-->     weft proxy (mesh 15008) -> 127.0.0.1:8080
    haproxy :10001               --h2 (proto h2)->haproxy :10002          -> 127.0.0.1:8080
    nginx :10003                 --HTTP/1.1 ka--> nginx :10004            -> 127.0.0.1:8080
                                                  redis-server :6379, grpc_app.py :50051

Only the VIP path is intercepted: the client pod runs `weft init
--exclude-outbound-cidrs 198.18.0.0/16` (so the direct, HAProxy and nginx
paths reach the server pod's addresses untouched) and the server pod runs
`weft init --exclude-inbound-ports` for the backend and the reference
proxies' ports (weft's mesh port is never redirected anyway).

`--soak` runs soak mode instead (class Soak, soak_main): no reference
proxies; rounds of HTTP/1.1, HTTP/2 (h2c), CONNECT and plain-TCP traffic
through a weft pair, with both nodes' RSS and open descriptors read after
every round, into docs/benchmarks/soak.md and soak.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import microbench  # noqa: E402
import weftlab  # noqa: E402

APPS = REPO / "Tests" / "e2e" / "apps"
PY = sys.executable

BACKEND_PORT = 8080
HAPROXY_CLIENT_PORT, HAPROXY_SERVER_PORT = 10001, 10002
NGINX_CLIENT_PORT, NGINX_SERVER_PORT = 10003, 10004
REDIS_PORT = 6379
GRPC_PORT = 50051
WEB_VIP, REDIS_VIP, GRPC_VIP = "198.19.0.10", "198.19.0.11", "198.19.0.12"
HTTP_PATHS = ("direct", "weft", "haproxy", "nginx")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BODY = (b"weft-bench " * 94)[:1023] + b"\n"  # exactly 1024 bytes
assert len(PAGE_BODY) == 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# /proc readings


def proc_tree(pid: int) -> list[int]:
    """`pid` and its descendants (nginx master + workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def fd_count(pids: list[int]) -> int:
    """Open file descriptors of `pids`: the entries of /proc/<pid>/fd."""
    total = 0
    for p in pids:
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


def memory_breakdown(pids: list[int]) -> dict[str, int]:
    """RSS split by kind, in KiB, from /proc/<pid>/smaps_rollup: `private`
    (pages only this process maps: heap, stacks, written data), `shared`
    (library and binary pages other processes map too, such as the other
    weft node on the same host), and `pss` (each shared page divided by its
    sharers)."""
    out = {"rss": 0, "pss": 0, "private": 0, "shared": 0, "anon": 0}
    keys = {"Rss:": "rss", "Pss:": "pss", "Private_Clean:": "private", "Private_Dirty:": "private",
            "Shared_Clean:": "shared", "Shared_Dirty:": "shared", "Anonymous:": "anon"}
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                parts = line.split()
                if parts and parts[0] in keys:
                    out[keys[parts[0]]] += int(parts[1])
        except OSError:
            pass
    return out


def ctx_switches(pids: list[int]) -> int:
    """Voluntary + involuntary context switches of every thread of `pids`."""
    total = 0
    for p in pids:
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for t in tasks:
            try:
                for line in (t / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total


class RSSSampler:
    """Peak RSS of each process group while a load runs (every 0.2 s)."""

    def __init__(self, procs: dict[str, list[int]]):
        self.procs = procs
        self.peak = {name: rss_kib(pids) for name, pids in procs.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, pids in self.procs.items():
                self.peak[name] = max(self.peak[name], rss_kib(pids))

    def __enter__(self) -> "RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# --------------------------------------------------------------------------
# Configs of the reference proxies and the backend


def nginx_conf(work: Path, name: str, body: str, workers: int) -> Path:
    tmp = work / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    conf = work / f"{name}.conf"
    conf.write_text(f"""
user www-data;
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    default_type application/octet-stream;
{body}
}}
""")
    conf.chmod(0o644)
    return conf


def start_nginx(pod: weftlab.Pod, work: Path, name: str, body: str, workers: int,
                port: int) -> weftlab.Proc:
    conf = nginx_conf(work, name, body, workers)
    proc = pod.spawn(["nginx", "-e", f"{work}/{name}-error.log", "-c", str(conf), "-g", "daemon off;"],
                     name=name)
    pod.wait_port(port, proc=proc)
    return proc


def haproxy_conf(work: Path, name: str, frontend_bind: str, server_line: str, threads: int) -> Path:
    conf = work / f"{name}.cfg"
    conf.write_text(f"""
global
    nbthread {threads}
    maxconn 8000
    tune.h2.max-concurrent-streams 100
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind {frontend_bind}
    default_backend be
backend be
    {server_line}
""")
    conf.chmod(0o644)
    return conf


def start_haproxy(pod: weftlab.Pod, work: Path, name: str, frontend_bind: str, server_line: str,
                  threads: int, port: int) -> weftlab.Proc:
    conf = haproxy_conf(work, name, frontend_bind, server_line, threads)
    proc = pod.spawn(["haproxy", "-db", "-f", str(conf)], name=name)
    pod.wait_port(port, proc=proc)
    return proc


def write_htdocs(work: Path) -> Path:
    """`work`/htdocs with the 1 KiB page `1k`, readable by nginx's and nghttpd's users."""
    htdocs = work / "htdocs"
    htdocs.mkdir(exist_ok=True)
    (htdocs / "1k").write_bytes(PAGE_BODY)
    htdocs.chmod(0o755)
    (htdocs / "1k").chmod(0o644)
    return htdocs


def start_backend(pod: weftlab.Pod, work: Path, htdocs: Path, workers: int) -> weftlab.Proc:
    """The backend app: Debian's nginx serving `htdocs` on BACKEND_PORT (keep-alive)."""
    return start_nginx(pod, work, "nginx-backend", f"""
    server {{
        listen {BACKEND_PORT} reuseport backlog=4096;
        root {htdocs};
        location / {{ }}
    }}""", workers, BACKEND_PORT)


def start_redis(pod: weftlab.Pod, work: Path, bind: str) -> weftlab.Proc:
    redis_dir = work / "redis"
    redis_dir.mkdir(exist_ok=True)
    proc = pod.spawn(["redis-server", "--port", str(REDIS_PORT), "--bind", bind,
                      "--protected-mode", "no", "--save", "", "--appendonly", "no",
                      "--dir", str(redis_dir)], name="redis")
    pod.wait_port(REDIS_PORT, proc=proc)
    return proc


def run_wrk(pod: weftlab.Pod, script: Path, url: str, conns: int, duration: float, threads: int,
            extra: list[str] = ()) -> dict:
    """wrk from `pod` with a WRK_DONE-style `script`; its JSON summary, with
    `rps` and `errors` added."""
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", "5s",
           "-s", str(script), url]
    if extra:
        cmd += ["--", *extra]
    res = pod.run(cmd, check=False, timeout=duration + 30)
    m = re.search(r"^WRKJSON (\{.*\})$", res.stdout, re.M)
    if res.returncode != 0 or not m:
        raise weftlab.LabError(f"wrk {url} failed ({res.returncode}): {res.stdout}\n{res.stderr}")
    out = json.loads(m.group(1))
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    out["errors"] = sum(out[k] for k in out if k.startswith("err_"))
    return out


def cluster(name: str, vip: str, port: int, endpoint_ip: str, protocol: str = "auto",
            mesh: bool = True) -> dict:
    """A weft cluster: one VIP, one endpoint (the server pod's address)."""
    return {"name": name, "addresses": [f"{vip}:{port}"], "mesh": mesh, "protocol": protocol,
            "lb": "round_robin", "endpoints": [{"address": f"{endpoint_ip}:{port}"}]}


def h2load_summary(txt: str) -> dict | None:
    """The counts and rate of an h2load run from its output (None when absent)."""
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", txt)
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", txt)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", txt)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", txt)
    proto = re.search(r"Application protocol: (\S+)", txt)
    if not (m and req and st):
        return None
    return {"rps": float(m.group(3)), "requests": int(req.group(3)),
            "total": int(req.group(1)), "done": int(req.group(2)),
            "failed": int(req.group(4)), "errored": int(req.group(5)),
            "timeout": int(req.group(6)),
            "status_2xx": int(st.group(1)), "status_5xx": int(st.group(4)),
            "latency_mean": lat.group(3) if lat else None,
            "protocol": proto.group(1) if proto else None}


WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%.1f,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"p999_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""

# Fixed-rate mode: each connection waits a random 5..15 ms (mean 10 ms) after
# each response before it sends the next request, so N connections offer
# about N*100 requests/s, spread out (not in lock-step bursts).
WRK_RATE = r"""
local lo, hi = 5, 15
function init(args)
  if args[1] then lo = tonumber(args[1]) end
  if args[2] then hi = tonumber(args[2]) end
  math.randomseed(os.time() * 1000 + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
end
function delay()
  return math.random(lo, hi)
end
""" + WRK_DONE

IDLE_CLIENT = r"""
import asyncio, resource, sys, time
host, port, path, n, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
async def one(sem, conns, bad):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            w.write(req)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            m = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if m:
                await asyncio.wait_for(r.readexactly(int(m[0].split(b":")[1])), 5)
            if not head.startswith(b"HTTP/1.1 200"):
                bad.append(head[:40])
            conns.append(w)
        except Exception as e:
            bad.append(repr(e)[:80])
async def main():
    sem, conns, bad = asyncio.Semaphore(50), [], []
    await asyncio.wait_for(asyncio.gather(*(one(sem, conns, bad) for _ in range(n))), 60)
    print(f"READY {len(conns)} {len(bad)} {bad[:3]}", flush=True)
    await asyncio.sleep(hold)
    for w in conns:
        w.close()
    print("DONE", flush=True)
asyncio.run(main())
"""

# Soak mode's opaque-TCP load: `total` request/response round trips to redis
# (RESP `ECHO` of 1 KiB, the answer checked byte for byte), `per_conn` on each
# connection before it is closed and a new one opened, `conc` connections at a
# time; every connect and read waits at most 5 s and the whole run `limit` s.
SOAK_TCP_CLIENT = r"""
import asyncio, json, sys, time
host, port, total, per_conn, conc, limit = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                            int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
payload = bytes(range(256)) * 4
req = b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(payload), payload)
want = b"$%d\r\n%s\r\n" % (len(payload), payload)
st = {"left": total, "ok": 0, "failed": 0, "connections": 0, "errors": {}}
def err(e):
    k = type(e).__name__
    st["errors"][k] = st["errors"].get(k, 0) + 1
async def worker():
    while st["left"] > 0:
        n = min(per_conn, st["left"])
        st["left"] -= n
        done = 0
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except Exception as e:
            err(e)
            st["failed"] += n
            continue
        st["connections"] += 1
        try:
            for _ in range(n):
                w.write(req)
                if await asyncio.wait_for(r.readexactly(len(want)), 5) != want:
                    raise ValueError("wrong echo")
                done += 1
        except Exception as e:
            err(e)
        finally:
            st["ok"] += done
            st["failed"] += n - done
            w.close()
            try:
                await asyncio.wait_for(w.wait_closed(), 5)
            except Exception:
                pass
async def main():
    t0 = time.monotonic()
    tasks = [asyncio.create_task(worker()) for _ in range(conc)]
    _, pending = await asyncio.wait(tasks, timeout=limit)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.monotonic() - t0
    print("SOAKJSON " + json.dumps({
        "requests": st["ok"], "failed": st["failed"] + st["left"], "connections": st["connections"],
        "errors": st["errors"], "timed_out": bool(pending), "elapsed_s": round(elapsed, 3),
        "rps": round(st["ok"] / elapsed, 1) if elapsed > 0 else 0}), flush=True)
asyncio.run(main())
"""


# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results: dict = {"http": {p: [] for p in HTTP_PATHS},
                              "latency": {p: [] for p in HTTP_PATHS},
                              "idle": {}, "redis": {"direct": [], "weft": []},
                              "grpc": {"direct": [], "weft": []}, "problems": []}

    # -- setup -------------------------------------------------------------

    def access_log(self, node: str) -> dict:
        """`access_log` for a weft node's config when --access-log asks for
        one: a file in the lab's work directory (writable by uid 1337)."""
        if not self.args.access_log:
            return {}
        path = self.lab.workdir / f"{node}-access.log"
        path.touch()
        path.chmod(0o666)
        return {"access_log": {"format": self.args.access_log, "path": str(path)}}

    def setup(self, lab: weftlab.Lab) -> None:
        a = self.args
        self.lab = lab
        work = lab.workdir
        self.work = work
        self.client = client = lab.add_pod("client")
        self.server = server = lab.add_pod("server")
        sip = server.ip4
        htdocs = write_htdocs(work)
        (work / "wrk-done.lua").write_text(WRK_DONE)
        (work / "wrk-rate.lua").write_text(WRK_RATE)
        (work / "idle_client.py").write_text(IDLE_CLIENT)
        for f in work.iterdir():
            if f.is_file():
                f.chmod(0o644)

        log("server pod: nginx backend (1 KiB file), redis-server, grpc_app.py, HAProxy, nginx")
        self.backend = start_backend(server, work, htdocs, a.backend_workers)
        self.redis = start_redis(server, work, "0.0.0.0")
        self.grpc = server.spawn([PY, str(APPS / "grpc_app.py"), "--port", str(GRPC_PORT)],
                                 name="grpc_app")
        server.wait_port(GRPC_PORT, proc=self.grpc)

        self.haproxy_s = start_haproxy(server, work, "haproxy-server", f":{HAPROXY_SERVER_PORT} proto h2",
                                       f"server app 127.0.0.1:{BACKEND_PORT}", a.proxy_threads,
                                       HAPROXY_SERVER_PORT)
        self.nginx_s = start_nginx(server, work, "nginx-server", f"""
    upstream app {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 256; keepalive_requests 10000000; }}
    server {{
        listen {NGINX_SERVER_PORT} reuseport backlog=4096;
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}""", a.proxy_threads, NGINX_SERVER_PORT)

        log("client pod: HAProxy (h2 to the server pod's HAProxy), nginx (keep-alive upstream)")
        self.haproxy_c = start_haproxy(client, work, "haproxy-client", f"127.0.0.1:{HAPROXY_CLIENT_PORT}",
                                       f"server s1 {sip}:{HAPROXY_SERVER_PORT} proto h2", a.proxy_threads,
                                       HAPROXY_CLIENT_PORT)
        self.nginx_c = start_nginx(client, work, "nginx-client", f"""
    upstream peer {{ server {sip}:{NGINX_SERVER_PORT}; keepalive 256; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{NGINX_CLIENT_PORT} reuseport backlog=4096;
        location / {{ proxy_pass http://peer; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}""", a.proxy_threads, NGINX_CLIENT_PORT)

        log("weft init in both pods; weft proxy in both pods (log level warning"
            + (f", access log {a.access_log} to a file)" if a.access_log else ")"))
        client.init("--exclude-outbound-cidrs", f"{weftlab.POD_NET4}.0.0/16")
        server.init("--exclude-inbound-ports",
                    ",".join(str(p) for p in (BACKEND_PORT, HAPROXY_SERVER_PORT, NGINX_SERVER_PORT,
                                              REDIS_PORT, GRPC_PORT)))
        self.weft_s = server.start_weft({"node": {"id": "server"}, **self.access_log("server")}, log_level="warning")
        self.weft_c = client.start_weft({
            "node": {"id": "client"},
            "outbound_policy": "allow_any",
            "clusters": [cluster("web", WEB_VIP, BACKEND_PORT, sip),
                         cluster("redis", REDIS_VIP, REDIS_PORT, sip, "tcp"),
                         cluster("grpc", GRPC_VIP, GRPC_PORT, sip)],
            **self.access_log("client"),
        }, log_level="warning")

        self.urls = {
            "direct": f"http://{sip}:{BACKEND_PORT}/1k",
            "weft": f"http://{WEB_VIP}:{BACKEND_PORT}/1k",
            "haproxy": f"http://127.0.0.1:{HAPROXY_CLIENT_PORT}/1k",
            "nginx": f"http://127.0.0.1:{NGINX_CLIENT_PORT}/1k",
        }
        self.procs = {
            "direct": {},
            "weft": {"weft-client": self.weft_c.pid, "weft-server": self.weft_s.pid},
            "haproxy": {"haproxy-client": self.haproxy_c.pid, "haproxy-server": self.haproxy_s.pid},
            "nginx": {"nginx-client": self.nginx_c.pid, "nginx-server": self.nginx_s.pid},
        }
        for path, url in self.urls.items():
            res = client.curl(url, "-o", "/dev/null", "-w", "%{http_code} %{size_download}")
            if res.stdout.strip() != "200 1024":
                raise weftlab.LabError(f"{path}: {url} answered {res.stdout!r} {res.stderr!r}")
        streams = client.metric("weft_mesh_streams_total", role="client")
        if streams < 1:
            raise weftlab.LabError("the weft path did not use the mesh (weft_mesh_streams_total = 0)")
        log("all four paths answer 200 with 1024 bytes; the weft path uses the HTTP/2 mesh")

    def pids(self, path: str) -> dict[str, list[int]]:
        return {name: proc_tree(pid) for name, pid in self.procs[path].items()}

    # -- measurements -----------------------------------------------------------

    def wrk(self, url: str, conns: int, duration: float, script: str, threads: int,
            extra: list[str] = ()) -> dict:
        return run_wrk(self.client, self.work / script, url, conns, duration, threads, extra)

    def measured(self, path: str, fn) -> dict:
        """Run `fn()` (a load) and add the CPU and peak RSS of each proxy process."""
        procs = self.pids(path)
        before = {n: cpu_seconds(p) for n, p in procs.items()}
        cs_before = {n: ctx_switches(p) for n, p in procs.items()}
        backend = proc_tree(self.backend.pid)
        b_before = cpu_seconds(backend)
        with RSSSampler(procs) as sampler:
            out = fn()
        after = {n: cpu_seconds(p) for n, p in procs.items()}
        cs_after = {n: ctx_switches(p) for n, p in procs.items()}
        n = max(out.get("requests", 0), 1)
        out["ctx_switches_per_req"] = {k: round((cs_after[k] - cs_before[k]) / n, 3) for k in procs}
        out["cpu_s"] = {k: round(after[k] - before[k], 3) for k in procs}
        out["cpu_s_per_1k"] = {k: round((after[k] - before[k]) / n * 1000, 5) for k in procs}
        out["cpu_s_per_1k_total"] = round(sum(out["cpu_s_per_1k"].values()), 5)
        out["backend_cpu_s_per_1k"] = round((cpu_seconds(backend) - b_before) / n * 1000, 5)
        out["rss_peak_kib"] = dict(sampler.peak)
        return out

    def check_alive(self) -> None:
        for name, proc in (("weft-client", self.weft_c), ("weft-server", self.weft_s),
                           ("haproxy-client", self.haproxy_c), ("haproxy-server", self.haproxy_s),
                           ("nginx-client", self.nginx_c), ("nginx-server", self.nginx_s),
                           ("nginx-backend", self.backend)):
            if not proc.alive():
                raise weftlab.LabError(f"{name} died (exit {proc.popen.poll()})\n{proc.log()[-3000:]}")

    def idle_rss(self) -> None:
        procs = {n: p for path in HTTP_PATHS for n, p in self.pids(path).items()}
        self.results["rss_idle_kib"] = {n: rss_kib(p) for n, p in procs.items()}
        self.results["memory_idle_kib"] = {n: memory_breakdown(p) for n, p in procs.items()}
        before = {n: cpu_seconds(p) for n, p in procs.items()}
        time.sleep(3)
        self.results["cpu_idle_ms_per_s"] = {n: round((cpu_seconds(p) - before[n]) / 3 * 1000, 1)
                                             for n, p in procs.items()}
        log("idle CPU (ms/s): " + ", ".join(f"{k} {v}" for k, v in self.results["cpu_idle_ms_per_s"].items()))
        log("idle RSS (KiB): " + ", ".join(f"{k} {v}" for k, v in self.results["rss_idle_kib"].items()))

    def idle_connections(self) -> None:
        n = self.args.idle_conns
        for path in ("weft", "haproxy", "nginx"):
            url = self.urls[path]
            m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
            procs = self.pids(path)
            before = {k: rss_kib(p) for k, p in procs.items()}
            proc = self.client.spawn([PY, str(self.work / "idle_client.py"), m.group(1), m.group(2),
                                      m.group(3), str(n), "30"], name=f"idle-{path}")
            deadline = time.monotonic() + 70
            line = ""
            while time.monotonic() < deadline and proc.alive():
                line = next((l for l in proc.log().splitlines() if l.startswith("READY")), "")
                if line:
                    break
                time.sleep(0.2)
            if not line:
                proc.stop(timeout=2)
                raise weftlab.LabError(f"idle client for {path} did not get ready:\n{proc.log()}")
            time.sleep(1.0)
            procs = self.pids(path)
            held = {k: rss_kib(p) for k, p in procs.items()}
            active = (self.client.metric("weft_tcp_connections_active", direction="outbound")
                      if path == "weft" else None)
            proc.stop(timeout=2)
            time.sleep(1.5)
            after = {k: rss_kib(p) for k, p in self.pids(path).items()}
            # Sockets the proxy still holds for connections the app has closed.
            ss = self.client.run(["ss", "-Htanp", "state", "close-wait"], check=False).stdout
            close_wait = sum(1 for l in ss.splitlines() if any(f"pid={pid}," in l
                                                               for pids in procs.values() for pid in pids))
            _, opened, bad = line.split(" ", 2)
            failures = int(bad.split(" ", 1)[0])
            entry = {"connections": int(opened), "failed": failures, "failures_sample": bad, "rss_before_kib": before,
                     "rss_held_kib": held, "rss_after_close_kib": after,
                     "per_conn_kib": {k: round((held[k] - before[k]) / max(int(opened), 1), 2)
                                      for k in held},
                     "per_conn_kib_total": round((sum(held.values()) - sum(before.values()))
                                                 / max(int(opened), 1), 2)}
            entry["close_wait_after_close"] = close_wait
            if close_wait > int(opened) // 10:
                self.results["problems"].append(
                    f"{path}: 1.5 s after the app closed its {opened} idle connections, the client-pod "
                    f"proxy still holds {close_wait} sockets in CLOSE-WAIT (it never closed its side)")
            if active is not None:
                entry["weft_outbound_active_while_held"] = active
                entry["weft_outbound_active_after_close"] = self.client.metric(
                    "weft_tcp_connections_active", direction="outbound")
                if entry["weft_outbound_active_after_close"] > active / 2 and active > 100:
                    self.results["problems"].append(
                        f"weft: weft_tcp_connections_active{{direction=\"outbound\"}} was {active:.0f} with "
                        f"the idle connections held and still {entry['weft_outbound_active_after_close']:.0f} "
                        "1.5 s after the app closed them")
            self.results["idle"][path] = entry
            log(f"{n} idle connections via {path}: opened {opened}, failures {bad}, "
                f"CLOSE-WAIT after close {close_wait}; "
                f"per connection {entry['per_conn_kib_total']} KiB "
                f"({', '.join(f'{k} {v}' for k, v in entry['per_conn_kib'].items())})")

    def throughput(self) -> None:
        a = self.args
        for rnd in range(a.rounds):
            order = HTTP_PATHS[rnd % 4:] + HTTP_PATHS[:rnd % 4]
            for path in order:
                self.wrk(self.urls[path], a.connections, a.warmup, "wrk-done.lua", a.wrk_threads)
                r = self.measured(path, lambda: self.wrk(self.urls[path], a.connections, a.duration,
                                                         "wrk-done.lua", a.wrk_threads))
                r["round"] = rnd + 1
                if path == "weft":
                    r["mesh_connections"] = self.client.metric("weft_mesh_connections", role="client")
                self.results["http"][path].append(r)
                self.check_alive()
                log(f"round {rnd + 1} {path:8s} {r['rps']:9.0f} req/s  errors {r['errors']}  "
                    f"proxy CPU {r['cpu_s_per_1k_total'] * 1000:.1f} ms/1k req  "
                    f"p99 {r['p99_us']:.0f} us")

    def profile(self, out_dir: Path) -> None:
        """A flat `perf` profile (by DSO and symbol) of both weft nodes during one
        extra saturation run (not counted in the figures)."""
        a = self.args
        data = self.work / "perf.data"
        pids = ",".join(str(p) for p in self.procs["weft"].values())
        rec = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-p", pids, "-o", str(data), "--",
                                "sleep", str(a.duration)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            r = self.wrk(self.urls["weft"], a.connections, a.duration, "wrk-done.lua", a.wrk_threads)
        finally:
            try:
                rec.wait(timeout=a.duration + 30)
            except subprocess.TimeoutExpired:
                rec.kill()
                rec.wait()
        def report_by(sort: str, limit: str) -> list[str]:
            rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                                  "--sort", sort, "--percent-limit", limit],
                                 capture_output=True, text=True, timeout=120)
            text = rep.stdout
            demangle = shutil.which("swift-demangle")
            if demangle and text:
                text = subprocess.run([demangle, "--simplified"], input=text, capture_output=True,
                                      text=True, timeout=60).stdout or text
            return [re.sub(r"(\s+-)*\s*$", "", l) for l in text.splitlines()
                    if l.strip() and not l.startswith("#")]
        by_dso = report_by("dso", "0.5")
        by_sym = report_by("dso,symbol", "0.3")
        header = (f"perf record -F 999 -p <weft client>,<weft server> during `wrk -t{a.wrk_threads} "
                  f"-c{a.connections} -d{a.duration}s` on the weft path ({r['rps']:.0f} req/s), "
                  "both nodes together, --no-children.\n")
        (out_dir / "weft-profile.txt").write_text(header + "\n== by DSO (>= 0.5%)\n" + "\n".join(by_dso)
                                                 + "\n\n== by DSO and symbol (>= 0.3%)\n"
                                                 + "\n".join(by_sym) + "\n")
        self.results["profile_by_dso"] = by_dso[:12]
        self.results["profile_top"] = by_sym[:30]
        lines = by_sym
        log("perf profile of weft: " + "; ".join(" ".join(l.split()) for l in lines[:6]))

    def syscalls(self) -> None:
        """System calls per request of each proxy process, counted by `strace -c -f`
        during one extra saturation run per path (not counted in the figures:
        tracing slows every call down, but the count per request is what is
        compared)."""
        a = self.args
        out = {}
        for path in ("weft", "haproxy"):
            per_proc = {}
            tracers = []
            for name, pid in self.procs[path].items():
                report = self.work / f"strace-{name}.txt"
                tracers.append((name, report, subprocess.Popen(
                    ["strace", "-c", "-f", "-o", str(report), "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
            time.sleep(0.5)  # attached to every thread
            try:
                r = self.wrk(self.urls[path], a.connections, a.duration, "wrk-done.lua", a.wrk_threads)
            finally:
                for _, _, tracer in tracers:
                    tracer.send_signal(signal.SIGINT)  # detach and write the summary
                    try:
                        tracer.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        tracer.kill()
                        tracer.wait()
            n = max(r["requests"], 1)
            for name, report, _ in tracers:
                calls = {}
                for line in report.read_text().splitlines() if report.exists() else []:
                    f = line.split()
                    # % time, seconds, usecs/call, calls, [errors], syscall
                    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                        calls[f[-1]] = int(f[3])
                per_proc[name] = {"per_request": round(sum(calls.values()) / n, 2),
                                  "top": {k: round(v / n, 2) for k, v in
                                          sorted(calls.items(), key=lambda kv: -kv[1])[:6]}}
            out[path] = {"requests": n, "rps_traced": round(r["rps"]), "procs": per_proc}
            log(f"syscalls per request, {path}: " + "; ".join(
                f"{k} {v['per_request']} ({', '.join(f'{s} {c}' for s, c in v['top'].items())})"
                for k, v in per_proc.items()))
        self.results["syscalls"] = out

    def latency(self) -> None:
        a = self.args
        for rnd in range(a.rounds):
            order = HTTP_PATHS[rnd % 4:] + HTTP_PATHS[:rnd % 4]
            for path in order:
                self.wrk(self.urls[path], a.rate_connections, 1, "wrk-rate.lua", 1)
                r = self.measured(path, lambda: self.wrk(self.urls[path], a.rate_connections,
                                                         a.rate_duration, "wrk-rate.lua", 1))
                r["round"] = rnd + 1
                self.results["latency"][path].append(r)
                self.check_alive()
                log(f"round {rnd + 1} {path:8s} at {r['rps']:6.0f} req/s: p50 {r['p50_us']:.0f} "
                    f"p90 {r['p90_us']:.0f} p99 {r['p99_us']:.0f} p99.9 {r['p999_us']:.0f} us  "
                    f"errors {r['errors']}")

    def run_redis(self) -> None:
        a = self.args
        hosts = {"direct": self.server.ip4, "weft": REDIS_VIP}
        for rnd in range(a.rounds):
            for path in (("direct", "weft") if rnd % 2 == 0 else ("weft", "direct")):
                def run():
                    res = self.client.run(["redis-benchmark", "-h", hosts[path], "-p", str(REDIS_PORT),
                                           "-c", str(a.redis_clients), "-n", str(a.redis_requests),
                                           "-t", "set,get", "--csv"], check=False, timeout=120)
                    if res.returncode != 0:
                        raise weftlab.LabError(f"redis-benchmark {path}: {res.stdout}\n{res.stderr}")
                    out = {"tests": {}}
                    for line in res.stdout.splitlines():
                        cells = [c.strip('"') for c in line.split(",")]
                        if cells[0] in ("SET", "GET"):
                            out["tests"][cells[0]] = {"rps": float(cells[1]),
                                                      "p50_ms": float(cells[4]) if len(cells) > 4 else None,
                                                      "p99_ms": float(cells[6]) if len(cells) > 6 else None}
                    out["requests"] = 2 * a.redis_requests
                    return out
                procs = {"direct": {}, "weft": self.procs["weft"]}[path]
                self.procs["_tmp"] = procs
                r = self.measured("_tmp", run)
                self.procs.pop("_tmp")
                r["round"] = rnd + 1
                self.results["redis"][path].append(r)
                self.check_alive()
                log(f"round {rnd + 1} redis {path:6s} " + "  ".join(
                    f"{t} {v['rps']:.0f}/s p50 {v['p50_ms']} ms" for t, v in r["tests"].items()))

    def run_grpc(self) -> None:
        a = self.args
        payload = b"x" * 64
        frame = b"\x00" + len(payload).to_bytes(4, "big") + payload
        (self.work / "grpc-req.bin").write_bytes(frame)
        (self.work / "grpc-req.bin").chmod(0o644)
        hosts = {"direct": self.server.ip4, "weft": GRPC_VIP}
        for rnd in range(a.rounds):
            for path in (("direct", "weft") if rnd % 2 == 0 else ("weft", "direct")):
                def run():
                    res = self.client.run(["h2load", "-n", str(a.grpc_requests), "-c", "4", "-m", "8",
                                           "-T", "20", "-N", "20",
                                           "-d", str(self.work / "grpc-req.bin"),
                                           "-H", "content-type: application/grpc",
                                           "-H", "te: trailers",
                                           f"http://{hosts[path]}:{GRPC_PORT}/weft.Echo/Unary"],
                                          check=False, timeout=120)
                    out = h2load_summary(res.stdout)
                    if out is None:
                        raise weftlab.LabError(f"h2load {path}: {res.stdout}\n{res.stderr}")
                    return out
                self.procs["_tmp"] = {"direct": {}, "weft": self.procs["weft"]}[path]
                r = self.measured("_tmp", run)
                self.procs.pop("_tmp")
                r["round"] = rnd + 1
                self.results["grpc"][path].append(r)
                self.check_alive()
                log(f"round {rnd + 1} grpc {path:6s} {r['rps']:.0f} req/s, 2xx {r['status_2xx']}, "
                    f"failed {r['failed']}, errored {r['errored']}, mean {r['latency_mean']}")

    def weft_health(self) -> None:
        """What weft counted: errors, status classes, connections still open."""
        out = {}
        for name, pod in (("client", self.client), ("server", self.server)):
            text = pod.metrics_text()
            out[name] = {line.split(" ")[0]: float(line.split(" ")[1])
                         for line in text.splitlines()
                         if line.startswith("weft_") and not line.startswith("weft_request_duration")
                         and " " in line and float(line.split(" ")[1] or 0) != 0}
            wlog = pod.weft_log().splitlines()
            out[name + "_log_lines"] = len(wlog)
            out[name + "_log_tail"] = wlog[-15:]
        self.results["weft_metrics"] = out
        for name in ("client", "server"):
            m = out[name]
            bad = {k: v for k, v in m.items()
                   if any(s in k for s in ("error", "reset", "failure", "refused", "timeouts",
                                           'status_class="5xx"', 'status_class="4xx"'))}
            if bad:
                self.results["problems"].append(f"weft {name} counted: {bad}")
            if out[name + "_log_lines"]:
                self.results["problems"].append(
                    f"weft {name} logged {out[name + '_log_lines']} lines at warning or above; "
                    f"last: {out[name + '_log_tail'][-3:]}")


# --------------------------------------------------------------------------
# Soak mode (--soak): rounds of the same traffic through one weft pair,
# RSS and open file descriptors of both nodes after every round.

H2_VIP, TCP_VIP = "198.19.0.13", "198.19.0.14"
H2_PORT = 8082
SOAK_KINDS = {
    "http1": "HTTP/1.1 app → HTTP/2 mesh → HTTP/1.1 to nginx",
    "h2": "HTTP/2 app (prior-knowledge h2c) → mesh → h2c to nghttpd",
    "connect": "opaque TCP (redis) on a CONNECT stream of the mesh",
    "tcp": "opaque TCP (redis) relayed as plain TCP (mesh: false)",
}


class Soak(Bench):
    """The lab of the regular bench cut down to weft: client pod (load
    generators, weft) and server pod (nginx, nghttpd, redis-server, weft);
    no HAProxy, no nginx pair, no direct path. Each kind of traffic gets a
    fresh pair of weft nodes, a reading before any traffic (round 0), then
    `--soak-rounds` rounds of `--soak-requests` requests, each followed by a
    pause (`--soak-pause`, so closed connections are reaped) and a reading of
    both nodes' RSS and open descriptors."""

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.results = {"kinds": {}, "problems": []}

    def setup(self, lab: weftlab.Lab) -> None:
        a = self.args
        self.lab = lab
        self.work = work = lab.workdir
        self.client = client = lab.add_pod("client")
        self.server = server = lab.add_pod("server")
        sip = server.ip4
        htdocs = write_htdocs(work)
        (work / "soak_tcp_client.py").write_text(SOAK_TCP_CLIENT)
        (work / "soak_tcp_client.py").chmod(0o644)
        # Ephemeral ports: every round of the TCP kinds opens and closes
        # requests/per-conn connections; both pods may reuse TIME-WAIT ones.
        for pod in (client, server):
            weftlab.Lab._sysctl(pod.ns, "net.ipv4.tcp_tw_reuse", "1")

        log("server pod: nginx (1 KiB file) :8080, nghttpd --no-tls :8082, redis-server on 127.0.0.1:6379")
        self.backend = start_backend(server, work, htdocs, a.backend_workers)
        self.nghttpd = server.spawn(["nghttpd", "--no-tls", "-d", str(htdocs), str(H2_PORT)],
                                    name="nghttpd")
        server.wait_port(H2_PORT, proc=self.nghttpd)
        self.redis = start_redis(server, work, "127.0.0.1")
        # Both pods intercepted whole (no exclusions): the client pod's load
        # reaches VIPs only through weft; the server pod's inbound plain TCP
        # (the `tcp` kind) goes through its weft's inbound listener.
        client.init()
        server.init()
        self.client_config = {
            "node": {"id": "client"},
            "outbound_policy": "allow_any",
            "clusters": [cluster("web", WEB_VIP, BACKEND_PORT, sip),
                         cluster("h2", H2_VIP, H2_PORT, sip),
                         cluster("redis-connect", REDIS_VIP, REDIS_PORT, sip, "tcp"),
                         cluster("redis-tcp", TCP_VIP, REDIS_PORT, sip, "tcp", mesh=False)],
        }
        self.server_config = {"node": {"id": "server"}}
        if getattr(a, "mtls", False):
            log("--mtls: a mesh CA and both nodes' certificates from weft certs; the mesh hop in mutual TLS 1.3")
            tls = {}
            for name in ("client", "server"):
                tls[name] = lab.mesh_tls(f"ns/soak/sa/{name}", trust_domain="soak.local")
            self.client_config["listeners"] = {"mesh": {"tls": tls["client"]}}
            self.server_config["listeners"] = {"mesh": {"tls": tls["server"]}}
        self.weft_c = self.weft_s = None

    def start_nodes(self) -> None:
        """A fresh pair of weft nodes (the old pair, if any, stopped with SIGTERM)."""
        for name, pod in (("client", self.client), ("server", self.server)):
            if pod.weft is not None:
                rc = pod.stop_weft()
                if rc != 0:
                    self.results["problems"].append(f"weft {name} exited {rc} on SIGTERM")
        self.weft_s = self.server.start_weft(self.server_config, log_level="warning")
        self.weft_c = self.client.start_weft(self.client_config, log_level="warning")
        self.procs = {"weft": {"weft-client": self.weft_c.pid, "weft-server": self.weft_s.pid}}

    def check_alive(self) -> None:
        for name, proc in (("weft-client", self.weft_c), ("weft-server", self.weft_s),
                           ("nginx-backend", self.backend), ("nghttpd", self.nghttpd),
                           ("redis-server", self.redis)):
            if not proc.alive():
                raise weftlab.LabError(f"{name} died (exit {proc.popen.poll()})\n{proc.log()[-3000:]}")

    def reading(self) -> dict:
        """RSS (KiB, VmRSS) and open descriptors of both nodes, then a few of their counters."""
        out = {}
        for role, proc in (("client", self.weft_c), ("backend", self.weft_s)):
            pids = proc_tree(proc.pid)
            out[f"{role}_rss_kib"] = rss_kib(pids)
            out[f"{role}_fds"] = fd_count(pids)
        c, s = self.client.metrics_text(), self.server.metrics_text()
        mv = weftlab.metric_value
        out["metrics"] = {
            "client_mesh_streams": mv(c, "weft_mesh_streams_total", role="client"),
            "client_mesh_connections": mv(c, "weft_mesh_connections", role="client"),
            "client_tcp_outbound_total": mv(c, "weft_tcp_connections_total", direction="outbound"),
            "client_tcp_outbound_active": mv(c, "weft_tcp_connections_active", direction="outbound"),
            "backend_mesh_streams": mv(s, "weft_mesh_streams_total", role="server"),
            "backend_tcp_inbound_total": mv(s, "weft_tcp_connections_total", direction="inbound"),
            "backend_tcp_inbound_active": mv(s, "weft_tcp_connections_active", direction="inbound"),
        }
        return out

    def load(self, kind: str) -> dict:
        """One round of `kind`: --soak-requests requests, bounded in count and time."""
        a = self.args
        n, limit = a.soak_requests, a.soak_round_timeout
        if kind in ("http1", "h2"):
            conns = a.soak_connections if kind == "http1" else a.soak_h2_connections
            cmd = ["h2load", "-n", str(n), "-c", str(conns), "-T", "20", "-N", "20"]
            if kind == "http1":
                cmd += ["--h1", f"http://{WEB_VIP}:{BACKEND_PORT}/1k"]
            else:
                cmd += ["-m", "10", f"http://{H2_VIP}:{H2_PORT}/1k"]
            res = self.client.run(cmd, check=False, timeout=limit)
            out = h2load_summary(res.stdout)
            want = "http/1.1" if kind == "http1" else "h2c"
            if out is None or out["protocol"] != want:
                raise weftlab.LabError(f"h2load {kind}: {res.stdout[-3000:]}\n{res.stderr[-2000:]}")
            out["failed_total"] = out["total"] - out["status_2xx"]
            out["connections"] = conns
            out["elapsed_s"] = round(out["requests"] / out["rps"], 3) if out["rps"] else None
            return out
        vip = REDIS_VIP if kind == "connect" else TCP_VIP
        res = self.client.run([PY, str(self.work / "soak_tcp_client.py"), vip, str(REDIS_PORT), str(n),
                               str(a.soak_per_conn), str(a.soak_connections), str(max(1, limit - 15))],
                              check=False, timeout=limit)
        m = re.search(r"^SOAKJSON (\{.*\})$", res.stdout, re.M)
        if res.returncode != 0 or not m:
            raise weftlab.LabError(f"soak tcp client {kind} ({res.returncode}): {res.stdout[-2000:]}\n"
                                   f"{res.stderr[-2000:]}")
        out = json.loads(m.group(1))
        out["failed_total"] = out["failed"]
        return out

    def check_path(self, kind: str, before: dict, after: dict, load: dict) -> None:
        """After round 1: the traffic took the path the kind names."""
        d = {k: after["metrics"][k] - before["metrics"][k] for k in after["metrics"]}
        if kind in ("http1", "h2"):
            ok = d["client_mesh_streams"] >= load["requests"] and d["backend_mesh_streams"] >= load["requests"]
        elif kind == "connect":
            ok = d["client_mesh_streams"] >= load["connections"]
        else:
            ok = (d["client_mesh_streams"] == 0 and d["client_tcp_outbound_total"] >= load["connections"]
                  and d["backend_tcp_inbound_total"] >= load["connections"])
        if not ok:
            raise weftlab.LabError(f"{kind}: round 1 did not take the expected path; counter deltas {d}, "
                                   f"load {load}")

    def run_kind(self, kind: str) -> None:
        a = self.args
        log(f"{kind}: {SOAK_KINDS[kind]}; fresh weft nodes")
        self.start_nodes()
        time.sleep(a.soak_pause)
        base = self.reading()
        rounds = [{"round": 0, **base}]
        entry = {"description": SOAK_KINDS[kind], "rounds": rounds}
        self.results["kinds"][kind] = entry
        log(f"{kind} round 0 (no traffic yet): client {base['client_rss_kib']} kB {base['client_fds']} fds, "
            f"backend {base['backend_rss_kib']} kB {base['backend_fds']} fds")
        for rnd in range(1, a.soak_rounds + 1):
            load = self.load(kind)
            self.check_alive()
            time.sleep(a.soak_pause)
            r = {"round": rnd, **self.reading(), "load": load}
            rounds.append(r)
            if rnd == 1:
                self.check_path(kind, base, r, load)
            if load["failed_total"]:
                self.results["problems"].append(f"{kind} round {rnd}: {load['failed_total']} of "
                                                f"{a.soak_requests} requests failed ({load})")
            log(f"{kind} round {rnd}: {load['requests']} ok, {load['failed_total']} failed, "
                f"{load['rps']:.0f} req/s; client {r['client_rss_kib']} kB {r['client_fds']} fds, "
                f"backend {r['backend_rss_kib']} kB {r['backend_fds']} fds")
        n_problems = len(self.results["problems"])
        self.weft_health()
        entry["weft_metrics"] = self.results.pop("weft_metrics")
        self.results["problems"][n_problems:] = [f"{kind}: {p}" for p in self.results["problems"][n_problems:]]
        entry["growth"] = soak_growth(rounds)


def soak_growth(rounds: list[dict]) -> dict:
    """Per node: change from round 1 to the last round (round 0 is before any
    traffic, so its step up is warm-up: pools, buffers, allocator arenas),
    and whether it rose at every round after round 1."""
    out = {}
    loaded = [r for r in rounds if r["round"] >= 1]
    for role in ("client", "backend"):
        for what in ("rss_kib", "fds"):
            vals = [r[f"{role}_{what}"] for r in loaded]
            if not vals:
                continue
            steps = [b - a for a, b in zip(vals, vals[1:])]
            out[f"{role}_{what}"] = {"first": vals[0], "last": vals[-1], "change": vals[-1] - vals[0],
                                     "rose_every_round": bool(steps) and all(x > 0 for x in steps)}
    return out


def soak_verdicts(kind: str, g: dict, requests_after_round1: int,
                  conns_after_round1: int) -> tuple[list[str], list[str]]:
    """Plain-words (findings, notes). Findings: any rise in descriptors from
    round 1 to the last; RSS up by more than 1 MiB, or by more than 256 kB
    rising at every round. Notes: smaller RSS rises that still came at every
    round, with the bytes per request they amount to."""
    findings, notes = [], []
    for role in ("client", "backend"):
        f = g.get(f"{role}_fds")
        if f and f["change"] > 0:
            findings.append(f"{kind}: {role} node's open descriptors grew from {f['first']} (round 1) to "
                            f"{f['last']} (last round)")
        m = g.get(f"{role}_rss_kib")
        if not m or m["change"] <= 0:
            continue
        per = []
        if requests_after_round1:
            per.append(f"{m['change'] * 1024 / requests_after_round1:.2f} bytes per request")
        if conns_after_round1:
            per.append(f"{m['change'] * 1024 / conns_after_round1:,.0f} bytes per app connection")
        text = (f"{kind}: {role} node's RSS went from {m['first']:,} kB (round 1) to {m['last']:,} kB "
                f"(+{m['change']:,} kB{', rising at every round' if m['rose_every_round'] else ''}"
                + "".join(f"; {x}" for x in per) + ")")
        if m["change"] > 1024 or (m["rose_every_round"] and m["change"] > 256):
            findings.append(text)
        elif m["rose_every_round"]:
            notes.append(text)
    return findings, notes


def soak_kind_verdicts(kind: str, v: dict) -> tuple[list[str], list[str]]:
    rounds = [r for r in v["rounds"] if r["round"] >= 2]
    return soak_verdicts(kind, v.get("growth", {}), sum(r["load"]["requests"] for r in rounds),
                         sum(r["load"].get("connections", 0) for r in rounds))


def soak_report(env: dict, args: argparse.Namespace, res: dict, runtime: float) -> str:
    L = []
    a = L.append
    a("# Soak")
    a("")
    a("Written by `scripts/bench --soak` — do not edit by hand; rerun it. Does weft's memory or "
      "descriptor count grow with traffic? Each kind of traffic runs through a client weft node and a "
      "backend weft node in rounds; after every round (and a "
      f"{args.soak_pause:g} s pause, so closed connections are reaped) the RSS (`VmRSS` of "
      "`/proc/<pid>/status`, kB) and the open file descriptors (entries of `/proc/<pid>/fd`) of both "
      "nodes are read. Round 0 is the reading of a fresh pair before any traffic; each kind gets a "
      "fresh pair. The regular bench (`scripts/bench`, [../benchmarks.md](../benchmarks.md)) compares "
      "weft with HAProxy and nginx; this page does not.")
    a("")
    a("## What was run")
    a("")
    a(f"{args.soak_rounds} rounds × {args.soak_requests:,} requests per kind, in two weftlab pods "
      "(network namespaces): `client` 198.18.0.2 runs the load generator and weft, `server` 198.18.0.3 "
      "runs the apps and weft; `weft init` in both pods (no exclusions), nodes at log level warning.")
    a("")
    a("| kind | path | load per round |")
    a("| --- | --- | --- |")
    a(f"| http1 | VIP {WEB_VIP}:{BACKEND_PORT} → client weft → HTTP/2 mesh → backend weft → HTTP/1.1 "
      f"keep-alive → nginx (1 KiB file) | `h2load --h1 -n {args.soak_requests} -c {args.soak_connections}` |")
    a(f"| h2 | VIP {H2_VIP}:{H2_PORT} → client weft (h2 detected) → mesh streams → backend weft → h2c → "
      f"`nghttpd --no-tls` (1 KiB file) | `h2load -n {args.soak_requests} -c {args.soak_h2_connections} -m 10` "
      "(prior-knowledge h2c) |")
    a(f"| connect | VIP {REDIS_VIP}:{REDIS_PORT}, cluster `mesh: true`, `protocol: tcp` → a CONNECT stream "
      "per connection on the mesh → backend weft → redis-server on 127.0.0.1 | "
      f"{args.soak_requests:,} RESP `ECHO` round trips of 1 KiB, {args.soak_per_conn} per connection "
      f"({args.soak_requests // args.soak_per_conn:,} connections), {args.soak_connections} at a time |")
    a(f"| tcp | VIP {TCP_VIP}:{REDIS_PORT}, cluster `mesh: false`, `protocol: tcp` → plain TCP relay → "
      "backend pod's inbound redirect → backend weft (:15006) → redis-server on 127.0.0.1 | as `connect` |")
    a("")
    a("The `connect` and `tcp` load is a bounded asyncio client in `scripts/bench.py` (`SOAK_TCP_CLIENT`) "
      "that checks every echo byte for byte. After round 1 the run checks weft's counters to make sure "
      "the traffic took the named path (mesh streams for http1, h2 and connect; none for tcp, whose "
      "connections the backend node counts as inbound).")
    a("")
    findings, notes = [], []
    for kind, v in res["kinds"].items():
        a(f"## {kind}: {v['description']}")
        a("")
        a("| round | requests ok | failed | req/s | client RSS kB | client fds | backend RSS kB | backend fds |")
        a("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in v["rounds"]:
            ld = r.get("load")
            a(f"| {r['round']}{' (before)' if r['round'] == 0 else ''} | "
              f"{fmt(ld['requests']) if ld else '–'} | {ld['failed_total'] if ld else '–'} | "
              f"{fmt(ld['rps']) if ld else '–'} | {r['client_rss_kib']:,} | {r['client_fds']} | "
              f"{r['backend_rss_kib']:,} | {r['backend_fds']} |")
        a("")
        g = v.get("growth", {})
        if g:
            a("From round 1 to round " + str(v["rounds"][-1]["round"]) + ": " + "; ".join(
                f"{role} RSS {g[f'{role}_rss_kib']['change']:+,} kB, fds {g[f'{role}_fds']['change']:+}"
                for role in ("client", "backend")) + ".")
            a("")
        f, n = soak_kind_verdicts(kind, v)
        findings += f
        notes += n
    a("## Findings")
    a("")
    a("Compared from round 1 to the last round (round 0 → 1 is warm-up: mesh connections, pools, "
      "buffers, allocator arenas). Flagged: any rise in open descriptors; RSS up by more than 1 MiB, or "
      "by more than 256 kB rising at every round."
      + (f" For scale, a leak of one 16-byte allocation per request would add "
         f"{16 * args.soak_requests * (args.soak_rounds - 1) / 2**20:.1f} MiB over rounds 2–{args.soak_rounds}."
         if args.soak_rounds >= 2 else ""))
    a("")
    if findings:
        for f in findings:
            a(f"- **{f}**")
    else:
        a("- Nothing flagged: no descriptor growth, and no RSS growth above those thresholds, on either "
          "node, for any kind.")
    for n in notes:
        a(f"- Below the thresholds but rising at every round: {n}")
    a("")
    if res["problems"]:
        a("Problems seen in this run:")
        a("")
        for p in res["problems"]:
            a(f"- {p}")
        a("")
    a("## Machine")
    a("")
    a("| | |")
    a("| --- | --- |")
    a(f"| date | {env['date']} |")
    a(f"| weft revision | {env.get('revision', '?')} (release build) |")
    a(f"| CPU | {env['cpu']} × {env['nproc']} (nproc) |")
    a(f"| kernel | {env['kernel']} |")
    a(f"| memory | {env['memory_gib']} GiB |")
    for k in ("weft", "nginx", "h2load", "redis-benchmark", "python"):
        a(f"| {k if k != 'redis-benchmark' else 'redis'} | {env['tools'].get(k, '?')} |")
    a(f"| soak runtime | {runtime:.0f} s |")
    a("")
    a("Raw figures of every round, with weft's counters: [`soak.json`](soak.json). Rerun: "
      "`sudo scripts/bench --soak` (`--soak-rounds`, `--soak-requests`; `scripts/bench --help`).")
    a("")
    return "\n".join(L)


def soak_tools_present(who: str) -> bool:
    """The soak lab's servers and load generator are installed (else says which is not)."""
    for tool in ("nginx", "nghttpd", "h2load", "redis-server"):
        if not shutil.which(tool):
            print(f"{who}: {tool} is missing (scripts/install-deps installs it)", file=sys.stderr)
            return False
    return True


def mixed_soak_main(args: argparse.Namespace) -> int:
    """`scripts/soak`: every kind of traffic at once, back to back, through
    one weft pair for --soak-minutes; both nodes' RSS and open descriptors
    every --soak-interval seconds. Exits 1 when a request failed or a node
    grew (mixed_soak_verdicts)."""
    kinds = [k for k in args.soak_kinds.split(",") if k]
    if args.soak_minutes <= 0 or args.soak_interval <= 0 or not kinds or any(k not in SOAK_KINDS for k in kinds):
        print(f"soak: --minutes and --interval take positive numbers; kinds: {','.join(SOAK_KINDS)}",
              file=sys.stderr)
        return 2
    if not soak_tools_present("soak"):
        return 1
    t0 = time.monotonic()
    env = machine_info()
    log(f"soak: {args.soak_minutes:g} min of {', '.join(kinds)} at once, a reading every "
        f"{args.soak_interval:g} s; {env['cpu']} x{env['nproc']}; weft {env['tools']['weft']} ({env['revision']})")
    weftlab.cleanup_stale()
    soak = Soak(args)
    samples: list[dict] = []
    totals = {k: {"rounds": 0, "requests": 0, "failed": 0} for k in kinds}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    failed = None

    def traffic(kind: str) -> None:
        while not stop.is_set():
            try:
                load = soak.load(kind)
            except Exception as e:  # noqa: BLE001 - recorded, the soak goes on
                with lock:
                    errors.append(f"{kind}: {str(e).splitlines()[0][:300]}")
                    totals[kind]["failed"] += args.soak_requests
                stop.wait(2.0)
                continue
            with lock:
                totals[kind]["rounds"] += 1
                totals[kind]["requests"] += load["requests"]
                totals[kind]["failed"] += load["failed_total"]
            stop.wait(args.soak_gap)

    with weftlab.Lab() as lab:
        try:
            soak.setup(lab)
            soak.start_nodes()
            time.sleep(args.soak_pause)
            deadline = time.monotonic() + args.soak_minutes * 60
            threads = [threading.Thread(target=traffic, args=(k,), daemon=True) for k in kinds]
            for t in threads:
                t.start()
            start = time.monotonic()
            while True:
                now = time.monotonic()
                stop.wait(min(args.soak_interval, max(0.0, deadline - now)))
                soak.check_alive()
                r = soak.reading()
                with lock:
                    r["minute"] = round((time.monotonic() - start) / 60, 2)
                    r["totals"] = json.loads(json.dumps(totals))
                samples.append(r)
                done = sum(v["requests"] for v in r["totals"].values())
                bad = sum(v["failed"] for v in r["totals"].values())
                log(f"soak {r['minute']:6.2f} min: client {r['client_rss_kib']:,} kB {r['client_fds']} fds, "
                    f"backend {r['backend_rss_kib']:,} kB {r['backend_fds']} fds; {done:,} requests, {bad} failed")
                if time.monotonic() >= deadline:
                    break
            stop.set()
            for t in threads:
                t.join(args.soak_round_timeout + 30)
            time.sleep(args.soak_pause)
            idle = soak.reading()
            idle["minute"] = "idle"
            idle["totals"] = totals
            samples.append(idle)
            log(f"soak after the load: client {idle['client_rss_kib']:,} kB {idle['client_fds']} fds, "
                f"backend {idle['backend_rss_kib']:,} kB {idle['backend_fds']} fds")
        except Exception as e:  # noqa: BLE001 - report, tear down, exit 1
            stop.set()
            failed = f"{type(e).__name__}: {e}" if not isinstance(e, weftlab.LabError) else str(e)
            log(f"FAILED: {failed}")
    runtime = time.monotonic() - t0
    findings = mixed_soak_verdicts(samples, totals, errors)
    if failed:
        findings.insert(0, "soak aborted: " + failed.splitlines()[0])
    out = Path(args.out) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    raw = {"machine": env, "args": vars(args), "runtime_s": round(runtime, 1), "samples": samples,
           "totals": totals, "errors": errors[:50], "findings": findings}
    stem = "soak-mixed-mtls" if args.mtls else "soak-mixed"
    (out / f"{stem}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    md = mixed_soak_report(env, args, samples, totals, errors, findings, runtime)
    (out / f"{stem}.md").write_text(md)
    print()
    print(md)
    log(f"wrote {out / (stem + '.md')}, {out / (stem + '.json')} in {runtime:.0f} s")
    return 1 if findings else 0


def mixed_soak_verdicts(samples: list[dict], totals: dict, errors: list[str]) -> list[str]:
    """What fails the soak: any failed request; on either node, a median of
    the last third of the readings under load above the median of the first
    third (the first reading is warm-up and left out) by more than 8 MiB and
    10 % of RSS, or by more than 16 descriptors (connections in flight come
    and go); and, once the load stopped, more descriptors than at the first
    reading under load."""
    findings = []
    failed = sum(v["failed"] for v in totals.values())
    if failed:
        findings.append(f"{failed} requests failed ({'; '.join(errors[:3]) or 'see the totals'})")
    loaded = [s for s in samples if s["minute"] != "idle"][1:]
    idle = next((s for s in samples if s["minute"] == "idle"), None)
    if len(loaded) < 3:
        return findings
    third = max(1, len(loaded) // 3)
    for role in ("client", "backend"):
        first = statistics.median(s[f"{role}_rss_kib"] for s in loaded[:third])
        last = statistics.median(s[f"{role}_rss_kib"] for s in loaded[-third:])
        if last - first > max(8 * 1024, first * 0.10):
            findings.append(f"{role} node's RSS grew from {first:,.0f} kB to {last:,.0f} kB "
                            "(median of the first and last third of the readings)")
        ffirst = statistics.median(s[f"{role}_fds"] for s in loaded[:third])
        flast = statistics.median(s[f"{role}_fds"] for s in loaded[-third:])
        if flast - ffirst > 16:
            findings.append(f"{role} node's open descriptors grew from {ffirst:.0f} to {flast:.0f}")
        if idle and idle[f"{role}_fds"] > loaded[0][f"{role}_fds"]:
            findings.append(f"{role} node holds {idle[f'{role}_fds']} descriptors after the load, more than "
                            f"the {loaded[0][f'{role}_fds']} of the first reading under load")
    return findings


def mixed_soak_report(env: dict, args: argparse.Namespace, samples: list[dict], totals: dict,
                      errors: list[str], findings: list[str], runtime: float) -> str:
    L = []
    a = L.append
    a("# Soak, mixed traffic" + (", mTLS between the nodes" if args.mtls else ""))
    a("")
    a("Written by `scripts/soak` — do not edit by hand; rerun it. Every kind of traffic at once, back to "
      f"back, through one pair of weft nodes for {args.soak_minutes:g} minutes; every "
      f"{args.soak_interval:g} s the RSS (`VmRSS`, kB) and the open file descriptors of both nodes. "
      "The last row is read after the load stopped (and a pause). The kinds are those of "
      "[soak.md](soak.md): " + "; ".join(f"`{k}`: {SOAK_KINDS[k]}" for k in totals) + ". Each kind "
      f"runs rounds of {args.soak_requests:,} requests with {args.soak_gap:g} s between them.")
    a("")
    a("| minute | client RSS kB | client fds | backend RSS kB | backend fds | requests so far | failed |")
    a("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in samples:
        done = sum(v["requests"] for v in s["totals"].values())
        bad = sum(v["failed"] for v in s["totals"].values())
        a(f"| {s['minute']} | {s['client_rss_kib']:,} | {s['client_fds']} | {s['backend_rss_kib']:,} | "
          f"{s['backend_fds']} | {done:,} | {bad} |")
    a("")
    a("| kind | rounds | requests | failed |")
    a("| --- | ---: | ---: | ---: |")
    for k, v in totals.items():
        a(f"| {k} | {v['rounds']} | {v['requests']:,} | {v['failed']} |")
    a("")
    a("## Verdict")
    a("")
    a("Fails on any failed request; on a node whose RSS (median of the last third of the readings under "
      "load, against the first third, the first reading left out as warm-up) rose by more than 8 MiB and "
      "10 %, or whose descriptors rose by more than 16; and on a node holding more descriptors after the "
      "load than at its first reading under load.")
    a("")
    if findings:
        for f in findings:
            a(f"- **{f}**")
    else:
        a("- Passed: no failed request, no growth of RSS or descriptors on either node.")
    if errors:
        a("")
        a("Errors seen: " + "; ".join(errors[:5]))
    a("")
    a(f"weft {env.get('revision', '?')} (release build), {env['cpu']} × {env['nproc']}, "
      f"kernel {env['kernel']}, {env['date']}; runtime {runtime:.0f} s.")
    a("")
    return "\n".join(L)


def soak_main(args: argparse.Namespace) -> int:
    if not soak_tools_present("bench"):
        return 1
    kinds = [k for k in args.soak_kinds.split(",") if k]
    unknown = [k for k in kinds if k not in SOAK_KINDS]
    if unknown or not kinds or args.soak_rounds < 1 or args.soak_requests < 1 or args.soak_per_conn < 1:
        print(f"bench: --soak-kinds takes {','.join(SOAK_KINDS)}; rounds, requests and per-conn >= 1",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    env = machine_info()
    log(f"soak: {args.soak_rounds} rounds x {args.soak_requests} requests of {', '.join(kinds)}; "
        f"{env['cpu']} x{env['nproc']}; weft {env['tools']['weft']} ({env['revision']})")
    weftlab.cleanup_stale()
    soak = Soak(args)
    failed = None
    with weftlab.Lab() as lab:
        try:
            soak.setup(lab)
            for kind in kinds:
                soak.run_kind(kind)
        except Exception as e:  # noqa: BLE001 - report, tear down, exit 1
            failed = f"{type(e).__name__}: {e}" if not isinstance(e, weftlab.LabError) else str(e)
            log(f"FAILED: {failed}")
            for name, text in lab.logs().items():
                if "weft" in name:
                    print(f"--- {name} (tail) ---\n" + "\n".join(text.splitlines()[-30:]), flush=True)
    runtime = time.monotonic() - t0
    out = Path(args.out) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    verdicts = [soak_kind_verdicts(k, v) for k, v in soak.results["kinds"].items() if "growth" in v]
    raw = {"machine": env, "args": vars(args), "runtime_s": round(runtime, 1),
           "findings": [f for fs, _ in verdicts for f in fs], "notes": [n for _, ns in verdicts for n in ns],
           **soak.results}
    if failed:
        raw["problems"].append("soak aborted: " + failed.splitlines()[0])
        (out / "soak-failed-run.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        log(f"aborted after {runtime:.0f} s; raw figures in {out / 'soak-failed-run.json'}")
        return 1
    (out / "soak.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    md = soak_report(env, args, soak.results, runtime)
    (out / "soak.md").write_text(md)
    print()
    print(md)
    log(f"wrote {out / 'soak.md'}, {out / 'soak.json'} in {runtime:.0f} s")
    return 0


# --------------------------------------------------------------------------
# Environment and report


def machine_info() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def ver(cmd: list[str], pat: str = r"(\S+)") -> str:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except OSError:
            return "?"
        txt = (res.stdout + res.stderr).strip()
        m = re.search(pat, txt)
        return m.group(1) if m else txt.splitlines()[0] if txt else "?"

    # The checkout the binary was built in (WEFT_BIN may live in another worktree), else this one.
    src = REPO
    if os.environ.get("WEFT_BIN"):
        top = subprocess.run(["git", "-C", str(Path(os.environ["WEFT_BIN"]).resolve().parent),
                              "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=20)
        if top.returncode == 0 and top.stdout.strip():
            src = Path(top.stdout.strip())
    rev = ver(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], r"(\S+)")
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "Sources", "Package.swift"],
                           capture_output=True, text=True, timeout=20).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": rev + (" + uncommitted changes in Sources/" if dirty else ""),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "tools": {
            "weft": ver([os.environ.get("WEFT_BIN", "weft"), "version"], r"weft (\S+)"),
            "nginx": ver(["nginx", "-v"], r"nginx/(\S+)"),
            "haproxy": ver(["haproxy", "-v"], r"version (\S+)"),
            "wrk": ver(["dpkg-query", "-W", "-f=${Version}", "wrk"], r"(.+)"),
            "redis-benchmark": ver(["redis-benchmark", "--version"], r"redis-benchmark (\S+)"),
            "h2load": ver(["h2load", "--version"], r"nghttp2/(\S+)"),
            "swift": ver(["swift", "--version"], r"Swift version (\S+)"),
            "python": platform.python_version(),
        },
    }


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(res: dict) -> dict:
    s: dict = {"http": {}, "latency": {}}
    for path, runs in res["http"].items():
        if not runs:
            continue
        procs = runs[0]["cpu_s_per_1k"].keys()
        s["http"][path] = {
            "rps": med(r["rps"] for r in runs), "rps_min": min(r["rps"] for r in runs),
            "rps_max": max(r["rps"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "requests": sum(r["requests"] for r in runs),
            "cpu_ms_per_1k": {p: med(r["cpu_s_per_1k"][p] * 1000 for r in runs) for p in procs},
            "cpu_ms_per_1k_total": med(r["cpu_s_per_1k_total"] * 1000 for r in runs),
            "backend_cpu_ms_per_1k": med(r["backend_cpu_s_per_1k"] * 1000 for r in runs),
            "ctx_switches_per_req": {p: med(r["ctx_switches_per_req"][p] for r in runs) for p in procs},
            "rss_load_kib": {p: max(r["rss_peak_kib"][p] for r in runs) for p in procs},
            "p50_us": med(r["p50_us"] for r in runs), "p99_us": med(r["p99_us"] for r in runs),
            "mesh_connections": max((r.get("mesh_connections") or 0) for r in runs) if path == "weft" else None,
        }
    for path, runs in res["latency"].items():
        if not runs:
            continue
        s["latency"][path] = {k: med(r[k] for r in runs)
                              for k in ("rps", "p50_us", "p90_us", "p99_us", "p999_us", "lat_mean_us")}
        s["latency"][path]["errors"] = sum(r["errors"] for r in runs)
        s["latency"][path]["cpu_ms_per_1k_total"] = med(r["cpu_s_per_1k_total"] * 1000 for r in runs)
    d = s["latency"].get("direct")
    if d:
        for path, v in s["latency"].items():
            for k in ("p50_us", "p90_us", "p99_us", "p999_us"):
                v["added_" + k] = v[k] - d[k]
    for kind in ("redis", "grpc"):
        s[kind] = {}
        for path, runs in res[kind].items():
            if not runs:
                continue
            if kind == "redis":
                s[kind][path] = {t: {"rps": med(r["tests"][t]["rps"] for r in runs),
                                     "p50_ms": med(r["tests"][t]["p50_ms"] for r in runs)}
                                 for t in runs[0]["tests"]}
            else:
                s[kind][path] = {"rps": med(r["rps"] for r in runs),
                                 "failed": sum(r["failed"] + r["errored"] + r["timeout"] for r in runs),
                                 "non_2xx": sum(r["done"] - r["status_2xx"] for r in runs)}
            if path == "weft":
                s[kind][path]["weft_cpu_ms_per_1k"] = med(r["cpu_s_per_1k_total"] * 1000 for r in runs)
    return s


def fmt(v, nd=0, unit=""):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}{unit}"


def chart(summary: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    http, lat = summary["http"], summary["latency"]
    paths = [p for p in HTTP_PATHS if p in http]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    vals = [http[p]["rps"] for p in paths]
    err = [[http[p]["rps"] - http[p]["rps_min"] for p in paths],
           [http[p]["rps_max"] - http[p]["rps"] for p in paths]]
    colors = {"direct": "#888888", "weft": "#2a7ab0", "haproxy": "#c0504d", "nginx": "#4f9a4f"}
    ax1.bar(paths, vals, yerr=err, capsize=4, color=[colors[p] for p in paths])
    ax1.set_title("Saturation throughput (wrk, 1 KiB), median of rounds")
    ax1.set_ylabel("requests/s")
    for i, v in enumerate(vals):
        ax1.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    lp = [p for p in paths if p in lat and p != "direct"]
    x = range(len(lp))
    w = 0.25
    for j, (k, label) in enumerate((("added_p50_us", "p50"), ("added_p99_us", "p99"),
                                    ("added_p999_us", "p99.9"))):
        ys = [lat[p][k] for p in lp]
        ax2.bar([i + (j - 1) * w for i in x], ys, w, label=label)
    ax2.set_xticks(list(x))
    ax2.set_xticklabels(lp)
    ax2.set_title("Latency added over direct at ~1000 req/s")
    ax2.set_ylabel("microseconds")
    ax2.axhline(0, color="black", linewidth=0.6)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def report(env: dict, args: argparse.Namespace, res: dict, summary: dict, runtime: float,
           chart_ok: bool) -> str:
    http, lat = summary["http"], summary["latency"]
    L = []
    a = L.append
    a("# Benchmarks")
    a("")
    a("Written by `scripts/bench` (issue 4) — do not edit by hand; rerun the bench. "
      "All paths are measured in one run, in the same two lab pods, alternating the paths and "
      f"repeating each {args.rounds} times; figures are medians of the rounds. This machine is "
      "shared and noisy: read the ratios, not the absolute numbers.")
    a("")
    a("## Machine and tools")
    a("")
    a("| | |")
    a("| --- | --- |")
    a(f"| date | {env['date']} |")
    a(f"| weft revision | {env.get('revision', '?')} (`{Path(os.environ.get('WEFT_BIN', 'weft')).name}`, "
      "release build) |")
    a(f"| CPU | {env['cpu']} × {env['nproc']} (nproc) |")
    a(f"| kernel | {env['kernel']} |")
    a(f"| memory | {env['memory_gib']} GiB |")
    for k, v in env["tools"].items():
        a(f"| {k} | {v} |")
    a(f"| bench runtime | {runtime:.0f} s |")
    a("")
    a("## Setup")
    a("")
    a("Two weftlab pods (network namespaces on one bridge): `client` 198.18.0.2 runs the load "
      "generators, `server` 198.18.0.3 runs Debian's nginx serving a 1024-byte file on :8080 "
      f"({args.backend_workers} workers, keep-alive). The paths:")
    a("")
    a("| path | hops |")
    a("| --- | --- |")
    a("| **direct** | client → nginx at the server pod's IP (the limit on this machine) |")
    a("| **weft** | client → VIP 198.19.0.10:8080, iptables REDIRECT → weft outbound (client pod) → "
      "HTTP/2 mesh (h2c, :15008) → weft (server pod) → HTTP/1.1 keep-alive → nginx on 127.0.0.1. "
      "Cluster `mesh: true`, protocol detected; weft init in both pods; weft at log level warning"
      + (f"; **access log on** ({args.access_log}, to a file, both nodes)" if args.access_log else "") + " |")
    a(f"| **haproxy** | client → HAProxy on 127.0.0.1 (client pod, nbthread {args.proxy_threads}) → "
      "HTTP/2 (`proto h2`, h2c) → HAProxy (server pod) → HTTP/1.1 (`http-reuse always`) → nginx |")
    a(f"| **nginx** | client → nginx on 127.0.0.1 (client pod, {args.proxy_threads} workers) → "
      "HTTP/1.1 keep-alive upstream → nginx (server pod) → HTTP/1.1 keep-alive upstream → nginx |")
    a("")
    a("Interception: the client pod runs `weft init --exclude-outbound-cidrs 198.18.0.0/16`, so only "
      "connections to VIPs go through weft, and the reference proxies' traffic (and the direct path) "
      "leaves untouched; the server pod runs `weft init --exclude-inbound-ports` with the backend's, "
      "the reference proxies', redis's and gRPC's ports. Every proxy gets "
      f"{args.proxy_threads} threads/workers (weft: one event loop per core).")
    a("")
    a("## HTTP/1.1, saturation (closed loop)")
    a("")
    a(f"`wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s` after a {args.warmup}s warm-up, "
      "GET of the 1 KiB file. CPU: utime+stime of each proxy process (all threads; nginx master and "
      "workers) from `/proc/<pid>/stat`, over the run, per 1000 requests, summed over the two proxies of "
      "the path. RSS: `VmRSS` from `/proc/<pid>/status`, idle (after start and one request) and peak "
      "under load (sampled every 0.2 s), summed over the two proxies.")
    a("")
    a("| path | req/s (median) | min–max | vs direct | vs haproxy | errors / non-2xx | "
      "proxy CPU ms / 1000 req | per process | RSS idle | RSS under load | mesh connections |")
    a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    idle = res.get("rss_idle_kib", {})
    hp = http.get("haproxy", {}).get("rps")
    dr = http.get("direct", {}).get("rps")
    for p in HTTP_PATHS:
        if p not in http:
            continue
        v = http[p]
        per = ", ".join(f"{k} {fmt(x, 1)}" for k, x in v["cpu_ms_per_1k"].items()) or "–"
        procs = list(v["cpu_ms_per_1k"].keys())
        ridle = sum(idle.get(k, 0) for k in procs)
        rload = sum(v["rss_load_kib"].values())
        a(f"| {p} | {fmt(v['rps'])} | {fmt(v['rps_min'])}–{fmt(v['rps_max'])} | "
          f"{fmt(v['rps'] / dr if dr else None, 2)} | {fmt(v['rps'] / hp if hp else None, 2)} | "
          f"{v['errors']} of {v['requests']:,} | {fmt(v['cpu_ms_per_1k_total'], 1) if procs else '–'} | {per} | "
          f"{fmt(ridle / 1024, 1, ' MiB') if procs else '–'} | "
          f"{fmt(rload / 1024, 1, ' MiB') if procs else '–'} | "
          f"{fmt(v['mesh_connections']) if v['mesh_connections'] is not None else '–'} |")
    a("")
    end = res.get("rss_end_kib", {})
    cidle = res.get("cpu_idle_ms_per_s", {})
    if end:
        a("Per process: RSS idle at start, peak under load, and at the end of the whole run "
          "(after every load and the idle-connection test); CPU while idle (3 s, no traffic); voluntary + "
          "involuntary context switches of all its threads (`/proc/<pid>/task/*/status`) per request.")
        a("")
        a("| process | RSS idle | RSS peak under load | RSS at end | idle CPU ms/s | "
          "context switches per request (saturation) |")
        a("| --- | ---: | ---: | ---: | ---: | ---: |")
        for p in HTTP_PATHS:
            for k in http.get(p, {}).get("rss_load_kib", {}):
                a(f"| {k} | {fmt(idle.get(k, 0) / 1024, 1, ' MiB')} | "
                  f"{fmt(http[p]['rss_load_kib'][k] / 1024, 1, ' MiB')} | "
                  f"{fmt(end.get(k, 0) / 1024, 1, ' MiB')} | {fmt(cidle.get(k), 1)} | "
                  f"{fmt(http[p].get('ctx_switches_per_req', {}).get(k), 2)} |")
        a("")
    mem = res.get("memory_idle_kib", {})
    if mem:
        a("Idle memory split by kind (`/proc/<pid>/smaps_rollup`): *private* pages are this process's "
          "alone (heap, stacks, written data); *shared* pages are library and binary pages that other "
          "processes map too (the two weft nodes share their binary, the Swift runtime linked in); PSS charges "
          "each shared page to its sharers in equal parts.")
        a("")
        a("| process | RSS | private | shared | PSS |")
        a("| --- | ---: | ---: | ---: | ---: |")
        for k, v in mem.items():
            a(f"| {k} | {fmt(v['rss'] / 1024, 1, ' MiB')} | {fmt(v['private'] / 1024, 1, ' MiB')} | "
              f"{fmt(v['shared'] / 1024, 1, ' MiB')} | {fmt(v['pss'] / 1024, 1, ' MiB')} |")
        a("")
    if "direct" in http:
        a(f"The backend nginx itself used {fmt(http['direct']['backend_cpu_ms_per_1k'], 1)} ms of CPU "
          "per 1000 requests on the direct path. The load generator, proxies and backend all share the "
          f"{env['nproc']} cores, so throughput here is roughly the inverse of the total CPU per request.")
        a("")
    sc = res.get("syscalls", {})
    if sc:
        a("System calls per request, counted by `strace -c -f` on every thread of each proxy process "
          "during one extra saturation run per path (tracing slows the proxies down, so these runs are "
          "not in the figures above; the count per request is what compares):")
        a("")
        a("| path | process | syscalls / request | most frequent (per request) |")
        a("| --- | --- | ---: | --- |")
        for path, v in sc.items():
            for name, proc in v["procs"].items():
                top = ", ".join(f"{k} {c}" for k, c in proc["top"].items())
                a(f"| {path} | {name} | {fmt(proc['per_request'], 2)} | {top} |")
        a("")
    micro = res.get("micro")
    if micro:
        a("## Micro-benchmarks: allocations per request")
        a("")
        a("`Benchmarks/` (ordo-one `benchmark`, run by `scripts/microbench.py` after the lab is torn "
          "down): one iteration is one request. *proxied request* is the whole path in one process "
          "(client → node A → HTTP/2 mesh → node B → app and back, on loopback); mallocs are counted "
          "process-wide, so *proxied − direct* is what weft adds per request, both nodes together. "
          "See `Benchmarks/README.md`.")
        a("")
        L.extend(microbench.markdown(micro).splitlines())
        a("")
    elif res.get("micro_error"):
        a(f"Micro-benchmarks did not run: {res['micro_error']}")
        a("")
    a("## Latency at a fixed rate (~1000 req/s)")
    a("")
    a(f"Tool: `wrk` (Debian {env['tools']['wrk']}) with a Lua `delay()` pacing script: "
      f"{args.rate_connections} keep-alive connections, each waiting a random 5–15 ms (mean 10 ms) after "
      f"every response, for {args.rate_duration} s, so about {args.rate_connections * 100} req/s are offered "
      "(the achieved rate is in the table). Latency is measured by wrk per request from write to "
      "complete response, recorded with 1 µs resolution; p99.9 from wrk's `latency:percentile(99.9)`. "
      "This is paced closed loop, not a true open-loop generator (wrk2 is not in Debian): a request "
      "that is slow delays that connection's next one, so a stall is under-counted (coordinated "
      "omission); at these latencies (far below the 10 ms gap) the effect is small.")
    a("")
    druns = res["latency"].get("direct") or []
    if len(druns) > 1:
        p99s = [r["p99_us"] for r in druns]
        p999s = [r["p999_us"] for r in druns]
        a("")
        a(f"Noise floor: the direct path's p99 ranged {fmt(min(p99s))}–{fmt(max(p99s))} µs and its p99.9 "
          f"{fmt(min(p999s))}–{fmt(max(p999s))} µs over the rounds of this run (2 shared cores; the load "
          "generator, both proxies and the backend are scheduled together), so differences in the tails "
          "smaller than that spread are noise; every figure is the median over the rounds, computed per "
          "percentile.")
    a("")
    a("| path | achieved req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 | added p99 | "
      "added p99.9 | errors | proxy CPU ms / 1000 req |")
    a("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in HTTP_PATHS:
        if p not in lat:
            continue
        v = lat[p]
        a(f"| {p} | {fmt(v['rps'])} | {fmt(v['p50_us'])} | {fmt(v['p90_us'])} | {fmt(v['p99_us'])} | "
          f"{fmt(v['p999_us'])} | {fmt(v.get('added_p50_us'))} | {fmt(v.get('added_p99_us'))} | "
          f"{fmt(v.get('added_p999_us'))} | {v['errors']} | "
          f"{fmt(v['cpu_ms_per_1k_total'], 1) if p != 'direct' else '–'} |")
    a("")
    if res.get("idle"):
        a(f"## Idle connections ({args.idle_conns} keep-alive app connections)")
        a("")
        a(f"A bounded asyncio client in the client pod opens {args.idle_conns} connections to the path, "
          "sends one GET on each (so each one is a live, proxied keep-alive connection), and holds them "
          "idle; RSS of the path's proxies is read before, while held, and 1.5 s after the client closed "
          "them, with the number of the client-pod proxy's sockets still in CLOSE-WAIT (`ss`).")
        a("")
        a("| path | opened | failed | RSS before | RSS held | RSS after close | CLOSE-WAIT after close | "
          "per connection | per process |")
        a("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for p, v in res["idle"].items():
            a(f"| {p} | {v['connections']} | {v['failed']} | "
              f"{fmt(sum(v['rss_before_kib'].values()) / 1024, 1, ' MiB')} | "
              f"{fmt(sum(v['rss_held_kib'].values()) / 1024, 1, ' MiB')} | "
              f"{fmt(sum(v['rss_after_close_kib'].values()) / 1024, 1, ' MiB')} | "
              f"{v.get('close_wait_after_close', '–')} | "
              f"{fmt(v['per_conn_kib_total'], 1, ' KiB')} | "
              + ", ".join(f"{k} {fmt(x, 1)} KiB" for k, x in v["per_conn_kib"].items()) + " |")
        a("")
    if summary.get("redis"):
        r = summary["redis"]
        a("## Opaque TCP: redis-benchmark")
        a("")
        a(f"`redis-benchmark -c {args.redis_clients} -n {args.redis_requests} -t set,get` against "
          "redis-server in the server pod: direct to its pod IP, and through weft by a VIP (cluster "
          "`mesh: true`, `protocol: tcp`: each connection is a CONNECT stream on the HTTP/2 mesh).")
        a("")
        a("| test | direct req/s | weft req/s | weft / direct | direct p50 ms | weft p50 ms |")
        a("| --- | ---: | ---: | ---: | ---: | ---: |")
        for t in r.get("direct", {}):
            d, w = r["direct"][t], r.get("weft", {}).get(t, {})
            a(f"| {t} | {fmt(d['rps'])} | {fmt(w.get('rps'))} | "
              f"{fmt(w['rps'] / d['rps'] if w.get('rps') else None, 2)} | {fmt(d['p50_ms'], 3)} | "
              f"{fmt(w.get('p50_ms'), 3)} |")
        if r.get("weft"):
            a("")
            a(f"weft CPU (both nodes): {fmt(r['weft'].get('weft_cpu_ms_per_1k'), 1)} ms per 1000 commands.")
        a("")
    if summary.get("grpc"):
        g = summary["grpc"]
        a("## gRPC unary (h2load)")
        a("")
        a(f"`h2load -n {args.grpc_requests} -c 4 -m 8` POSTing one gRPC-framed 64-byte message to "
          "`/weft.Echo/Unary` of `Tests/e2e/apps/grpc_app.py` (grpcio, Python) in the server pod: direct, "
          "and through weft by a VIP (h2 detected, carried as mesh streams). The Python server is the "
          "bottleneck, so this shows weft's cost relative to a slow app, and a weft figure above the "
          "direct one is the Python server's doing (it then serves weft's 2 mesh connections instead of "
          "h2load's 4), not weft being faster than no proxy; h2load checks HTTP status only, not "
          "grpc-status.")
        a("")
        a("| path | req/s | failed/errored | non-2xx | weft CPU ms / 1000 req |")
        a("| --- | ---: | ---: | ---: | ---: |")
        for p in ("direct", "weft"):
            if p in g:
                a(f"| {p} | {fmt(g[p]['rps'])} | {g[p]['failed']} | {g[p]['non_2xx']} | "
                  f"{fmt(g[p].get('weft_cpu_ms_per_1k'), 1)} |")
        a("")
    a("## Targets (issue 4)")
    a("")
    a("| target | measured | met |")
    a("| --- | --- | --- |")

    def row(name, measured, ok):
        a(f"| {name} | {measured} | {'yes' if ok else 'no' if ok is not None else '–'} |")
    w, h = http.get("weft"), http.get("haproxy")
    if w and h:
        row("throughput ≥ HAProxy's", f"{fmt(w['rps'])} vs {fmt(h['rps'])} req/s", w["rps"] >= h["rps"])
        row("CPU per request ≤ HAProxy's", f"{fmt(w['cpu_ms_per_1k_total'], 1)} vs "
            f"{fmt(h['cpu_ms_per_1k_total'], 1)} ms / 1000 req",
            w["cpu_ms_per_1k_total"] <= h["cpu_ms_per_1k_total"])
    if "weft" in lat and "haproxy" in lat:
        row("p99 added at 1000 rps ≤ HAProxy's", f"{fmt(lat['weft']['added_p99_us'])} vs "
            f"{fmt(lat['haproxy']['added_p99_us'])} µs",
            lat["weft"]["added_p99_us"] <= lat["haproxy"]["added_p99_us"])
    if idle:
        worst = max(idle.get("weft-client", 0), idle.get("weft-server", 0))
        private = res.get("memory_idle_kib", {}).get("weft-client", {}).get("private")
        detail = f" (private {fmt(private / 1024, 1)} MiB)" if private is not None else ""
        row("idle RSS of a node ≤ 15 MB", f"client {fmt(idle.get('weft-client', 0) / 1024, 1)} MiB{detail}, "
            f"server {fmt(idle.get('weft-server', 0) / 1024, 1)} MiB", worst <= 15 * 1000 * 1000 / 1024)
    if "weft" in res.get("idle", {}):
        pc = res["idle"]["weft"]["per_conn_kib"]
        worst = max(pc.values())
        row("≤ 10 KiB per idle app connection", ", ".join(f"{k} {fmt(v, 1)} KiB" for k, v in pc.items()),
            worst <= 10)
    a("")
    if res["problems"]:
        a("## Problems seen in this run")
        a("")
        for p in res["problems"]:
            a(f"- {p}")
        a("")
    if res.get("profile_top"):
        a("## Where weft spends its CPU")
        a("")
        a("`perf record -F 999` on both weft nodes during one extra saturation run on the weft path "
          "(not counted above), both nodes together: by DSO, then the top symbols; in full in "
          "[`benchmarks/weft-profile.txt`](benchmarks/weft-profile.txt):")
        a("")
        a("```")
        for l in res.get("profile_by_dso", []):
            a(l.rstrip()[:160])
        a("")
        for l in res["profile_top"][:25]:
            a(l.rstrip()[:160])
        a("```")
        a("")
    if chart_ok:
        a("## Chart")
        a("")
        a("![throughput and added latency per path](benchmarks/chart.png)")
        a("")
    a("Raw figures of every round: [`benchmarks/results.json`](benchmarks/results.json). "
      "Rerun: `sudo scripts/bench` (`scripts/bench --help` for the knobs). Soak mode, RSS and open "
      "descriptors of both weft nodes over rounds of each kind of traffic: `sudo scripts/bench --soak`, "
      "[`benchmarks/soak.md`](benchmarks/soak.md). Instructions per proxied request of each node under "
      "callgrind, the figure that does not move with the machine: `sudo scripts/bench --callgrind`, "
      "[`benchmarks/callgrind.md`](benchmarks/callgrind.md).")
    a("")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description="weft vs direct vs HAProxy vs nginx, in one run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per saturation run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--rate-connections", type=int, default=10, help="x100 = offered req/s")
    ap.add_argument("--rate-duration", type=int, default=5)
    ap.add_argument("--proxy-threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--backend-workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--idle-conns", type=int, default=1000)
    ap.add_argument("--redis-requests", type=int, default=20000)
    ap.add_argument("--redis-clients", type=int, default=16)
    ap.add_argument("--grpc-requests", type=int, default=3000)
    ap.add_argument("--out", default=str(REPO / "docs"), help="where benchmarks.md and benchmarks/ go")
    ap.add_argument("--access-log", choices=["text", "json"], default=None,
                    help="both weft nodes write an access log in this format to a file")
    ap.add_argument("--skip", default="", help="comma list of: latency,idle,redis,grpc,profile,syscalls,micro")
    ap.add_argument("--soak", action="store_true",
                    help="soak mode instead of the comparison: rounds of each kind of traffic through "
                         "a weft pair, RSS and open fds of both nodes after every round; writes "
                         "benchmarks/soak.md and soak.json (no HAProxy/nginx, no micro-benchmarks)")
    ap.add_argument("--soak-rounds", type=int, default=4)
    ap.add_argument("--soak-requests", type=int, default=40000, help="requests per round and kind")
    ap.add_argument("--soak-kinds", default=",".join(SOAK_KINDS), help="comma list of: " + ",".join(SOAK_KINDS))
    ap.add_argument("--soak-connections", type=int, default=16,
                    help="concurrent app connections (http1, connect, tcp)")
    ap.add_argument("--soak-h2-connections", type=int, default=4,
                    help="h2 app connections per round (h2load -c; 10 streams each at a time)")
    ap.add_argument("--soak-per-conn", type=int, default=20,
                    help="round trips per connection before it is closed (connect, tcp)")
    ap.add_argument("--soak-pause", type=float, default=1.0, help="seconds between a round and its reading")
    ap.add_argument("--soak-round-timeout", type=int, default=180, help="seconds a round may take at most")
    ap.add_argument("--soak-minutes", type=float, default=None,
                    help="mixed soak (scripts/soak): every kind at once for this long, instead of rounds")
    ap.add_argument("--mtls", action="store_true",
                    help="soak: the two nodes speak mutual TLS on the mesh hop (writes soak-mixed-mtls.*)")
    ap.add_argument("--soak-interval", type=float, default=60.0,
                    help="mixed soak: seconds between readings of both nodes")
    ap.add_argument("--soak-gap", type=float, default=0.5,
                    help="mixed soak: seconds each kind rests between its rounds")
    ap.add_argument("--tls", action="store_true",
                    help="the mTLS comparison instead (scripts/bench_tls.py): weft over h2c and over mTLS, "
                         "HAProxy over h2 and over TLS 1.3, and both TLS servers' handshake rates; writes "
                         "benchmarks/tls.md and tls.json")
    ap.add_argument("--handshake-seconds", type=int, default=10, help="--tls: seconds of new TLS connections")
    ap.add_argument("--handshake-procs", type=int, default=2, help="--tls: client processes opening them")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per proxied request instead (scripts/bench_callgrind.py): both nodes under "
                         "callgrind; writes benchmarks/callgrind.md and callgrind.json")
    ap.add_argument("--callgrind-requests", type=int, default=2000, help="--callgrind: requests counted")
    ap.add_argument("--callgrind-warmup", type=int, default=300, help="--callgrind: requests before counting")
    ap.add_argument("--callgrind-connections", type=int, default=4, help="--callgrind: keep-alive connections")
    ap.add_argument("--callgrind-dumps", metavar="DIR", help="--callgrind: keep each run's callgrind files here")
    ap.add_argument("--from-json", metavar="FILE",
                    help="no measuring: rewrite benchmarks.md and the chart from a results.json")
    args = ap.parse_args()
    if args.tls:
        import bench_tls
        return bench_tls.main(args)
    if args.callgrind:
        import bench_callgrind
        return bench_callgrind.main(args)
    if args.soak and args.soak_minutes is not None:
        return mixed_soak_main(args)
    if args.soak:
        return soak_main(args)
    if args.from_json:
        raw = json.loads(Path(args.from_json).read_text())
        out = Path(args.out)
        run_args = argparse.Namespace(**raw["args"])
        summary = summarize(raw["results"])
        chart_ok = chart(summary, out / "benchmarks" / "chart.png")
        (out / "benchmarks.md").write_text(report(raw["machine"], run_args, raw["results"], summary,
                                                  raw["runtime_s"], chart_ok))
        log(f"rewrote {out / 'benchmarks.md'} from {args.from_json}")
        return 0
    skip = set(filter(None, args.skip.split(",")))
    for tool in ("wrk", "nginx", "haproxy", "redis-benchmark", "redis-server", "h2load"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing (scripts/install-deps installs it)", file=sys.stderr)
            return 1
    t0 = time.monotonic()
    env = machine_info()
    log(f"{env['cpu']} x{env['nproc']}, kernel {env['kernel']}; weft {env['tools']['weft']}")
    weftlab.cleanup_stale()
    bench = Bench(args)
    failed = None
    with weftlab.Lab() as lab:
        try:
            bench.setup(lab)
            bench.idle_rss()
            if "idle" not in skip:
                bench.idle_connections()
            bench.throughput()
            if "profile" not in skip and shutil.which("perf"):
                try:
                    (Path(args.out) / "benchmarks").mkdir(parents=True, exist_ok=True)
                    bench.profile(Path(args.out) / "benchmarks")
                except Exception as e:  # noqa: BLE001 - the profile is optional
                    bench.results["problems"].append(f"perf profile failed: {e}")
            if "syscalls" not in skip and shutil.which("strace"):
                try:
                    bench.syscalls()
                except Exception as e:  # noqa: BLE001 - the count is optional
                    bench.results["problems"].append(f"strace count failed: {e}")
            if "latency" not in skip:
                bench.latency()
            if "redis" not in skip:
                bench.run_redis()
            if "grpc" not in skip:
                bench.run_grpc()
            bench.results["rss_end_kib"] = {n: rss_kib(p) for path in HTTP_PATHS
                                            for n, p in bench.pids(path).items()}
            bench.weft_health()
        except Exception as e:  # noqa: BLE001 - report, tear down, exit 1
            failed = f"{type(e).__name__}: {e}" if not isinstance(e, weftlab.LabError) else str(e)
            log(f"FAILED: {failed}")
            for name, text in lab.logs().items():
                if "weft" in name:
                    print(f"--- {name} (tail) ---\n" + "\n".join(text.splitlines()[-30:]), flush=True)
    if not failed and "micro" not in skip:
        # After the lab is gone, so the micro-benchmarks have the cores.
        log("micro-benchmarks (Benchmarks/, release build) ...")
        micro_dir = Path(tempfile.mkdtemp(prefix="weft-micro-"))
        try:
            # scripts/bench built them beside the node (WEFT_MICRO_SCRATCH); else their own build.
            scratch = Path(os.environ.get("WEFT_MICRO_SCRATCH") or microbench.DEFAULT_SCRATCH)
            bench.results["micro"] = microbench.run(micro_dir, scratch_path=scratch.resolve())
            log("micro-benchmarks: " + "; ".join(f"{k} {v['mallocs_p50']} mallocs/req"
                                                 for k, v in bench.results["micro"].items()))
        except Exception as e:  # noqa: BLE001 - reported on the page, the rest stands
            bench.results["micro_error"] = str(e).splitlines()[0]
            bench.results["problems"].append(f"micro-benchmarks failed: {e}")
        finally:
            shutil.rmtree(micro_dir, ignore_errors=True)
    runtime = time.monotonic() - t0
    if failed:
        bench.results["problems"].append("bench aborted: " + failed.splitlines()[0])
    summary = summarize(bench.results)
    out = Path(args.out)
    (out / "benchmarks").mkdir(parents=True, exist_ok=True)
    raw = {"machine": env, "args": vars(args), "runtime_s": round(runtime, 1), "summary": summary,
           "results": bench.results}
    if failed:
        # Keep the last good page: an aborted run leaves only its raw figures.
        (out / "benchmarks" / "failed-run.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        log(f"aborted after {runtime:.0f} s; raw figures in {out / 'benchmarks' / 'failed-run.json'}")
        return 1
    (out / "benchmarks" / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    chart_ok = chart(summary, out / "benchmarks" / "chart.png")
    md = report(env, args, bench.results, summary, runtime, chart_ok)
    (out / "benchmarks.md").write_text(md)
    print()
    print(md)
    log(f"wrote {out / 'benchmarks.md'}, {out / 'benchmarks' / 'results.json'}"
        + (f", {out / 'benchmarks' / 'chart.png'}" if chart_ok else " (no chart: matplotlib missing)")
        + f" in {runtime:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
