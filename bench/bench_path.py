"""Request-path benchmark: requests/s and p50/p99 latency with wrk, in one run, for
  - a cached page through the full path (client -> NAT -> CDN edge over TLS, a cache HIT),
  - an uncached page through the full path (... -> LB -> web -> db, every time),
  - the same pages fetched straight from one web replica (from the LB's node, no edge, no LB),
each repeated and interleaved; medians and ratios against the direct fetch.

    .venv/bin/python bench/bench_path.py [--topology FILE] [--runs N] [--seconds S] [--connections C]
Every run is bounded by wrk's own duration; the load stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from hoplab import spec
from hoplab.backends.docker import DockerBackend
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY
from watched import lab_up, run_watched

# wrk's done() hook prints the figures as JSON: no scraping of its human-readable report.
WRK_JSON = """
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n', s.requests, s.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(backend, topology, node, url, seconds, connections) -> dict:
    script = ("printf '%s' \"$0\" > /tmp/hoplab-wrk.lua && exec wrk --timeout 5s -t 2 "
              f"-c {connections} -d {seconds}s -s /tmp/hoplab-wrk.lua {url} | tail -n 1")
    result = backend.run(topology, node, ["sh", "-c", script, WRK_JSON], timeout=seconds + 30)
    if result.returncode != 0:
        raise SystemExit(f"wrk in {node} failed: {result.stderr or result.stdout}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "path.json")
    args = parser.parse_args()
    topology = spec.load(args.topology)
    lab_up(args.topology)
    backend = DockerBackend()
    client = topology.nodes_of("client")[0].name
    lb = topology.nodes_of("lb")[0]
    web = topology.nodes_of("web")[0]
    shared = next(i.network for i in web.interfaces if lb.address_on(i.network))
    direct = f"http://{web.address_on(shared)}:8080"
    www = f"https://www.{topology.domain.name}"
    # (node, url, the direct variant it is compared with)
    products_direct, order_direct = f"/ direct from {web.name}", f"/order direct from {web.name}"
    variants = {
        "/ (cacheable) via full path": (client, f"{www}/", products_direct),
        "/order (no-store) via full path": (client, f"{www}/order", order_direct),
        products_direct: (lb.name, f"{direct}/", products_direct),
        order_direct: (lb.name, f"{direct}/order", order_direct),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for i in range(args.runs):
        for name, (node, url, _) in variants.items():
            figures = wrk(backend, topology, node, url, args.seconds, args.connections)
            runs[name].append(figures)
            print(f"run {i + 1}/{args.runs} {name:<36} {figures['rps']:9.0f} req/s  "
                  f"p50 {figures['p50_us'] / 1000:6.2f} ms  p99 {figures['p99_us'] / 1000:6.2f} ms  "
                  f"errors {figures['socket_errors'] + figures['non_2xx']}", flush=True)
    summary = {}
    for name, results in runs.items():
        summary[name] = {key: statistics.median(r[key] for r in results) for key in ("rps", "p50_us", "p99_us")}
        summary[name]["errors"] = sum(r["socket_errors"] + r["non_2xx"] for r in results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                     "summary": summary, "runs": runs}, indent=2) + "\n")
    print(f"\nmedians of {args.runs} runs, {args.seconds} s each, {args.connections} connections, wrk in the lab")
    print(f"{'variant':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'rps vs direct':>15}")
    for name, fig in summary.items():
        base = summary[variants[name][2]]
        print(f"{name:<38}{fig['rps']:9.0f}{fig['p50_us'] / 1000:9.2f}{fig['p99_us'] / 1000:9.2f}"
              f"{fig['errors']:8d}{fig['rps'] / base['rps']:15.2f}")
    print(f"(JSON: {args.json})")


if __name__ == "__main__":
    run_watched(main, "path")
