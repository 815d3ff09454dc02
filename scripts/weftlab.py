"""weftlab: a network-namespace lab for weft (Python 3.11, stdlib only).

A `Lab` is a throw-away set of network namespaces on this machine:

* one *bridge* namespace holding a Linux bridge (``br0``) and the gateway
  addresses 198.18.0.1/16 and 2001:2::1/64, with IP forwarding on and an
  ``unreachable`` route for the VIP range 198.19.0.0/16, so that a connection
  to a VIP that nobody intercepted fails at once instead of hanging;
* any number of *pods*: namespaces wired to the bridge by a veth pair (the pod
  side is ``eth0``), with ``lo`` up, a pod address 198.18.0.N/16 and
  2001:2::N/64 (no DAD), a default route via the gateway (so VIPs in
  198.19.0.0/16, owned by nobody, are routable and the OUTPUT nat REDIRECT can
  happen), and a hosts file ``/etc/netns/<pod-ns>/hosts`` that
  ``ip netns exec`` mounts over /etc/hosts;
* optionally a pod's own resolver configuration,
  ``/etc/netns/<pod-ns>/resolv.conf`` (``add_pod(..., nameservers=[...])`` or
  ``lab.write_resolv_conf(pod, [...])``), which ``ip netns exec`` mounts over
  /etc/resolv.conf, so the pod asks a DNS server the test runs in another pod
  and nothing else. Without one, a pod's processes see the machine's
  /etc/resolv.conf, whose servers a pod cannot reach.

Nothing is added to the root namespace: no address, route or iptables rule.
Every name starts with ``wl<4 hex>-`` (unique per lab). Teardown kills every
process the lab started (and anything else left inside its namespaces),
deletes the namespaces and ``/etc/netns/<ns>`` dirs, and runs on ``close()``,
on leaving the ``with`` block, at interpreter exit, and on SIGINT/SIGTERM. It
is idempotent. ``cleanup_stale()`` removes what a crashed earlier run left.

    with Lab() as lab:
        client = lab.add_pod("client", hosts={"backend": "198.19.0.10"})
        backend = lab.add_pod("backend")
        backend.spawn([sys.executable, "apps/http_app.py", "--port", "9090"])
        for pod in (client, backend):
            pod.init()
        backend.start_weft({})
        client.start_weft({"clusters": [...]})
        print(client.run(["curl", "-s", "http://backend:9090/"]).stdout)
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
NETNS_ETC = Path("/etc/netns")
MARKER_DIR = Path("/run/weftlab")
NAME_RE = re.compile(r"^(wl[0-9a-f]{4})-[a-z0-9-]+$")

PROXY_UID = 1337
PROXY_GID = 1337

POD_NET4 = "198.18"  # 198.18.0.0/16, gateway .0.1
POD_NET6 = "2001:2::"  # 2001:2::/64 inside 2001:2::/48, gateway ::1
GATEWAY4 = "198.18.0.1"
GATEWAY6 = "2001:2::1"
VIP_NET4 = "198.19.0.0/16"

HEALTH_PORT = 15020

# Environment for commands inside pods: no proxies, no inherited surprises.
_BASE_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TERM", "HOME")


class LabError(RuntimeError):
    """A lab step failed; the message says which command and what it printed."""


def _debug(msg: str) -> None:
    if os.environ.get("WEFTLAB_VERBOSE"):
        print(f"[weftlab] {msg}", file=sys.stderr, flush=True)


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _BASE_ENV_KEEP if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def sh(cmd: Sequence[str], check: bool = True, timeout: float = 30,
       input: str | bytes | None = None, text: bool = True,
       env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command in the *current* namespace, capturing output."""
    _debug("$ " + shlex.join(cmd))
    try:
        res = subprocess.run(list(cmd), capture_output=True, timeout=timeout, input=input,
                             text=text, env=dict(env) if env is not None else _clean_env())
    except subprocess.TimeoutExpired as e:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from e
    if check and res.returncode != 0:
        out = res.stdout if text else res.stdout.decode(errors="replace")
        err = res.stderr if text else res.stderr.decode(errors="replace")
        raise LabError(f"command failed (exit {res.returncode}): {shlex.join(cmd)}\n"
                       f"stdout: {out.strip()}\nstderr: {err.strip()}")
    return res


