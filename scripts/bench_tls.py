"""`scripts/bench --tls` (issue 10): the cost of mTLS on the mesh hop.

Four two-hop paths in one run, rounds interleaved, each a wrk saturation of
the same 1 KiB page:

    pair 1 (pods c1, s1)                       pair 2 (pods c2, s2)
    weft-h2c:     weft --h2c--> weft           weft-mtls:    weft --TLS 1.3 mTLS--> weft
    haproxy-h2:   HAProxy --h2--> HAProxy      haproxy-tls:  HAProxy --TLS 1.3 h2, both
                                                             verified (verify required)--> HAProxy

Both TLS paths use the same EC P-256 certificates, minted by `weft certs`.
Then the handshake rate of each TLS server (the receiving weft's mesh port,
the receiving HAProxy's TLS port): a Python client opens new TLS 1.3
connections with a client certificate and ALPN h2 as fast as it can, for a
fixed time, no session resumption; the figure is full handshakes per second
and the server's CPU per handshake.

Writes docs/benchmarks/tls.md and tls.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

import bench
import weftlab

VIP = "198.19.0.10"
PORT = bench.BACKEND_PORT
HAPROXY_CLIENT, HAPROXY_SERVER, HAPROXY_TLS_SERVER = 10001, 10002, 10012
PATHS = ("weft-h2c", "weft-mtls", "haproxy-h2", "haproxy-tls")
MESH_PORT = 15008

HANDSHAKES = r"""
import multiprocessing, socket, ssl, sys, time
host, port, cert, key, ca, seconds, procs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), int(sys.argv[7])
def worker(q):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    ok = bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    if tls.selected_alpn_protocol() == "h2":
                        ok += 1
                    else:
                        bad += 1
        except OSError:
            bad += 1
    q.put((ok, bad))
