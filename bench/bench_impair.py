"""Link impairments (hoplab.node.impair) on the running default lab, in one run:
  - accuracy: the client's ping to its router with a delay on client:home (netem where the
    kernel has it, else the NFQUEUE delayer), against pings without it, interleaved: the added
    round trip's median and its error;
  - the delayer's cost at load: wrk through the full path to a cached page (client -> NAT ->
    edge), with every packet the edge sends on `internet` through the delayer at ~0 ms, against
    the same without it, interleaved; the delayer's CPU per packet beside.

    .venv/bin/python bench/bench_impair.py [--topology FILE] [--runs N] [--pings N] [--seconds S]
Every impairment is bounded (`--seconds`) and cleared after its measurement; wrk is bounded by
its own duration; everything stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from bench_path import wrk
from hoplab import spec
from hoplab.backends.docker import DockerBackend
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY
from watched import lab_up, run_watched

IMPAIR = ["python3", "-m", "hoplab.node.impair"]
NEAR_ZERO_MS = "0.001"  # the delayer takes every packet and gives it back at once: its cost alone
BOUND_S = 300  # no impairment of this benchmark outlives this


def run(backend, topology, node: str, argv: list[str], timeout: float = 60) -> str:
    result = backend.run(topology, node, argv, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"{node}: {' '.join(argv)} failed: {result.stderr or result.stdout}")
    return result.stdout


def pings(backend, topology, node: str, address: str, count: int) -> list[float]:
    said = run(backend, topology, node, ["ping", "-n", "-c", str(count), "-i", "0.02", "-W", "2", address],
               timeout=count * 0.5 + 30)
    return [float(ms) for ms in re.findall(r"time=([\d.]+) ms", said)]


def delayer_cpu_s(backend, topology, node: str, iface: str) -> float:
    """The delayer's user + system CPU so far, in seconds (its /proc stat; 100 ticks a second)."""
    stat = run(backend, topology, node, ["sh", "-c", f"cat /proc/$(cat /run/hoplab/delayer-chaos-{iface}.pid)/stat"])
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def tx_packets(backend, topology, node: str, iface: str) -> int:
    return int(run(backend, topology, node, ["cat", f"/sys/class/net/{iface}/statistics/tx_packets"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pings", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "impair.json")
    args = parser.parse_args()
    topology = spec.load(args.topology)
    lab_up(args.topology)
    backend = DockerBackend()
    client = topology.nodes_of("client")[0].name
    home = next(i.network for i in topology.nodes[client].interfaces)
    router = topology.networks[home].dhcp.gateway
    gateway = str(topology.nodes[router].address_on(home))
    edge = topology.nodes_of("cache")[0]
    www = f"https://www.{topology.domain.name}/"

    def impaired(node: str, iface: str, *values: str):
        run(backend, topology, node, [*IMPAIR, "apply", iface, *values, "--seconds", str(BOUND_S), "--owner", "chaos"])

    def cleared(node: str, iface: str):
        run(backend, topology, node, [*IMPAIR, "clear", iface, "--owner", "chaos"])

    accuracy = {}
    for delay, jitter in ((20, 0), (50, 0), (50, 5), (100, 0)):
        added: list[float] = []
        for _ in range(args.runs):
            base = statistics.median(pings(backend, topology, client, gateway, args.pings))
            impaired(client, home, "--delay-ms", str(delay), "--jitter-ms", str(jitter))
            try:
                added += [ms - base for ms in pings(backend, topology, client, gateway, args.pings)]
            finally:
                cleared(client, home)
        errors = sorted(abs(ms - delay) for ms in added)
        accuracy[f"{delay} ms ± {jitter}"] = {
            "pings": len(added), "added_median_ms": round(statistics.median(added), 3),
            "error_median_ms": round(statistics.median(errors), 3),
            "error_p95_ms": round(errors[int(0.95 * (len(errors) - 1))], 3), "error_max_ms": round(errors[-1], 3)}
        print(f"delay {delay} ms ± {jitter}: {accuracy[f'{delay} ms ± {jitter}']}", flush=True)

    iface = next(i.network for i in edge.interfaces if i.address == topology.domain.records.get("www"))
    cost: dict[str, list[dict]] = {"without": [], "through the delayer (~0 ms)": []}
    for i in range(args.runs):
        cost["without"].append(wrk(backend, topology, client, www, args.seconds, args.connections))
        impaired(edge.name, iface, "--delay-ms", NEAR_ZERO_MS)
        try:
            cpu = delayer_cpu_s(backend, topology, edge.name, iface)
            sent = tx_packets(backend, topology, edge.name, iface)
            figures = wrk(backend, topology, client, www, args.seconds, args.connections)
            cpu = delayer_cpu_s(backend, topology, edge.name, iface) - cpu
            sent = tx_packets(backend, topology, edge.name, iface) - sent
        finally:
            cleared(edge.name, iface)
        figures.update(delayer_cpu_s=cpu, packets=sent, delayer_us_per_packet=cpu * 1e6 / max(sent, 1),
                       delayer_cores=cpu / args.seconds)
        cost["through the delayer (~0 ms)"].append(figures)
        for name, results in cost.items():
            print(f"run {i + 1}/{args.runs} {name:<30} {results[-1]['rps']:9.0f} req/s  "
                  f"p50 {results[-1]['p50_us'] / 1000:6.2f} ms  p99 {results[-1]['p99_us'] / 1000:6.2f} ms", flush=True)
    summary = {name: {key: statistics.median(r[key] for r in results) for key in ("rps", "p50_us", "p99_us")}
               for name, results in cost.items()}
    through = cost["through the delayer (~0 ms)"]
    summary["ratio"] = summary["through the delayer (~0 ms)"]["rps"] / summary["without"]["rps"]
    summary["delayer_us_per_packet"] = statistics.median(r["delayer_us_per_packet"] for r in through)
    summary["delayer_cores"] = statistics.median(r["delayer_cores"] for r in through)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "accuracy": accuracy,
                                     "cost": summary, "runs": cost}, indent=2) + "\n")
    print(f"\naccuracy (client {home} -> router, {args.runs} x {args.pings} pings each, against the median "
          f"without; NFQUEUE delayer unless the kernel has sch_netem):")
    for name, figures in accuracy.items():
        print(f"  {name:<12} added median {figures['added_median_ms']:7.3f} ms, error median "
              f"{figures['error_median_ms']:.3f} ms, p95 {figures['error_p95_ms']:.3f} ms, "
              f"max {figures['error_max_ms']:.3f} ms")
    print(f"cost at load (wrk, {args.connections} connections, {args.seconds} s, cached page via the full path; "
          f"medians of {args.runs}):")
    for name in cost:
        fig = summary[name]
        print(f"  {name:<30} {fig['rps']:9.0f} req/s  p50 {fig['p50_us'] / 1000:6.2f} ms  "
              f"p99 {fig['p99_us'] / 1000:6.2f} ms")
    print(f"  ratio {summary['ratio']:.2f}; the delayer: {summary['delayer_us_per_packet']:.1f} us of CPU per packet, "
          f"{summary['delayer_cores']:.2f} core")
    print(f"(JSON: {args.json})")


if __name__ == "__main__":
    run_watched(main, "impair")