def is_root() -> bool:
    return os.geteuid() == 0


def list_netns() -> list[str]:
    res = sh(["ip", "netns", "list"], check=False)
    names = []
    for line in res.stdout.splitlines():
        if line.strip():
            names.append(line.split()[0])
    return names


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_pids(ns: str) -> None:
    """Kill every process still living in namespace `ns` (SIGKILL)."""
    res = sh(["ip", "netns", "pids", ns], check=False)
    for tok in res.stdout.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


def _delete_netns(ns: str) -> None:
    if ns in list_netns():
        _kill_netns_pids(ns)
        # The kill is asynchronous; the namespace handle is freed anyway.
        sh(["ip", "netns", "del", ns], check=False)
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def cleanup_stale(verbose: bool = True) -> list[str]:
    """Remove `wl*` namespaces (and their /etc/netns dirs, processes and work
    dirs) left by labs whose owning process is gone. Labs of live processes
    are left alone, so two runs can share a machine. Returns what it removed."""
    removed: list[str] = []
    live: dict[str, bool] = {}

    def owner_alive(prefix: str) -> bool:
        if prefix not in live:
            marker = MARKER_DIR / f"{prefix}.json"
            alive = False
            try:
                data = json.loads(marker.read_text())
                alive = data.get("pid") != os.getpid() and _pid_alive(int(data["pid"]))
                if not alive and data.get("workdir", "").startswith(tempfile.gettempdir()):
                    shutil.rmtree(data["workdir"], ignore_errors=True)
            except (OSError, ValueError, KeyError):
                alive = False
            live[prefix] = alive
        return live[prefix]

    names = set(list_netns())
    if NETNS_ETC.is_dir():
        names |= {p.name for p in NETNS_ETC.iterdir()}
    for ns in sorted(names):
        m = NAME_RE.match(ns)
        if not m or owner_alive(m.group(1)):
            continue
        _delete_netns(ns)
        removed.append(ns)
    if MARKER_DIR.is_dir():
        for marker in MARKER_DIR.glob("wl*.json"):
            if not owner_alive(marker.stem):
                marker.unlink(missing_ok=True)
    _rmdir_if_empty(NETNS_ETC)
    if verbose and removed:
        print(f"weftlab: removed stale namespaces: {' '.join(removed)}", file=sys.stderr)
    return removed


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


# --------------------------------------------------------------------------
# Config rendering: a small YAML emitter (stdlib has none). Strings are
# JSON-quoted, which is valid YAML.


def to_yaml(value: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(value, Mapping):
        if not value:
            return pad + "{}\n"
        out = []
        for k, v in value.items():
            if isinstance(v, (Mapping, list, tuple)) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}\n")
        return "".join(out)
    if isinstance(value, (list, tuple)):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (Mapping, list, tuple)) and item:
                body = to_yaml(item, indent + 1)
                out.append(f"{pad}- {body.lstrip()}")
            else:
                out.append(f"{pad}- {_scalar(item)}\n")
        return "".join(out)
    return pad + _scalar(value) + "\n"


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, (list, tuple)):
        return "[]"
    return json.dumps(str(v))


# --------------------------------------------------------------------------
# Binary location.


def default_weft_bin() -> Path:
    env = os.environ.get("WEFT_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else (REPO_ROOT / p)
    return REPO_ROOT / ".build" / "debug" / "weft"


def _world_can_exec(path: Path) -> bool:
    """True when a process that is neither owner nor in the group (uid 1337)
    can reach and execute `path`: o+x on every directory, o+rx on the file."""
    path = path.resolve()
    try:
        st = path.stat()
    except OSError:
        return False
    if not (st.st_mode & stat.S_IROTH and st.st_mode & stat.S_IXOTH):
        return False
    for parent in path.parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------
# Signal / exit handling shared by all labs.

_live_labs: list["Lab"] = []
_handlers_installed = False
_prev_handlers: dict[int, Any] = {}


def _teardown_all() -> None:
    for lab in list(_live_labs):
        try:
            lab.close()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"weftlab: teardown error: {e}", file=sys.stderr)


def _on_signal(signum: int, frame: Any) -> None:
    _teardown_all()
    prev = _prev_handlers.get(signum)
    if callable(prev):
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            _prev_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_signal)


# --------------------------------------------------------------------------


