"""Collector ingest benchmark, no lab needed: the control service runs in this process on
loopback ports, and N fake agents (processes of their own, so their CPU is not the collector's)
attach to it as real agents do. Each capture, every fake agent arms, streams the batches the
real agent would ship (`hoplab.control.agent.batch`: ring blocks as the kernel lays them out,
`capture.pack`) for real frames -- those of the traced visits stored under tests/data/captures,
cycled -- as fast as the collector takes them, and reports its end. The figure is records the
collector took per second, from the capture's start to the last agent's end; the median of
several runs. Beside it, the rate at which the collector then reads the blocks into Records,
which it does once, when a trace or a stream first needs them. Only the collector's side is
measured: each agent builds its messages once, before it attaches.

    .venv/bin/python bench/bench_ingest.py [--agents N] [--records R] [--runs K]
`make bench-trace` runs it first (`bench_trace.ingest`).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from hoplab.control import server
from hoplab.control.agent import batch
from hoplab.control.capture import BATCH_BYTES, Packet, pack
from hoplab.paths import BUILD_DIR, PROJECT_ROOT
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

CAPTURES = sorted((PROJECT_ROOT / "tests" / "data" / "captures").glob("*.pcapng"))
PER_BLOCK = 24  # packets in a ring block (a busy interface's 32 KiB block holds about this many)
WAIT_S = 120  # a run that takes longer has failed


def real_frames() -> list[Packet]:
    """Every frame of the stored visits (pcapng Enhanced Packet Blocks), with its interface
    and direction as the trace wrote them (one interface per visit file is enough here)."""
    found = []
    for path in CAPTURES:
        data, off = path.read_bytes(), 0
        while off < len(data):
            kind, length = struct.unpack_from("<II", data, off)
            if kind == 6:
                high, low, captured, original = struct.unpack_from("<IIII", data, off + 12)
                frame = data[off + 28:off + 28 + captured]
                ts_ns = (high << 32) | low  # hoplab writes nanoseconds (if_tsresol 9)
                found.append(Packet(ts_ns, "in" if len(found) % 2 else "out", frame, original))
            off += length
    if not found:
        raise SystemExit(f"bench-ingest: no frames in {', '.join(map(str, CAPTURES)) or 'tests/data/captures'}")
    return found


# ------------------------------------------------------------ a fake agent (its own process)

PLACEHOLDER = "@capture-id@"  # as long as a capture id: swapped for the real one in the wire bytes


def fake_agent(target: str, node: str, records: int) -> None:
    """Attach as `node`; on every StartCommand arm, send `records` records, then the end. The
    messages are built (and their frames decoded, where the agent does that) before attaching:
    a start only swaps the capture id into their bytes."""
    frames = real_frames()
    blocks = [pack("origin", [frames[(start + i) % len(frames)] for i in range(min(PER_BLOCK, records - start))])
              for start in range(0, records, PER_BLOCK)]
    built, pending, size = [], [], 0
    for block in blocks:  # as the agent's run_capture groups them
        if pending and size + len(block.data) > BATCH_BYTES:
            built.append(batch(PLACEHOLDER, pending).SerializeToString())
            pending, size = [], 0
        pending.append(block)
        size += len(block.data)
    if pending:
        built.append(batch(PLACEHOLDER, pending).SerializeToString())
    starts: queue.Queue = queue.Queue()

    def messages():
        yield pb.AgentMessage(hello=pb.Hello(node=node, service="web")).SerializeToString()
        while True:
            capture_id = starts.get()
            if capture_id is None:
                return
            yield pb.AgentMessage(armed=pb.CaptureArmed(capture_id=capture_id)).SerializeToString()
            for wire in built:
                yield wire.replace(PLACEHOLDER.encode(), capture_id.encode())
            yield pb.AgentMessage(ended=pb.CaptureEnded(capture_id=capture_id, records=records)).SerializeToString()

    with grpc.insecure_channel(target) as channel:
        attach = channel.stream_stream("/hoplab.v1.AgentHub/Attach", request_serializer=None,
                                       response_deserializer=pb.AgentCommand.FromString)
        try:
            for command in attach(messages()):
                if command.HasField("start"):
                    starts.put(command.start.capture_id)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                print(f"fake agent {node}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        starts.put(None)


# ------------------------------------------------------------ the collector (this process)

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ingest(agents: int = 8, records: int = 25_000, runs: int = 5, log=print) -> dict:
    """Runs the collector here and `agents` fake agents beside it; records/s of each run."""
    agents_port, api_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as scratch:
        token_file = Path(scratch) / "token"
        token_file.write_text("bench\n")
        hub = server.Hub()
        agent_server, api_server = server.serve(f"127.0.0.1:{agents_port}", f"127.0.0.1:{api_port}",
                                                str(token_file), hub=hub)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        nodes = [f"fake{i}" for i in range(agents)]
        procs = [subprocess.Popen([sys.executable, __file__, "--agent", f"127.0.0.1:{agents_port}", node,
                                   str(records)], env=env) for node in nodes]
        channel = grpc.insecure_channel(f"127.0.0.1:{api_port}")
        control = rpc.ControlStub(channel)
        metadata = (("authorization", "Bearer bench"),)
        rates, reads = [], []
        try:
            deadline = time.monotonic() + 120  # each agent builds its messages first
            while len(hub.agents) < agents:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit(f"bench-ingest: {len(hub.agents)} of {agents} fake agents attached")
                time.sleep(0.05)
            for run in range(runs):
                started = time.monotonic()
                capture = control.StartCapture(pb.StartCaptureRequest(
                    nodes=nodes, filter="ip", max_seconds=server.MAX_SECONDS, max_packets=records),
                    metadata=metadata, timeout=60)
                state = hub.captures[capture.id]
                with hub.lock:
                    while state.state == "running" and time.monotonic() < started + WAIT_S:
                        hub.lock.wait(0.05)
                    took = time.monotonic() - started
                    taken, gaps = state.count + state.dropped, dict(state.gaps)
                    reading = time.monotonic()
                    state.read_shipped()
                    reads.append(len(state.records) / (time.monotonic() - reading))
                    del hub.captures[capture.id]
                if state.state == "running" or gaps:
                    raise SystemExit(f"bench-ingest: run {run + 1} did not end cleanly: {gaps or 'still running'}")
                if taken != agents * records:
                    raise SystemExit(f"bench-ingest: the collector took {taken} of {agents * records} records")
                rates.append(taken / took)
                log(f"ingest run {run + 1}/{runs}: {taken} records from {agents} agents in {took:.2f} s: "
                    f"{rates[-1]:9.0f} records/s taken in, {reads[-1]:9.0f} records/s read out of their blocks")
        finally:
            channel.close()
            agent_server.stop(0)
            api_server.stop(0)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
    return {"agents": agents, "records_per_agent": records, "runs": runs,
            "records_per_s": statistics.median(rates), "read_records_per_s": statistics.median(reads),
            "raw": rates, "raw_read": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--records", type=int, default=25_000, help="records per agent per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "ingest.json")
    parser.add_argument("--agent", nargs=3, metavar=("TARGET", "NODE", "RECORDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        target, node, records = args.agent
        fake_agent(target, node, int(records))
        return
    summary = ingest(args.agents, args.records, args.runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ncollector ingest, median of {args.runs} runs: {summary['records_per_s']:.0f} records/s "
          f"({args.agents} agents x {args.records} records); read out of their blocks once: "
          f"{summary['read_records_per_s']:.0f} records/s\n  (JSON: {args.json})")


if __name__ == "__main__":
    main()
