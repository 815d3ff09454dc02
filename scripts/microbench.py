#!/usr/bin/env python3
"""weft's micro-benchmarks (issue 4): runs Benchmarks/ with the ordo-one
`benchmark` plugin and reduces its JMH export to per-request figures.

Every benchmark does one request per iteration (scalingFactor .one), so
every value below is per request:

    translation                 MeshTranslation, request and response, both ways
    nghttp2 session             HTTP2Session client <-> server in memory, 1 KiB body
    proxied request (loopback)  client -> node A -> HTTP/2 mesh -> node B -> app
    direct request (loopback)   the same client straight to the app

Malloc counts are process-wide, so `proxied - direct` is what weft adds to
one proxied request (both nodes together).

    python3 scripts/microbench.py [out.json] [--out-dir DIR] [--scratch-path DIR] [--no-build]
    python3 scripts/microbench.py --allocation-stacks 'proxied.*'

Library use: `run(out_dir)` -> {name: record}; `markdown(results)` -> table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "Benchmarks"
DEFAULT_SCRATCH = PACKAGE / ".build"
TARGET = "WeftMicro"

# The plugin's metric descriptions (BenchmarkMetric.description) -> our keys.
METRICS = {
    "Malloc (total)": "mallocs",
    "Malloc (bytes total)": "malloc_bytes",
    "Time (wall clock)": "wall",
    "Instructions": "instructions",
}

# Order of the table; anything else the target grows comes after, sorted.
ORDER = ["translation", "nghttp2 session", "proxied request (loopback)", "direct request (loopback)"]
PROXIED, DIRECT = "proxied request (loopback)", "direct request (loopback)"

BUILD_TIMEOUT = 1800  # seconds; a cold release build takes ~8 min on 2 cores
RUN_TIMEOUT = 300  # the benchmarks themselves are bounded to well under 90 s


def build(scratch_path: Path = DEFAULT_SCRATCH, log: Path | None = None) -> float:
    """Release-builds the benchmark package; returns the seconds it took."""
    started = time.monotonic()
    _call(["swift", "build", "-c", "release", "--package-path", str(PACKAGE),
           "--scratch-path", str(scratch_path)], BUILD_TIMEOUT, log)
    return time.monotonic() - started


def run(out_dir: Path, scratch_path: Path = DEFAULT_SCRATCH, build_first: bool = True) -> dict:
    """Runs every benchmark and returns {name: record}, a record being

        name, iterations,
        mallocs_p50, mallocs_min, mallocs_max   mallocs per request
        malloc_bytes_p50                        bytes malloc'ed per request
        wall_ns_p50, wall_ns_p90                wall clock per request (ns)
        throughput_p50                          requests per second
        instructions_p50                        per request, None where the
                                                machine has no hardware PMU

    The plugin's raw export and logs stay in `out_dir`. Raises RuntimeError
    if the build, the run or any benchmark fails.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if build_first:
        build(scratch_path, out_dir / "microbench-build.log")
    export = out_dir / "Current_run.jmh.json"
    export.unlink(missing_ok=True)
    log = out_dir / "microbench-run.log"
    _call(["swift", "package", "--package-path", str(PACKAGE), "--scratch-path", str(scratch_path),
           "--allow-writing-to-package-directory", "--allow-writing-to-directory", str(out_dir),
           "benchmark", "--target", TARGET, "--format", "jmh", "--path", str(out_dir), "--no-progress"],
          RUN_TIMEOUT, log)
    failed = _failed_benchmarks(log.read_text(errors="replace"))
    if failed:
        raise RuntimeError(f"benchmarks failed: {', '.join(failed)} (see {log})")
    if not export.exists():
        raise RuntimeError(f"the plugin wrote no {export.name} (see {log})")
    results = parse_jmh(json.loads(export.read_text()))
    missing = [name for name in ORDER if name not in results]
    if missing:
        raise RuntimeError(f"no results for {', '.join(missing)} (see {log})")
    return results


