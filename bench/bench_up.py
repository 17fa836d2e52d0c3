"""Bring-up benchmark, all in one run so the ratios hold on a noisy shared machine:
1. one cold `hoplab up` (no images at all), then warm runs of `hoplab up` alternating with the
   same compose file started by plain `docker compose up --wait` (hoplab's own overhead);
2. warm `hoplab up` on the netns backend (Mininet) against the Docker backend, interleaved;
3. how bring-up grows with the number of web replicas (1, 2, 4, 8) on both backends, printed
   and plotted (build/bench/up-scaling.png).

    .venv/bin/python bench/bench_up.py [--topology FILE] [--runs N] [--no-cold] [--json OUT]
                                       [--replicas 1,2,4,8] [--backends docker,netns]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hoplab import compose, spec
from hoplab.backends.hostfw import HostFirewall
from hoplab.backends.images import OS_IMAGE
from hoplab.paths import BUILD_DIR, COMPOSE_DIR, DEFAULT_TOPOLOGY
from watched import run_watched

HOPLAB = [sys.executable, "-m", "hoplab"]


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, text=True, check=True)


def up_times(backend: str, topology: Path, runs: int) -> list[float]:
    """`runs` warm bring-ups from nothing (each after a `down`); the lab is left down."""
    t = ["--topology", str(topology), "--backend", backend]
    times = []
    for _ in range(runs):
        quiet([*HOPLAB, "down", *t])
        times.append(timed([*HOPLAB, "up", "-q", *t]))
    quiet([*HOPLAB, "down", *t])
    return times


def with_replicas(topology: Path, replicas: int, folder: Path) -> Path:
    """The topology with `replicas` web nodes (their addresses follow the first one's)."""
    data = yaml.safe_load(topology.read_text())
    (web,) = [n for n in data["nodes"].values() if n["service"] == "web"]
    web["replicas"] = replicas
    path = folder / f"{topology.stem}-web{replicas}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec.load(path)  # refuse a variant the addressing cannot hold, before timing anything
    return path


def plot(scaling: dict[str, dict[int, float]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for backend, points in scaling.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", label=backend)
    ax.set_xlabel("web replicas")
    ax.set_ylabel("warm bring-up, median (s)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({x for p in scaling.values() for x in p}), [str(x) for x in sorted({x for p in scaling.values() for x in p})])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--runs", type=int, default=3, help="warm runs of each (default 3)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold run (it removes every hoplab image)")
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "up.json")
    parser.add_argument("--replicas", default="1,2,4,8", help="web replica counts to scale over")
    parser.add_argument("--backends", default="docker,netns", help="backends to compare")
    args = parser.parse_args()
    backends = args.backends.split(",")
    counts = [int(c) for c in args.replicas.split(",")]
    topology = spec.load(args.topology)
    compose_file = COMPOSE_DIR / f"{topology.name}.yml"
    project = compose.project_name(topology)
    t = ["--topology", str(args.topology), "--backend", "docker"]
    docker_compose = [str(Path(sys.executable).parent / "docker-compose"), "-p", project, "-f", str(compose_file)]

    quiet([*HOPLAB, "render", "--check", *t])  # the baseline must start what hoplab starts
    results: dict[str, list[float] | float] = {}
    if not args.no_cold:
        quiet([*HOPLAB, "clean", *t])
        images = subprocess.run(["docker", "images", "-q", "--filter", "label=io.hoplab.image=1"],
                                capture_output=True, text=True).stdout.split()
        subprocess.run(["docker", "rmi", "-f", *images, OS_IMAGE], capture_output=True)
        print("cold: hoplab up with no images ...", flush=True)
        results["cold"] = timed([*HOPLAB, "up", "-q", *t])
        print(f"cold: {results['cold']:.1f} s", flush=True)
    else:
        quiet([*HOPLAB, "up", "-q", *t])  # make sure images exist before timing warm runs

    firewall = HostFirewall()
    warm, plain = [], []
    for i in range(args.runs):
        quiet([*HOPLAB, "down", *t])
        warm.append(timed([*HOPLAB, "up", "-q", *t]))
        quiet([*HOPLAB, "down", *t])
        # Plain Compose gets hoplab's host rules too, or no DHCP lease ever becomes healthy.
        firewall.allow_bridges(topology.name, list(compose.bridge_names(topology).values()))
        plain.append(timed([*docker_compose, "up", "-d", "--wait"]))
        quiet([*docker_compose, "down", "-v", "-t", "3"])
        firewall.remove(topology.name)
        print(f"run {i + 1}/{args.runs}: hoplab up {warm[-1]:.2f} s, docker compose up --wait {plain[-1]:.2f} s",
              flush=True)

    # The backends side by side, interleaved run by run: the default lab, then each size.
    folder = args.json.parent
    folder.mkdir(parents=True, exist_ok=True)
    per_backend: dict[str, list[float]] = {b: [] for b in backends}
    for i in range(args.runs):
        for backend in backends:
            per_backend[backend] += up_times(backend, args.topology, 1)
        print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{b} {per_backend[b][-1]:.2f} s" for b in backends), flush=True)
    scaling_raw: dict[str, dict[int, list[float]]] = {b: {} for b in backends}
    for count in counts:
        variant = with_replicas(args.topology, count, folder)
        for i in range(args.runs):
            for backend in backends:
                scaling_raw[backend].setdefault(count, []).extend(up_times(backend, variant, 1))
        print(f"{count} web replicas: " + ", ".join(
            f"{b} {statistics.median(scaling_raw[b][count]):.2f} s" for b in backends), flush=True)
    scaling = {b: {c: statistics.median(v) for c, v in points.items()} for b, points in scaling_raw.items()}
    png = folder / "up-scaling.png"
    plot(scaling, png, f"bring-up of {topology.name!r} by web replicas (median of {args.runs})")
    quiet([*HOPLAB, "up", "-q", *t])  # leave the lab running, as `make up` would
    status = json.loads(subprocess.run([*HOPLAB, "status", "--json", *t], capture_output=True, text=True,
                                       check=True).stdout)
    memory = {n["node"]: n["memory_bytes"] for n in status["nodes"]}

    results.update(warm_hoplab=warm, warm_compose=plain, backends=per_backend,
                   scaling={b: {str(c): v for c, v in p.items()} for b, p in scaling_raw.items()})
    summary = {
        "topology": str(args.topology), "nodes": len(topology.nodes), "runs": args.runs,
        "cold_s": results.get("cold"),
        "warm_hoplab_median_s": statistics.median(warm),
        "warm_compose_median_s": statistics.median(plain),
        "ratio_hoplab_over_compose": statistics.median(warm) / statistics.median(plain),
        "warm_median_s_by_backend": {b: statistics.median(v) for b, v in per_backend.items()},
        "scaling_median_s": {b: {str(c): v for c, v in p.items()} for b, p in scaling.items()},
        "scaling_png": str(png),
        "memory_total_bytes": status["memory_bytes"], "memory_bytes_by_node": memory,
        "raw": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(f"bring-up of {topology.name!r} ({len(topology.nodes)} nodes), medians of {args.runs} runs")
    if summary["cold_s"] is not None:
        print(f"  cold hoplab up (builds every image) {summary['cold_s']:8.2f} s")
    print(f"  warm hoplab up                      {summary['warm_hoplab_median_s']:8.2f} s")
    print(f"  warm docker compose up --wait       {summary['warm_compose_median_s']:8.2f} s")
    print(f"  ratio hoplab / compose              {summary['ratio_hoplab_over_compose']:8.2f}")
    print(f"  memory of the running lab (Pss)     {status['memory_bytes'] / 2**20:8.0f} MiB (goal <= 1024): "
          + ", ".join(f"{node} {size / 2**20:.0f}" for node, size in sorted(memory.items(), key=lambda kv: -kv[1])))
    medians = summary["warm_median_s_by_backend"]
    for backend in backends:
        print(f"  warm hoplab up --backend {backend:<10} {medians[backend]:8.2f} s"
              + (f"   ({medians[backend] / medians[backends[0]]:.2f} x {backends[0]})" if backend != backends[0] else ""))
    print(f"\n  {'web replicas':<14}" + "".join(f"{b:>12}" for b in backends))
    for count in counts:
        print(f"  {count:<14}" + "".join(f"{scaling[b][count]:>11.2f}s" for b in backends))
    print(f"  (plot: {png})")
    print(f"  (JSON: {args.json})")


if __name__ == "__main__":
    run_watched(main, "up")
