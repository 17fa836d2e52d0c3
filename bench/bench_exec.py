"""Exec benchmark: the latency of running `true` in a lab node, in one run, interleaved:
  - `docker exec CONTAINER true` (the Docker CLI: the reference),
  - `hoplab exec client -- true`, before (the code at --before) and now,
  - one `Backend.run(topology, "client", ["true"])` inside a running Python process, before and
    now (what the end-to-end tests and every in-process caller pay).
Medians of --runs runs each, and the ratios now/before and against `docker exec`.

    .venv/bin/python bench/bench_exec.py [--topology FILE] [--runs N] [--before REF]
--before defaults to the last commit before the Docker SDK came in (src/hoplab/backends/engine.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hoplab import compose, spec
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY, PROJECT_ROOT
from watched import lab_up, run_watched

# Times `runs` calls of Backend.run in one process (after one warm-up call) and prints them.
IN_PROCESS = """
import json, sys, time
from hoplab import spec
from hoplab.backends.docker import DockerBackend
topology, node, runs = spec.load(sys.argv[1]), sys.argv[2], int(sys.argv[3])
backend = DockerBackend()
backend.run(topology, node, ["true"])
times = []
for _ in range(runs):
    start = time.perf_counter()
    assert backend.run(topology, node, ["true"]).returncode == 0
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def default_before() -> str:
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "src/hoplab/backends/engine.py"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, check=True).stdout.split()
    if not added:
        raise SystemExit("bench_exec: no commit added src/hoplab/backends/engine.py; give --before REF")
    return f"{added[-1]}^"


def sources_at(ref: str) -> Path:
    """src/, services/ and topology/ as they were at `ref`, unpacked under
    build/bench/exec-<commit>/ (the code of then reads the catalogue and topology schema of
    then: today's hold keys it never knew)."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            check=True).stdout.strip()
    root = BUILD_DIR / "bench" / f"exec-{commit}"
    if not (root / "topology").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "archive", commit, "src", "services", "topology"], cwd=PROJECT_ROOT,
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(root)], stdin=archive.stdout, check=True)
        archive.wait()
    return root / "src"


def timed(argv: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=60,
                   cwd=env["HOPLAB_ROOT"] if env else None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", help="the git ref to compare with (default: before the Docker SDK)")
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "exec.json")
    args = parser.parse_args()
    topology = spec.load(args.topology)
    node = topology.nodes_of("client")[0].name
    lab_up(args.topology, "--backend", "docker")
    before_ref = args.before or default_before()
    sources = {"before": sources_at(before_ref), "now": PROJECT_ROOT / "src"}
    container = compose.container_name(topology, node)
    # Each version's code with its own services and topology file (HOPLAB_ROOT, run from there):
    # the same lab, the same containers.
    env = {name: {**os.environ, "PYTHONPATH": str(src), "HOPLAB_ROOT": str(src.parent)}
           for name, src in sources.items()}
    topology_of = {"before": str(sources["before"].parent / "topology" / args.topology.name),
                   "now": str(args.topology)}

    def cli(which: str) -> list[str]:
        return [sys.executable, "-m", "hoplab", "exec", "--topology", topology_of[which], "--backend", "docker", node,
                "--", "true"]

    commands = {"docker exec (CLI)": (["docker", "exec", container, "true"], None),
                "hoplab exec, before": (cli("before"), env["before"]),
                "hoplab exec, now": (cli("now"), env["now"])}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for name, (argv, environment) in commands.items():  # warm-up: caches, the engine's first exec
        timed(argv, environment)
    for _ in range(args.runs):  # interleaved, so that drift hits every command alike
        for name, (argv, environment) in commands.items():
            samples[name].append(timed(argv, environment))
    for which in ("before", "now"):
        out = subprocess.run([sys.executable, "-c", IN_PROCESS, topology_of[which], node, str(args.runs)],
                             capture_output=True, text=True, check=True, env=env[which], timeout=300,
                             cwd=env[which]["HOPLAB_ROOT"]).stdout
        samples[f"Backend.run in process, {which}"] = json.loads(out)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    reference = medians["docker exec (CLI)"]
    print(f"\nexec of `true` in {node}: medians of {args.runs} runs (before = {before_ref})")
    print(f"{'':<36}{'median':>10}{'min':>10}{'max':>10}{'vs docker exec':>16}")
    for name, values in samples.items():
        print(f"{name:<36}{medians[name] * 1000:8.1f} ms{min(values) * 1000:8.1f} ms{max(values) * 1000:8.1f} ms"
              f"{medians[name] / reference:15.2f}x")
    for what in ("hoplab exec", "Backend.run in process"):
        print(f"{what}: now/before = {medians[f'{what}, now'] / medians[f'{what}, before']:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"before": before_ref, "runs": args.runs, "samples_s": samples,
                                     "medians_s": medians}, indent=2))
    print(f"data: {args.json}")


if __name__ == "__main__":
    run_watched(main, "exec")
