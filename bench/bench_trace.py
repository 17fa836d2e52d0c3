"""Tracing benchmark, in one run:
  - the collector's capacity: records/s it ingests from fake agents streaming real frames'
    records on loopback, no lab involved (bench_ingest.py; median of several runs);
  - the request path's throughput (wrk from the client, through NAT, edge, LB, web, db) with
    tracing off, with the host's kernel drop tracer alone (bpftrace on skb:kfree_skb), and with
    every node capturing, alternated; the ratios to "off" are their costs;
  - records per second the collector ingested during the traced runs, and the CPU the agents
    (all nodes together) and the collector used meanwhile;
  - the time from the end of a visit to its assembled trace (StopCapture + GetTrace), median
    of several visits.

    .venv/bin/python bench/bench_trace.py [--topology FILE] [--runs N] [--seconds S] [--path /order]
Every run is bounded by wrk's duration and the capture's own bounds; load stays in the lab.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench_ingest import ingest
from bench_path import wrk
from hoplab import spec
from hoplab.backends.docker import DockerBackend
from hoplab.control.client import ControlClient
from hoplab.kernel_view import KernelView
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY
from hoplab.visit import TRACE_FILTER, new_trace_id, visit
from watched import lab_up, run_watched


IDLE_WINDOW_S = 10
# A process's CPU time in ns, every thread's (schedstat: the scheduler's own count, not 10 ms
# ticks); $1 names the process (pgrep -f).
PROCESS_CPU = "pid=$(pgrep -f \"$1\" | head -n1) && cut -d' ' -f1 /proc/$pid/task/*/schedstat"


class CpuMeter:
    """CPU ns the agents of every node, and the collector, used so far (`read`)."""

    def __init__(self, backend, topology):
        self.backend, self.topology = backend, topology
        self.agents = [n.name for n in topology.nodes.values() if n.service != "control"]
        self.control = [n.name for n in topology.nodes.values() if n.service == "control"]

    def _ns(self, node: str, process: str) -> int:
        out = self.backend.run(self.topology, node, ["sh", "-c", PROCESS_CPU, "cpu", process]).stdout.split()
        return sum(int(x) for x in out)

    def read(self) -> tuple[int, int]:
        return (sum(self._ns(n, "hoplab.control.agent") for n in self.agents),
                sum(self._ns(n, "hoplab.control.server") for n in self.control))


def idle_agent_cpu(meter: CpuMeter, seconds: float) -> float:
    """CPU seconds per second that every node's agent used together while nothing was traced."""
    before = meter.read()[0]
    time.sleep(seconds)
    return (meter.read()[0] - before) / 1e9 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--path", default="/order", help="the page to load (default: the uncached order form)")
    parser.add_argument("--visits", type=int, default=5, help="visits timed for trace assembly")
    parser.add_argument("--ingest-agents", type=int, default=8, help="fake agents of the ingest run")
    parser.add_argument("--ingest-runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "trace.json")
    args = parser.parse_args()
    topology = spec.load(args.topology)
    capacity = ingest(agents=args.ingest_agents, runs=args.ingest_runs)
    lab_up(args.topology)
    backend = DockerBackend()
    control = ControlClient.of(backend, topology)
    client = topology.nodes_of("client")[0].name
    url = f"https://www.{topology.domain.name}{args.path}"

    meter = CpuMeter(backend, topology)
    idle = idle_agent_cpu(meter, IDLE_WINDOW_S)
    print(f"idle agents: {idle * 1000:.2f} ms of CPU per second, all nodes together", flush=True)
    off, kernel, on, offered, agents_cpu, collector_cpu = [], [], [], [], [], []
    for i in range(args.runs):
        off.append(wrk(backend, topology, client, url, args.seconds, args.connections)["rps"])
        with KernelView(backend, topology, args.seconds + 20) as view:
            kernel.append(wrk(backend, topology, client, url, args.seconds, args.connections)["rps"])
        if view.status:
            raise SystemExit(f"bench-trace: the kernel tracer did not run: {view.status}")
        used = meter.read()
        capture = control.start(filter=TRACE_FILTER, max_seconds=args.seconds + 20, max_packets=200_000)
        started = time.monotonic()
        on.append(wrk(backend, topology, client, url, args.seconds, args.connections)["rps"])
        stopped = control.stop(capture.id)
        took = time.monotonic() - started
        offered.append(stopped.records / took)
        after = meter.read()
        agents_cpu.append((after[0] - used[0]) / 1e9 / took)
        collector_cpu.append((after[1] - used[1]) / 1e9 / took)
        print(f"run {i + 1}/{args.runs}: tracing off {off[-1]:7.0f} req/s, kernel tracer {kernel[-1]:7.0f} req/s, "
              f"on {on[-1]:7.0f} req/s, "
              f"collector {offered[-1]:8.0f} records/s ({stopped.records} records); "
              f"CPU: agents {agents_cpu[-1]:.3f}, collector {collector_cpu[-1]:.3f} core", flush=True)

    assembly = []
    for _ in range(args.visits):
        trace_id = new_trace_id()
        capture = control.start(filter=TRACE_FILTER, max_seconds=30, max_packets=20_000, trace_id=trace_id, url=url)
        result = visit(backend, topology, url, client, trace_id)
        ended = time.monotonic()
        control.stop(capture.id, status=result.status)
        trace = control.trace(trace_id)
        assembly.append(time.monotonic() - ended)
        print(f"visit: {len(trace.hops)} hops assembled {assembly[-1] * 1000:.0f} ms after the visit ended", flush=True)

    summary = {
        "url": url, "runs": args.runs, "seconds": args.seconds, "connections": args.connections,
        "rps_tracing_off": statistics.median(off), "rps_tracing_on": statistics.median(on),
        "ratio_on_over_off": statistics.median(on) / statistics.median(off),
        # each run's on over its own off, a few seconds apart: the machine's drift between runs
        # (other tenants) cancels out of each pair
        "ratio_paired_median": statistics.median(a / b for a, b in zip(on, off)),
        "rps_kernel_tracer_on": statistics.median(kernel),
        "ratio_kernel_tracer_over_off": statistics.median(kernel) / statistics.median(off),
        "collector_records_per_s": statistics.median(offered),
        "collector_capacity_records_per_s": capacity["records_per_s"], "ingest": capacity,
        "visit_end_to_trace_ms": statistics.median(assembly) * 1000,
        "idle_agents_cpu_ms_per_s": idle * 1000,
        "traced_agents_cpu_cores": statistics.median(agents_cpu),
        "traced_collector_cpu_cores": statistics.median(collector_cpu),
        "raw": {"off": off, "kernel": kernel, "on": on, "offered": offered, "assembly_s": assembly,
                "agents_cpu": agents_cpu, "collector_cpu": collector_cpu},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{url}, medians of {args.runs} runs of {args.seconds} s, {args.connections} connections")
    print(f"  request path, tracing off        {summary['rps_tracing_off']:9.0f} req/s")
    print(f"  request path, tracing on         {summary['rps_tracing_on']:9.0f} req/s")
    print(f"  ratio on / off                   {summary['ratio_on_over_off']:9.2f} "
          f"(median of each run's own ratio: {summary['ratio_paired_median']:.2f})")
    print(f"  kernel drop tracer alone         {summary['rps_kernel_tracer_on']:9.0f} req/s "
          f"({summary['ratio_kernel_tracer_over_off']:.2f} of off)")
    print(f"  collector ingest (lab offered)   {summary['collector_records_per_s']:9.0f} records/s")
    print(f"  collector capacity (synthetic)   {summary['collector_capacity_records_per_s']:9.0f} records/s "
          f"({capacity['agents']} fake agents, median of {capacity['runs']})")
    print(f"  visit end -> assembled trace     {summary['visit_end_to_trace_ms']:9.0f} ms (median of {args.visits})")
    print(f"  idle agents, all nodes           {summary['idle_agents_cpu_ms_per_s']:9.2f} ms CPU per s")
    print(f"  traced load: agents, all nodes   {summary['traced_agents_cpu_cores']:9.3f} core")
    print(f"  traced load: collector           {summary['traced_collector_cpu_cores']:9.3f} core")
    print(f"  (JSON: {args.json})")


if __name__ == "__main__":
    run_watched(main, "trace")