def _exited_unreaped(pid: int) -> bool:
    """True once child `pid` has exited (without reaping it)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


@dataclass
class Proc:
    """A background process started in a pod (its own process group)."""
    name: str
    popen: subprocess.Popen
    log_path: Path
    pod: "Pod"
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Running? (Does not reap it: while it is unreaped its process group
        id stays ours, so stop() can still signal the group safely.)"""
        return self.popen.returncode is None and not _exited_unreaped(self.popen.pid)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process group, wait up to `timeout`, then SIGKILL.
        Returns the exit status (negative = killed by that signal).
        Only the first call signals anything: afterwards the group id may
        no longer be ours."""
        if self.stopped:
            return self.popen.returncode
        self.stopped = True
        pid = self.popen.pid
        if self.popen.returncode is None:
            # Not reaped yet, so the group id `pid` is still this group's.
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + timeout
            while not _exited_unreaped(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            # The leader is a zombie (or still running) at this point: the
            # group is ours; whatever is left of it goes too.
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return self.popen.returncode


@dataclass
class Pod:
    lab: "Lab"
    name: str
    ns: str
    index: int
    veth: str
    hosts: dict[str, str] = field(default_factory=dict)
    nameservers: list[str] | None = None  # its own resolv.conf, when it has one
    procs: list[Proc] = field(default_factory=list)
    weft: Proc | None = None
    weft_config_path: Path | None = None

    @property
    def ip4(self) -> str:
        return f"{POD_NET4}.{self.index // 256}.{self.index % 256}"

    @property
    def ip6(self) -> str:
        return f"{POD_NET6}{self.index:x}"

    # -- commands ---------------------------------------------------------

    def _prefix(self, user: int | str | None, caps: Sequence[str] = ()) -> list[str]:
        """`ip netns exec`, and `setpriv` to `user` keeping `caps` (names
        such as `net_admin`) as ambient capabilities."""
        cmd = ["ip", "netns", "exec", self.ns]
        if user is not None:
            uid = gid = user
            if isinstance(user, str) and not user.isdigit():
                import pwd
                pw = pwd.getpwnam(user)
                uid, gid = pw.pw_uid, pw.pw_gid
            cmd += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            if caps:
                wanted = ",".join(f"+{c}" for c in caps)
                cmd += [f"--inh-caps={wanted}", f"--ambient-caps={wanted}"]
        return cmd

    @staticmethod
    def _argv(cmd: str | Sequence[str]) -> list[str]:
        return ["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]

    def run(self, cmd: str | Sequence[str], user: int | str | None = None, check: bool = True,
            timeout: float = 60, input: str | bytes | None = None, text: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run `cmd` (argv list, or a shell string) inside the pod, as root or
        as `user` (uid or name), and return the completed process."""
        return sh(self._prefix(user) + self._argv(cmd), check=check, timeout=timeout,
                  input=input, text=text, env=_clean_env(env))

    def spawn(self, cmd: str | Sequence[str], user: int | str | None = None,
              log: str | Path | None = None, name: str | None = None,
              env: Mapping[str, str] | None = None, caps: Sequence[str] = ()) -> Proc:
        """Start `cmd` in the background inside the pod (own process group,
        output to `log`); it is killed on teardown."""
        argv = self._argv(cmd)
        name = name or Path(argv[0]).name
        log_path = Path(log) if log else self.lab.workdir / f"{self.name}-{name}-{len(self.procs)}.log"
        with open(log_path, "ab") as logf:
            _debug("spawn " + shlex.join(self._prefix(user, caps) + argv))
            popen = subprocess.Popen(self._prefix(user, caps) + argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=_clean_env(env))
        proc = Proc(name=name, popen=popen, log_path=log_path, pod=self)
        self.procs.append(proc)
        return proc

    def wait_port(self, port: int, timeout: float = 20, proc: Proc | None = None) -> None:
        """Wait until a TCP socket listens on `port` inside the pod (checked
        with `ss`, so the app sees no probe connection)."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.run(["ss", "-Hltn", f"sport = :{port}"], check=False, timeout=10)
            if res.returncode == 0 and res.stdout.strip():
                return
            if proc is not None and not proc.alive():
                raise LabError(f"{proc.name} in pod {self.name} exited ({proc.popen.poll()}) "
                               f"before listening on port {port}\n--- log ---\n{proc.log()}")
            if time.monotonic() > deadline:
                raise LabError(f"nothing listening on port {port} in pod {self.name} after {timeout}s")
            time.sleep(0.1)

    # -- weft ---------------------------------------------------------------

    def weft_cmd(self, *args: str) -> list[str]:
        return [str(self.lab.weft_bin), *args]

    def init(self, *flags: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `weft init FLAGS` in the pod as root."""
        return self.run(self.weft_cmd("init", *flags), check=check)

    def write_weft_config(self, config: Mapping[str, Any] | str) -> Path:
        text = config if isinstance(config, str) else to_yaml(config)
        path = self.lab.workdir / f"{self.name}-weft-{len(self.procs)}.yaml"
        path.write_text(text)
        path.chmod(0o644)
        return path

    def start_weft(self, config: Mapping[str, Any] | str, ready_timeout: float = 30,
                   log_level: str = "debug", extra_args: Sequence[str] = (), caps: Sequence[str] = ()) -> Proc:
        """Start `weft proxy` in the pod as uid/gid 1337 (with the
        capabilities `caps`, none by default) with `config` (a dict rendered
        to YAML, or YAML text) and wait until /ready answers 200."""
        if self.weft is not None and self.weft.alive():
            raise LabError(f"weft already running in pod {self.name}")
        self.weft_config_path = self.write_weft_config(config)
        cmd = self.weft_cmd("proxy", "--config", str(self.weft_config_path),
                            "--log-level", log_level, *extra_args)
        log_path = self.lab.workdir / f"{self.name}-weft-{len(self.procs)}.log"
        self.weft = self.spawn(cmd, user=PROXY_UID, log=log_path, name="weft", caps=caps)
        self.wait_ready(ready_timeout)
        return self.weft

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.weft is not None
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if not self.weft.alive():
                raise LabError(f"weft in pod {self.name} exited with {self.weft.popen.poll()} "
                               f"before /ready\n--- config ---\n{self.weft_config_path.read_text()}"
                               f"--- log ---\n{self.weft.log()}")
            code, _ = self.http_get(f"http://127.0.0.1:{HEALTH_PORT}/ready", timeout=2)
            if code == 200:
                return
            last = str(code)
            if time.monotonic() > deadline:
                raise LabError(f"weft in pod {self.name} not ready after {timeout}s (last status {last})"
                               f"\n--- log ---\n{self.weft.log()}")
            time.sleep(0.2)

    def stop_weft(self, timeout: float = 15) -> int | None:
        """SIGTERM the node, wait (bounded), return its exit status."""
        if self.weft is None:
            return None
        rc = self.weft.stop(timeout=timeout)
        return rc

    def weft_log(self) -> str:
        return self.weft.log() if self.weft else ""

    # -- HTTP / metrics helpers ----------------------------------------------

    def curl(self, url: str, *args: str, user: int | str | None = None, timeout: float = 10,
             check: bool = False) -> subprocess.CompletedProcess:
        """curl inside the pod (no proxy env, bounded by --max-time)."""
        cmd = ["curl", "-sS", "--noproxy", "*", "--connect-timeout", str(timeout),
               "--max-time", str(timeout), *args, url]
        return self.run(cmd, user=user, check=check, timeout=timeout + 15)

    def http_get(self, url: str, timeout: float = 5) -> tuple[int, str]:
        """(status, body) of a GET inside the pod as root; status 0 when no answer."""
        res = self.run(["curl", "-s", "--noproxy", "*", "--max-time", str(timeout),
                        "-w", "\n%{http_code}", url], check=False, timeout=timeout + 15)
        body, _, code = res.stdout.rpartition("\n")
        try:
            return int(code), body
        except ValueError:
            return 0, res.stdout

    def metrics_text(self) -> str:
        code, body = self.http_get(f"http://127.0.0.1:{HEALTH_PORT}/metrics")
        if code != 200:
            raise LabError(f"/metrics in pod {self.name} answered {code}: {body[:200]}")
        return body

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`
        (0 when there is none yet)."""
        return metric_value(self.metrics_text(), name, **labels)

    # -- rules -----------------------------------------------------------------

    def nat_rules(self, family: int = 4, backend: str | None = None) -> str:
        """`iptables-save -t nat` (or ip6tables-save) in the pod, normalized:
        comment lines and counters dropped. `backend` = "legacy" or "nft"
        picks that variant's tool instead of the system default."""
        tool = "iptables-save" if family == 4 else "ip6tables-save"
        if backend:
            tool = tool.replace("-save", f"-{backend}-save")
        res = self.run([tool, "-t", "nat"], check=False)
        return normalize_ruleset(res.stdout)


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL_RE.findall(m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            try:
                total += float(m.group(4))
            except ValueError:
                pass
    return total


def normalize_ruleset(text: str) -> str:
    """iptables-save output without its `#` comment lines (they carry the
    time) and `[packets:bytes]` counters; everything else, exactly."""
    lines = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        line = re.sub(r"\s*\[\d+:\d+\]\s*$", "", line)
        line = re.sub(r"^\[\d+:\d+\]\s*", "", line)
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


class Lab:
    """A bridge namespace plus pods. Use as a context manager."""

    def __init__(self, weft_bin: str | Path | None = None, prefix: str | None = None,
                 keep_workdir: bool | None = None):
        if not is_root():
            raise LabError("the lab needs root (network namespaces, iptables)")
        self.prefix = prefix or f"wl{secrets.token_hex(2)}"
        assert re.fullmatch(r"wl[0-9a-f]{4}", self.prefix), self.prefix
        self.bridge_ns = f"{self.prefix}-br"
        self.pods: dict[str, Pod] = {}
        self._namespaces: list[str] = []
        self._next_index = 2
        self._closed = False
        self._started = False
        self.keep_workdir = (bool(os.environ.get("WEFTLAB_KEEP")) if keep_workdir is None
                             else keep_workdir)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"weftlab-{self.prefix}-"))
        self.workdir.chmod(0o755)
        self._requested_bin = Path(weft_bin) if weft_bin else default_weft_bin()
        self._weft_bin: Path | None = None

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "Lab":
        if self._started:
            return self
        self._started = True
        _install_handlers()
        _live_labs.append(self)
        MARKER_DIR.mkdir(parents=True, exist_ok=True)
        (MARKER_DIR / f"{self.prefix}.json").write_text(json.dumps(
            {"pid": os.getpid(), "workdir": str(self.workdir), "started": time.time()}))
        try:
            self._make_bridge()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Tear everything down. Safe to call more than once."""
        if self._closed:
            return
        # _closed is set only at the end: a signal that interrupts this
        # teardown runs it again, complete, from the handler (every step is
        # idempotent) before the interrupted one is abandoned.
        for pod in self.pods.values():
            for proc in reversed(pod.procs):
                try:
                    proc.stop(timeout=5)
                except Exception as e:  # noqa: BLE001
                    print(f"weftlab: stopping {proc.name}: {e}", file=sys.stderr)
        for ns in reversed(self._namespaces):
            _delete_netns(ns)
        _rmdir_if_empty(NETNS_ETC)
        (MARKER_DIR / f"{self.prefix}.json").unlink(missing_ok=True)
        _rmdir_if_empty(MARKER_DIR)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self in _live_labs:
            _live_labs.remove(self)
        self._closed = True

    # -- mesh certificates ------------------------------------------------------

    def mesh_tls(self, identity: str, trust_domain: str = "mesh.local") -> dict:
        """`listeners.mesh.tls` for `identity` (ns/<ns>/sa/<account>): a node
        certificate minted with `weft certs` from the lab's mesh CA (made on
        first use, in <workdir>/tls/ca), in <workdir>/tls/<identity with
        dashes>, readable by the proxy user."""
        root = self.workdir / "tls"
        ca = root / "ca"

        def certs(*args: str) -> None:
            res = subprocess.run([str(self.weft_bin), "certs", *args], capture_output=True, text=True, timeout=30)
            if res.returncode != 0:
                raise LabError(f"weft certs {' '.join(args)}: {res.stderr}")

        if not (ca / "ca.key").exists():
            certs("ca", "--trust-domain", trust_domain, "--out", str(ca))
        out = root / identity.replace("/", "-")
        certs("node", "--ca", str(ca), "--identity", identity, "--out", str(out))
        for path in [out, *out.iterdir()]:
            os.chown(path, PROXY_UID, PROXY_UID)  # weft runs as uid 1337 and reads its key
        return {"cert": str(out / "node.crt"), "key": str(out / "node.key"), "ca": str(out / "ca.crt")}

    def server_tls(self, name: str, sans: Sequence[str], ca_name: str = "server-ca") -> dict:
        """A TLS server certificate for a plain (non-mesh) server, e.g. the
        tests' Kubernetes API server: `sans` in OpenSSL's spelling
        (`IP:198.18.0.9`, `DNS:api.test`), signed by the lab CA `ca_name`
        (made with openssl on first use). Files in <workdir>/tls/<name>,
        readable by everyone (the CA is what weft is given)."""
        root = self.workdir / "tls"
        ca = root / ca_name
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)

        def openssl(*args: str) -> None:
            res = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
            if res.returncode != 0:
                raise LabError(f"openssl {' '.join(args)}: {res.stderr}")

        if not (ca / "ca.key").exists():
            ca.mkdir(parents=True, exist_ok=True)
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(ca / "ca.key"), "-out", str(ca / "ca.crt"), "-days", "2",
                    "-subj", f"/CN=weft lab {ca_name}")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(out / "server.key"), "-out", str(out / "server.csr"), "-subj", f"/CN={name}")
        ext = out / "ext.cnf"
        ext.write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", str(out / "server.csr"), "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
                "-CAcreateserial", "-days", "1", "-out", str(out / "server.crt"), "-extfile", str(ext))
        shutil.copy(ca / "ca.crt", out / "ca.crt")
        for path in [ca, out, *out.iterdir(), ca / "ca.crt"]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return {"cert": str(out / "server.crt"), "key": str(out / "server.key"), "ca": str(out / "ca.crt")}

    # -- weft binary -------------------------------------------------------------

    @property
    def weft_bin(self) -> Path:
        """The weft binary, reachable by uid 1337 (copied into the lab's work
        dir, mode 0755, when its own path is not)."""
        if self._weft_bin is None:
            src = self._requested_bin.resolve()
            if not src.is_file():
                raise LabError(f"weft binary not found at {src} (build it, or set WEFT_BIN)")
            if _world_can_exec(src):
                self._weft_bin = src
            else:
                dst = self.workdir / "weft"
                shutil.copy2(src, dst)
                dst.chmod(0o755)
                self._weft_bin = dst
        return self._weft_bin

    # -- topology ---------------------------------------------------------------

    def _add_ns(self, ns: str) -> None:
        sh(["ip", "netns", "add", ns])
        self._namespaces.append(ns)

    def _make_bridge(self) -> None:
        ns = self.bridge_ns
        self._add_ns(ns)
        n = ["ip", "-n", ns]
        sh(n + ["link", "set", "lo", "up"])
        sh(n + ["link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0",
                "mcast_snooping", "0"])
        self._sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "0")
        self._sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        self._sysctl(ns, "net.ipv6.conf.br0.accept_dad", "0")
        sh(n + ["addr", "add", f"{GATEWAY4}/16", "dev", "br0"])
        sh(n + ["-6", "addr", "add", f"{GATEWAY6}/64", "dev", "br0", "nodad"])
        sh(n + ["link", "set", "br0", "up"])
        # A VIP that nobody intercepted must fail at once: forward, and answer
        # "unreachable" for the VIP range (nothing else is routed anywhere).
        self._sysctl(ns, "net.ipv4.ip_forward", "1")
        self._sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
        sh(n + ["route", "add", "unreachable", VIP_NET4])

    @staticmethod
    def _sysctl(ns: str, key: str, value: str) -> None:
        sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])

    def add_pod(self, name: str, hosts: Mapping[str, str] | None = None,
                nameservers: Sequence[str] | None = None) -> Pod:
        """A new pod namespace `<prefix>-<name>` wired to the bridge. With
        `nameservers`, the pod gets its own resolv.conf naming only those
        servers (see `write_resolv_conf`)."""
        if not self._started:
            self.start()
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", name):
            raise LabError(f"pod name {name!r}: lowercase letters/digits, at most 12")
        if name in self.pods:
            raise LabError(f"pod {name} exists")
        index = self._next_index
        self._next_index += 1
        ns = f"{self.prefix}-{name}"
        veth = f"{self.prefix}v{index}"
        assert len(veth) <= 15
        pod = Pod(lab=self, name=name, ns=ns, index=index, veth=veth, hosts=dict(hosts or {}))
        self.pods[name] = pod
        self._add_ns(ns)
        n = ["ip", "-n", ns]
        sh(n + ["link", "set", "lo", "up"])
        self._sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "0")
        self._sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        # veth created inside the pod, its peer placed straight in the bridge
        # namespace: nothing ever appears in the root namespace.
        sh(n + ["link", "add", "eth0", "type", "veth", "peer", "name", veth, "netns", self.bridge_ns])
        self._sysctl(ns, "net.ipv6.conf.eth0.accept_dad", "0")
        sh(n + ["addr", "add", f"{pod.ip4}/16", "dev", "eth0"])
        sh(n + ["-6", "addr", "add", f"{pod.ip6}/64", "dev", "eth0", "nodad"])
        sh(n + ["link", "set", "eth0", "up"])
        b = ["ip", "-n", self.bridge_ns]
        sh(b + ["link", "set", veth, "master", "br0"])
        sh(b + ["link", "set", veth, "up"])
        sh(n + ["route", "add", "default", "via", GATEWAY4, "dev", "eth0"])
        sh(n + ["-6", "route", "add", "default", "via", GATEWAY6, "dev", "eth0"])
        for each in self.pods.values():
            self.write_hosts(each)
        if nameservers is not None:
            self.write_resolv_conf(pod, nameservers)
        return pod

    def write_hosts(self, pod: Pod, extra: Mapping[str, str] | None = None) -> None:
        """(Re)write /etc/netns/<ns>/hosts: the pod's own `hosts` map (name ->
        address, e.g. a service name -> its VIP) first, then localhost, the
        pod itself by its name, and every pod of the lab as `<name>.pod`."""
        if extra:
            pod.hosts.update(extra)
        lines = [f"{addr}\t{name}" for name, addr in pod.hosts.items()]
        lines += ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if pod.name not in pod.hosts:
            lines += [f"{pod.ip4}\t{pod.name}", f"{pod.ip6}\t{pod.name}"]
        for other in self.pods.values():
            lines += [f"{other.ip4}\t{other.name}.pod", f"{other.ip6}\t{other.name}.pod"]
        d = NETNS_ETC / pod.ns
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        (d / "hosts").write_text("\n".join(lines) + "\n")
        (d / "hosts").chmod(0o644)

    def write_resolv_conf(self, pod: Pod, nameservers: Sequence[str], search: Sequence[str] = (),
                          options: Sequence[str] = ("timeout:1", "attempts:1")) -> None:
        """(Re)write /etc/netns/<ns>/resolv.conf: `nameservers` (IP addresses,
        in order; none left means glibc's default, 127.0.0.1 in the pod),
        then `search` and `options` (by default a server that does not
        answer fails a lookup within a second, not after glibc's 5 s x 2).

        ``ip netns exec`` bind-mounts the file over /etc/resolv.conf for each
        process it starts, so the file must exist before the pod's processes
        that resolve names start. It is rewritten in place (same inode): a
        process already running sees the new content. The file goes with the
        pod's /etc/netns dir at teardown."""
        for server in nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise LabError(f"nameserver {server!r} is not an IP address") from None
        lines = [f"nameserver {server}" for server in nameservers]
        if search:
            lines.append("search " + " ".join(search))
        if options:
            lines.append("options " + " ".join(options))
        d = NETNS_ETC / pod.ns
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        path = d / "resolv.conf"
        with open(path, "w") as f:  # in place: the bind mounts keep its inode
            f.write("\n".join(lines) + "\n")
        path.chmod(0o644)
        pod.nameservers = list(nameservers)

    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    def logs(self) -> dict[str, str]:
        """Every spawned process's log, keyed `pod/name`."""
        out = {}
        for pod in self.pods.values():
            for i, proc in enumerate(pod.procs):
                out[f"{pod.name}/{proc.name}#{i}"] = proc.log()
        return out


def _main(argv: Iterable[str]) -> int:
    """`python3 weftlab.py cleanup|status`: see scripts/lab for the full CLI."""
    args = list(argv)
    if args[:1] == ["cleanup"]:
        cleanup_stale()
        return 0
    print("\n".join(n for n in list_netns() if NAME_RE.match(n)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
