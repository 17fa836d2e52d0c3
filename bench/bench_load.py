"""Load benchmark, in one run: the same steady load, at several levels of offered load, against
  - the default lab,
  - the default lab with the CDN cache bypassed (cache-busting query strings),
  - 1, 2 and 3 web replicas (the topology's replica count changed, nothing else),
  - the default lab with every node capturing (tracing on),
plus wrk, a C load tool, at the same target and concurrency, to show whether Locust itself is
the limit. Prints a table of throughput and p99 and writes a PNG of p99 against offered load.

    .venv/bin/python bench/bench_load.py [--topology FILE] [--levels 4,8,16] [--seconds S]
Every run is bounded by its time; all load stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from bench_path import wrk
from hoplab import spec
from hoplab.backends.docker import DockerBackend
from hoplab.control.client import ControlClient
from hoplab.load import LoadOptions, run_load
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY
from hoplab.progress import Progress
from hoplab.visit import TRACE_FILTER
from watched import lab_up, run_watched

OUT = BUILD_DIR / "bench"


def up(path: Path) -> spec.Topology:
    lab_up(path)
    return spec.load(path)


def with_replicas(source: Path, replicas: int) -> Path:
    data = yaml.safe_load(source.read_text())
    for node in data["nodes"].values():
        if node["service"] == "web":
            node["replicas"] = replicas
    path = OUT / f"{source.stem}-web{replicas}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--levels", default="4,8,16", help="users, comma-separated (default 4,8,16)")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    backend, progress = DockerBackend(), Progress(quiet=True)
    rows: list[dict] = []

    def measure(variant: str, topology: spec.Topology, **options) -> None:
        for users in levels:
            result = run_load(backend, topology, LoadOptions(users=users, rate=users, seconds=args.seconds,
                                                             **options), progress)
            total = result.summary["total"]
            rows.append({"variant": variant, "users": users, "rps": total["rps"], "p50_ms": total["p50_ms"],
                         "p99_ms": total["p99_ms"], "failures": total["failures"], "requests": total["requests"]})
            print(f"{variant:<24} {users:>3} users  {total['rps']:7.1f} req/s  p99 {total['p99_ms']:6.0f} ms  "
                  f"failures {total['failures']}", flush=True)

    default = up(args.topology)
    replicas = len(default.nodes_of("web"))
    measure(f"default ({replicas} web)", default)
    measure("cache bypassed", default, no_cache=True)
    control = ControlClient.of(DockerBackend(), default)
    capture = control.start(filter=TRACE_FILTER, max_seconds=min(600, len(levels) * (args.seconds + 30)),
                            max_packets=200_000)
    try:
        measure("tracing on", default)
    finally:
        control.stop(capture.id)
    client = default.nodes_of("client")[0].name
    for users in levels:
        figures = wrk(backend, default, client, f"https://www.{default.domain.name}/", args.seconds, users)
        rows.append({"variant": "wrk (C) reference, GET /", "users": users, "rps": figures["rps"],
                     "p50_ms": figures["p50_us"] / 1000, "p99_ms": figures["p99_us"] / 1000,
                     "failures": figures["socket_errors"] + figures["non_2xx"], "requests": figures["requests"]})
        print(f"{'wrk (C) reference':<24} {users:>3} conns  {figures['rps']:7.1f} req/s  "
              f"p99 {figures['p99_us'] / 1000:6.0f} ms", flush=True)
    for count in sorted({1, 3} - {replicas}):
        measure(f"{count} web replica{'s' if count > 1 else ''}", up(with_replicas(args.topology, count)))
    up(args.topology)  # back to the default lab

    (OUT / "load.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{'variant':<28}{'users':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failures':>10}")
    for row in rows:
        print(f"{row['variant']:<28}{row['users']:>6}{row['rps']:>9.1f}{row['p50_ms']:>9.0f}{row['p99_ms']:>9.0f}"
              f"{row['failures']:>10}")
    chart(rows, OUT / "load-p99.png")
    print(f"(JSON: {OUT / 'load.json'}; chart: {OUT / 'load-p99.png'})")


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        points = [(r["users"], r["p99_ms"]) for r in rows if r["variant"] == variant]
        axis.plot(*zip(*points), marker="o", label=variant)
    axis.set_xlabel("offered load (concurrent users; connections for wrk)")
    axis.set_ylabel("p99 latency (ms)")
    axis.set_title("hoplab: p99 against offered load")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    run_watched(main, "load")