def allocation_stacks(pattern: str, out_dir: Path, scratch_path: Path = DEFAULT_SCRATCH, limit: int = 60) -> str:
    """Where the allocations of the benchmarks matching `pattern` (a regex)
    come from: the plugin's `--allocation-stacks` report, unique stacks with
    their count per iteration. Frames inside libnghttp2 stay unsymbolicated."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "microbench-stacks.log"
    _call(["swift", "package", "--package-path", str(PACKAGE), "--scratch-path", str(scratch_path),
           "--allow-writing-to-package-directory", "benchmark", "--target", TARGET, "--filter", pattern,
           "--allocation-stacks", "--allocation-stack-limit", str(limit), "--no-progress"],
          RUN_TIMEOUT, log)
    text = log.read_text(errors="replace")
    marker = text.find("Allocation stacks")
    return text[marker:] if marker >= 0 else text


def parse_jmh(elements: list) -> dict:
    """The plugin's `--format jmh` export -> {name: record}. Values are
    HdrHistogram percentiles (3 significant digits; exact below 2048)."""
    results = {}
    for element in elements:
        # "package.benchmark.<target>.<name with spaces as _>"
        name = element["benchmark"].split(".", 3)[-1].replace("_", " ")
        metrics = element.get("secondaryMetrics") or {}
        record = {
            "name": name,
            "iterations": element["measurementIterations"],
            "throughput_p50": _percentile(element["primaryMetric"], "50.0"),
        }
        for description, key in METRICS.items():
            metric = metrics.get(description)
            if key == "wall":
                # JMH time values are microseconds with three decimals.
                record["wall_ns_p50"] = _ns(metric, "50.0")
                record["wall_ns_p90"] = _ns(metric, "90.0")
            elif key == "mallocs":
                record["mallocs_p50"] = _percentile(metric, "50.0")
                record["mallocs_min"] = _percentile(metric, "0.0")
                record["mallocs_max"] = _percentile(metric, "100.0")
            else:
                record[f"{key}_p50"] = _percentile(metric, "50.0")
        results[name] = record
    return dict(sorted(results.items(), key=lambda item: _rank(item[0])))


def weft_added(results: dict) -> dict | None:
    """What weft adds to one request: proxied minus direct, per metric."""
    proxied, direct = results.get(PROXIED), results.get(DIRECT)
    if not proxied or not direct:
        return None
    added = {}
    for key in ("mallocs_p50", "malloc_bytes_p50", "wall_ns_p50", "instructions_p50"):
        if proxied.get(key) is not None and direct.get(key) is not None:
            added[key] = proxied[key] - direct[key]
        else:
            added[key] = None
    return added


def markdown(results: dict) -> str:
    """A Markdown table of `run()`'s results, plus the proxied-minus-direct row."""
    with_instructions = any(r.get("instructions_p50") is not None for r in results.values())
    header = ["benchmark", "mallocs / req (p50)", "min-max", "bytes / req", "wall / req (p50)",
              "p90", "req/s"]
    if with_instructions:
        header.append("instructions / req")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for record in results.values():
        row = [record["name"], _int(record.get("mallocs_p50")),
               f"{_int(record.get('mallocs_min'))}-{_int(record.get('mallocs_max'))}",
               _int(record.get("malloc_bytes_p50")), _duration(record.get("wall_ns_p50")),
               _duration(record.get("wall_ns_p90")), _int(record.get("throughput_p50"))]
        if with_instructions:
            row.append(_int(record.get("instructions_p50")))
        lines.append("| " + " | ".join(row) + " |")
    added = weft_added(results)
    if added:
        row = ["**weft adds (proxied - direct)**", f"**{_int(added['mallocs_p50'])}**", "",
               _int(added["malloc_bytes_p50"]), _duration(added["wall_ns_p50"]), "", ""]
        if with_instructions:
            row.append(_int(added["instructions_p50"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# MARK: - helpers

def _call(command: list[str], timeout: int, log: Path | None) -> None:
    output = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", timeout=timeout)
    if log is not None:
        log.write_text(output.stdout)
    if output.returncode != 0:
        tail = "\n".join(output.stdout.splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {output.returncode}:\n{tail}")


def _failed_benchmarks(text: str) -> list[str]:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("The following benchmarks failed"):
            failed = []
            for entry in lines[index + 1:]:
                if entry.strip():
                    failed.append(entry.strip())
                elif failed:
                    break
            return failed
    return []


def _percentile(metric: dict | None, key: str) -> float | int | None:
    if not metric:
        return None
    value = metric["scorePercentiles"].get(key)
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _ns(metric: dict | None, key: str) -> int | None:
    value = _percentile(metric, key)
    return None if value is None else round(value * 1000)


def _rank(name: str) -> tuple:
    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def _int(value) -> str:
    return "-" if value is None else f"{round(value):,}"


def _duration(ns) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1000:.1f} µs" if abs(ns) >= 1000 else f"{round(ns)} ns"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="?", type=Path, help="write the results here as JSON")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the plugin's export and logs go (default: Benchmarks/.build/microbench)")
    parser.add_argument("--scratch-path", type=Path, default=DEFAULT_SCRATCH,
                        help="SwiftPM scratch path for the benchmark package (default: Benchmarks/.build)")
    parser.add_argument("--no-build", action="store_true", help="skip the explicit release build")
    parser.add_argument("--allocation-stacks", metavar="REGEX",
                        help="instead of the table, print where the matching benchmarks allocate")
    args = parser.parse_args(argv)
    scratch = args.scratch_path.resolve()
    out_dir = (args.out_dir or scratch / "microbench").resolve()
    if args.allocation_stacks:
        print(allocation_stacks(args.allocation_stacks, out_dir, scratch))
        return 0

    build_seconds = None
    if not args.no_build:
        print("building Benchmarks/ (release) ...", file=sys.stderr, flush=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        build_seconds = build(scratch, out_dir / "microbench-build.log")
    print("running micro-benchmarks ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    results = run(out_dir, scratch, build_first=False)
    run_seconds = time.monotonic() - started

    print(markdown(results))
    print(f"run: {run_seconds:.1f} s" + (f" (build {build_seconds:.1f} s)" if build_seconds is not None else ""))
    if args.json:
        document = {
            "benchmarks": results,
            "weft_added_per_proxied_request": weft_added(results),
            "run_seconds": round(run_seconds, 1),
            "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
