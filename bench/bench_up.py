"""Bring-up benchmark: one cold `hoplab up` (no images at all), then warm runs of `hoplab up`
alternating with the same compose file started by plain `docker compose up --wait`, in one
run, so the ratio shows hoplab's own overhead on a noisy shared machine.

    .venv/bin/python bench/bench_up.py [--topology FILE] [--runs N] [--no-cold] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hoplab import compose, spec
from hoplab.backends.hostfw import HostFirewall
from hoplab.backends.images import OS_IMAGE
from hoplab.paths import BUILD_DIR, COMPOSE_DIR, DEFAULT_TOPOLOGY

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--runs", type=int, default=3, help="warm runs of each (default 3)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold run (it removes every hoplab image)")
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "up.json")
    args = parser.parse_args()
    topology = spec.load(args.topology)
    compose_file = COMPOSE_DIR / f"{topology.name}.yml"
    project = compose.project_name(topology)
    t = ["--topology", str(args.topology)]
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
    quiet([*HOPLAB, "up", "-q", *t])  # leave the lab running, as `make up` would

    results.update(warm_hoplab=warm, warm_compose=plain)
    summary = {
        "topology": str(args.topology), "nodes": len(topology.nodes), "runs": args.runs,
        "cold_s": results.get("cold"),
        "warm_hoplab_median_s": statistics.median(warm),
        "warm_compose_median_s": statistics.median(plain),
        "ratio_hoplab_over_compose": statistics.median(warm) / statistics.median(plain),
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
    print(f"  (JSON: {args.json})")


if __name__ == "__main__":
    main()
