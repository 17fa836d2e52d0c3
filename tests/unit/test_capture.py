"""The agent's capture loop (hoplab.control.capture) on real AF_PACKET sockets, in a network
namespace of this test's own (its loopback only: nothing leaves it): the ring hands packets over
in blocks (many per wake-up), shipped as the kernel wrote them; frames are cut to the snap length and keep their length on the
wire and the kernel's timestamp, what came just before the stop is still read, the packet
bound holds, and a ring that takes arrivals only takes none of what leaves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hoplab.control.capture import SNAPLEN

SRC = str(Path(__file__).resolve().parents[2] / "src")
PAYLOAD = 5000  # a datagram longer than the snap length
SENT = 20

SCRIPT = """
import json, socket, sys, threading, time
from hoplab.control.capture import CaptureStats, batches, packets

sent, payload, bound, arrivals = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def send_and_stop():  # the capture stops right away: what the kernel has not handed over yet
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(sent):
            s.sendto(bytes([i]) * payload, ("127.0.0.1", 9))
    stop.set()

stats, stop, lists = CaptureStats(), threading.Event(), []
started = time.time_ns()
for read in batches(["lo"], "udp port 9", 5, bound, stop, on_armed=send_and_stop, stats=stats,
                    arrivals_only=frozenset(arrivals.split())):
    lists.append([{"iface": b.iface, "direction": p.direction, "pkttype": p.pkttype, "ts_ns": p.ts_ns, "captured": len(p.frame),
                   "length": p.length, "first": p.frame[-1]} for b in read for p in packets(b.data, b.count)])
print(json.dumps({"lists": lists, "started": started, "ended": time.time_ns(), "hit_bound": stats.hit_bound,
                  "kernel_drops": stats.kernel_drops}))
"""

needs_namespaces = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tcpdump"),
                                      reason="needs root, ip and tcpdump (AF_PACKET in a namespace)")


@pytest.fixture(scope="module")
def namespace():
    name = f"hoplab-test-cap-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def capture(namespace: str, bound: int, arrivals_only: str = "") -> dict:
    result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", SCRIPT, str(SENT), str(PAYLOAD),
                             str(bound), arrivals_only], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_namespaces
def test_the_ring_hands_packets_over_in_blocks_cut_to_the_snap_length(namespace):
    seen = capture(namespace, bound=1000)
    frames = [f for read in seen["lists"] for f in read]
    # on loopback each datagram is seen leaving and arriving
    assert sorted(f["direction"] for f in frames) == ["in"] * SENT + ["out"] * SENT
    assert max(len(read) for read in seen["lists"]) > 1, "one frame per wake-up: not handed over in blocks"
    assert {f["captured"] for f in frames} == {SNAPLEN} and {f["iface"] for f in frames} == {"lo"}
    assert {f["length"] for f in frames} == {14 + 20 + 8 + PAYLOAD}, "not the length on the wire"
    assert sorted(f["first"] for f in frames) == sorted(list(range(SENT)) * 2)
    assert all(seen["started"] <= f["ts_ns"] <= seen["ended"] for f in frames), "not the kernel's timestamps"
    assert (seen["hit_bound"], seen["kernel_drops"]) == (False, 0)


@needs_namespaces
def test_the_packet_bound_holds_within_a_drained_batch(namespace):
    seen = capture(namespace, bound=7)
    assert sum(map(len, seen["lists"])) == 7
    assert seen["hit_bound"] is True


@needs_namespaces
def test_a_ring_that_takes_arrivals_only_takes_each_datagram_once(namespace):
    seen = capture(namespace, bound=1000, arrivals_only="lo")
    frames = [f for read in seen["lists"] for f in read]
    assert [f["direction"] for f in frames] == ["in"] * SENT, "a departure was taken"
    assert sorted(f["first"] for f in frames) == list(range(SENT))
    assert {f["pkttype"] for f in frames} == {0}, "loopback's arrivals are to this host (PACKET_HOST)"