q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=worker, args=(q,)) for _ in range(procs)]
t0 = time.monotonic()
for p in ps: p.start()
res = [q.get() for _ in ps]
for p in ps: p.join()
print("HANDSHAKES", sum(r[0] for r in res), sum(r[1] for r in res), round(time.monotonic() - t0, 3))
"""


class TLSBench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results: dict = {"http": {p: [] for p in PATHS}, "handshakes": {}, "problems": []}

    def setup(self, lab: weftlab.Lab) -> None:
        a = self.args
        work = lab.workdir
        self.work = work
        (work / "wrk-done.lua").write_text(bench.WRK_DONE)
        (work / "handshakes.py").write_text(HANDSHAKES)
        htdocs = bench.write_htdocs(work)
        for f in work.iterdir():
            if f.is_file():
                f.chmod(0o644)

        bench.log("certificates: a mesh CA and four node certificates (EC P-256) with weft certs")
        self.certs = {}
        for name in ("weft-client", "weft-server", "haproxy-client", "haproxy-server"):
            tls = lab.mesh_tls(f"ns/bench/sa/{name}", trust_domain="bench.local")
            pem = Path(tls["cert"]).with_name("combined.pem")  # HAProxy takes certificate and key in one file
            pem.write_text(Path(tls["cert"]).read_text() + Path(tls["key"]).read_text())
            pem.chmod(0o600)
            self.certs[name] = {**tls, "combined": str(pem)}
        ca = self.certs["haproxy-server"]["ca"]

        self.pods = {}
        for pair in ("1", "2"):
            client, server = lab.add_pod(f"c{pair}"), lab.add_pod(f"s{pair}")
            self.pods[pair] = (client, server)
            bench.start_backend(server, work, htdocs, a.backend_workers) if pair == "1" else \
                bench.start_nginx(server, work, "nginx-backend-2", f"""
    server {{
        listen {PORT} reuseport backlog=4096;
        root {htdocs};
        location / {{ }}
    }}""", a.backend_workers, PORT)
            client.init("--exclude-outbound-cidrs", f"{weftlab.POD_NET4}.0.0/16")
            server.init("--exclude-inbound-ports", f"{PORT},{HAPROXY_SERVER},{HAPROXY_TLS_SERVER}")

        (c1, s1), (c2, s2) = self.pods["1"], self.pods["2"]
        bench.log("pair 1: weft over h2c, HAProxy over h2; pair 2: weft over mTLS, HAProxy over TLS 1.3 (verify required)")
        self.haproxy = {
            "haproxy-h2": (
                bench.start_haproxy(c1, work, "haproxy-c1", f"127.0.0.1:{HAPROXY_CLIENT}",
                                    f"server s1 {s1.ip4}:{HAPROXY_SERVER} proto h2", a.proxy_threads, HAPROXY_CLIENT),
                bench.start_haproxy(s1, work, "haproxy-s1", f":{HAPROXY_SERVER} proto h2",
                                    f"server app 127.0.0.1:{PORT}", a.proxy_threads, HAPROXY_SERVER)),
            "haproxy-tls": (
                bench.start_haproxy(c2, work, "haproxy-c2", f"127.0.0.1:{HAPROXY_CLIENT}",
                                    f"server s1 {s2.ip4}:{HAPROXY_TLS_SERVER} ssl verify required ca-file {ca} "
                                    f"crt {self.certs['haproxy-client']['combined']} alpn h2 "
                                    "ssl-min-ver TLSv1.3 proto h2", a.proxy_threads, HAPROXY_CLIENT),
                bench.start_haproxy(s2, work, "haproxy-s2",
                                    f":{HAPROXY_TLS_SERVER} ssl crt {self.certs['haproxy-server']['combined']} "
                                    f"ca-file {ca} verify required alpn h2 ssl-min-ver TLSv1.3",
                                    f"server app 127.0.0.1:{PORT}", a.proxy_threads, HAPROXY_TLS_SERVER)),
        }

        def tls_of(name: str) -> dict:
            return {k: self.certs[name][k] for k in ("cert", "key", "ca")}

        def client_config(server: weftlab.Pod, tls: dict | None) -> dict:
            config = {"node": {"id": "client"}, "outbound_policy": "allow_any",
                      "clusters": [bench.cluster("web", VIP, PORT, server.ip4)]}
            if tls:
                config["listeners"] = {"mesh": {"tls": tls}}
            return config

        self.weft = {
            "weft-h2c": (c1.start_weft(client_config(s1, None), log_level="warning"),
                         s1.start_weft({"node": {"id": "server"}}, log_level="warning")),
            "weft-mtls": (c2.start_weft(client_config(s2, tls_of("weft-client")), log_level="warning"),
                          s2.start_weft({"node": {"id": "server"}, "listeners": {"mesh": {"tls": tls_of("weft-server")}}},
                                        log_level="warning")),
        }
        self.client_pod = {"weft-h2c": c1, "haproxy-h2": c1, "weft-mtls": c2, "haproxy-tls": c2}
        self.url = {"weft-h2c": f"http://{VIP}:{PORT}/1k", "weft-mtls": f"http://{VIP}:{PORT}/1k",
                    "haproxy-h2": f"http://127.0.0.1:{HAPROXY_CLIENT}/1k",
                    "haproxy-tls": f"http://127.0.0.1:{HAPROXY_CLIENT}/1k"}
        for path in PATHS:
            res = self.client_pod[path].curl(self.url[path], "-o", "/dev/null", "-w", "%{http_code} %{size_download}")
            if res.stdout.strip() != "200 1024":
                raise weftlab.LabError(f"{path}: {self.url[path]} answered {res.stdout!r} {res.stderr!r}")
        if c2.metric("weft_tls_handshakes_total", side="client", session="full") < 1:
            raise weftlab.LabError("weft-mtls: no TLS handshake on the mesh hop")
        if s2.metric("weft_tls_handshakes_total", side="server", session="full") < 1:
            raise weftlab.LabError("weft-mtls: the server node saw no TLS handshake")
        bench.log("all four paths answer 200 with 1024 bytes; the mTLS pair completed TLS handshakes")

    def procs(self, path: str) -> dict[str, list[int]]:
        pair = self.weft.get(path) or self.haproxy[path]
        return {"client": bench.proc_tree(pair[0].pid), "server": bench.proc_tree(pair[1].pid)}

    def wrk(self, path: str, seconds: int) -> dict:
        a = self.args
        return bench.run_wrk(self.client_pod[path], self.work / "wrk-done.lua", self.url[path], a.connections,
                             seconds, a.wrk_threads)

    def throughput(self) -> None:
        a = self.args
        for r in range(a.rounds):
            for path in PATHS:
                self.wrk(path, a.warmup)
                procs = self.procs(path)
                before = {k: bench.cpu_seconds(v) for k, v in procs.items()}
                out = self.wrk(path, a.duration)
                n = max(out["requests"], 1)
                out["cpu_ms_per_1k"] = {k: round((bench.cpu_seconds(v) - before[k]) / n * 1e6, 2)
                                        for k, v in procs.items()}
                out["cpu_ms_per_1k_total"] = round(sum(out["cpu_ms_per_1k"].values()), 2)
                self.results["http"][path].append(out)
                bench.log(f"round {r + 1} {path}: {out['rps']:.0f} req/s, {out['errors']} errors, "
                          f"{out['cpu_ms_per_1k_total']} ms CPU per 1000 requests (both proxies)")

    def handshakes(self) -> None:
        a = self.args
        _, s2 = self.pods["2"]
        c2 = self.pods["2"][0]
        client = self.certs["weft-client"]
        targets = {"weft": (s2.ip4, MESH_PORT, self.weft["weft-mtls"][1]),
                   "haproxy": (s2.ip4, HAPROXY_TLS_SERVER, self.haproxy["haproxy-tls"][1])}
        for name, (ip, port, server) in targets.items():
            pids = bench.proc_tree(server.pid)
            before = bench.cpu_seconds(pids)
            counted = s2.metric("weft_tls_handshakes_total", side="server", session="full") if name == "weft" else 0
            res = c2.run([bench.PY, str(self.work / "handshakes.py"), ip, str(port), client["cert"],
                          client["key"], client["ca"], str(a.handshake_seconds),
                          str(a.handshake_procs)], check=False, timeout=a.handshake_seconds + 60)
            m = re.search(r"HANDSHAKES (\d+) (\d+) ([\d.]+)", res.stdout)
            if not m:
                raise weftlab.LabError(f"handshake client against {name} failed: {res.stdout}\n{res.stderr}")
            ok, bad, elapsed = int(m.group(1)), int(m.group(2)), float(m.group(3))
            cpu = bench.cpu_seconds(pids) - before
            out = {"handshakes": ok, "failed": bad, "seconds": elapsed, "per_second": round(ok / elapsed, 1),
                   "server_cpu_ms_per_handshake": round(cpu / max(ok, 1) * 1000, 3)}
            if name == "weft":
                out["server_counted"] = int(s2.metric("weft_tls_handshakes_total", side="server", session="full")
                                            - counted)
            self.results["handshakes"][name] = out
            bench.log(f"handshakes against {name}: {out['per_second']}/s, "
                      f"{out['server_cpu_ms_per_handshake']} ms server CPU each, {bad} failed")


def summarize(results: dict) -> dict:
    out = {}
    for path, runs in results["http"].items():
        if not runs:
            continue
        out[path] = {"rps": statistics.median(r["rps"] for r in runs),
                     "rps_min": min(r["rps"] for r in runs), "rps_max": max(r["rps"] for r in runs),
                     "cpu_ms_per_1k": statistics.median(r["cpu_ms_per_1k_total"] for r in runs),
                     "errors": sum(r["errors"] for r in runs),
                     "p99_us": statistics.median(r["p99_us"] for r in runs)}
    return out


def report(env: dict, args: argparse.Namespace, results: dict, summary: dict, runtime: float) -> str:
    lines = []
    a = lines.append
    a("# mTLS on the mesh hop: weft and HAProxy, with and without TLS\n")
    a(f"Measured by `scripts/bench --tls` on {env['date']} at weft {env['revision']}: {env['cpu']} "
      f"×{env['nproc']}, kernel {env['kernel']}; HAProxy {env['tools'].get('haproxy', '?')}, "
      f"OpenSSL {env['tools'].get('openssl', '?')}. {args.rounds} rounds of {args.duration} s each "
      f"(wrk, {args.connections} connections, {args.wrk_threads} threads, the 1 KiB page), rounds interleaved "
      f"across the four paths; medians. Runtime {runtime:.0f} s. Figures from one 2-core machine shared by "
      "client, both proxies and the backend: compare the paths with each other, not with other machines.\n")
    a("| path | req/s (median) | min–max | vs its h2c/h2 twin | CPU ms per 1000 requests, both proxies | "
      "p99 (µs) | errors |")
    a("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    twin = {"weft-mtls": "weft-h2c", "haproxy-tls": "haproxy-h2"}
    for path in PATHS:
        s = summary.get(path)
        if not s:
            continue
        base = summary.get(twin.get(path, ""), {}).get("rps")
        ratio = f"{s['rps'] / base:.2f}×" if base else "—"
        a(f"| {path} | {s['rps']:,.0f} | {s['rps_min']:,.0f}–{s['rps_max']:,.0f} | {ratio} | "
          f"{s['cpu_ms_per_1k']:.1f} | {s['p99_us']:,.0f} | {s['errors']} |")
    a("")
    w, h = summary.get("weft-mtls"), summary.get("haproxy-tls")
    if w and h:
        a(f"With TLS on both, weft carries {w['rps'] / h['rps']:.2f}× HAProxy's requests per second at "
          f"{w['cpu_ms_per_1k'] / h['cpu_ms_per_1k']:.2f}× its CPU per request.\n")
    hs = results.get("handshakes", {})
    if hs:
        a("## Handshake rate (new mesh connections per second)\n")
        a(f"A Python client in the client pod ({args.handshake_procs} processes, {args.handshake_seconds} s) "
          "opens TLS 1.3 connections with a client certificate and ALPN h2 to the receiving proxy's TLS port, "
          "each a full handshake (no resumption), and closes them.\n")
        a("| server | handshakes/s | server CPU ms per handshake | failed |")
        a("| --- | ---: | ---: | ---: |")
        for name in ("weft", "haproxy"):
            x = hs.get(name)
            if x:
                a(f"| {name} | {x['per_second']:,.1f} | {x['server_cpu_ms_per_handshake']:.3f} | {x['failed']} |")
        a("")
        if "weft" in hs and "server_counted" in hs["weft"]:
            a(f"weft counted {hs['weft']['server_counted']} server handshakes "
              f"(`weft_tls_handshakes_total`) for the client's {hs['weft']['handshakes']}.\n")
    if results.get("problems"):
        a("## Problems\n")
        for p in results["problems"]:
            a(f"- {p}")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    env = bench.machine_info()
    env["tools"]["openssl"] = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.split()[1]
    weftlab.cleanup_stale()
    tb = TLSBench(args)
    failed = None
    with weftlab.Lab() as lab:
        try:
            tb.setup(lab)
            tb.throughput()
            tb.handshakes()
        except Exception as e:  # noqa: BLE001 - report, tear down, exit 1
            failed = f"{type(e).__name__}: {e}"
            bench.log(f"FAILED: {failed}")
            for name, text in lab.logs().items():
                if "weft" in name or "haproxy" in name:
                    print(f"--- {name} (tail) ---\n" + "\n".join(text.splitlines()[-20:]), flush=True)
    runtime = time.monotonic() - t0
    out = Path(args.out) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(tb.results)
    raw = {"machine": env, "args": vars(args), "runtime_s": round(runtime, 1), "summary": summary,
           "results": tb.results}
    if failed:
        (out / "tls-failed-run.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        return 1
    (out / "tls.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    md = report(env, args, tb.results, summary, runtime)
    (out / "tls.md").write_text(md)
    print()
    print(md)
    bench.log(f"wrote {out / 'tls.md'} and {out / 'tls.json'} in {runtime:.0f} s")
    return 0
