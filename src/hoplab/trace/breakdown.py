"""Where one request's time went, from its trace: each server's share, the network's, and the
balancer's queue (a load run's sampled request, `hoplab load --trace-sample`).

A server node is busy with the request in turns: on a connection it serves (the connection's
first data came in to it), from a request's first data in to the last data it sent back before
the next data came in. A TLS handshake is turns too; the round trips between them are the
client's and the network's, not the server's. A node's own time is its busy time that no node
busy after it (behind it: the balancer behind the edge, the replica behind the balancer, the
database behind the replica) covers. The rest of the client's time is the client's and the
network's: its name lookup and its own stack (TLS included), the links and the NAT. The parts
add up to the client's time.

The balancer's queueing is the time from a request's arrival at the balancer to its first data
out to a replica: HAProxy's queue and its connect (its Tw and Tc), part of the balancer's own
time, said apart."""

from __future__ import annotations

from collections import defaultdict

from hoplab.v1 import control_pb2 as pb

CLIENT_SIDE = "client and network"
QUEUEING = "queueing"
QUEUE_TIER = "balancer"  # whose wait before forwarding is the request's queueing


def _measure(intervals: list[tuple[int, int]]) -> int:
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def _minus(intervals: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`intervals` with every part `cut` covers taken out."""
    left = []
    for start, end in intervals:
        pieces = [(start, end)]
        for c_start, c_end in cut:
            pieces = [p for a, b in pieces for p in ((a, min(b, c_start)), (max(a, c_end), b)) if p[1] > p[0]]
        left += pieces
    return left


def busy(hops: list[pb.Hop]) -> dict[str, list[tuple[int, int]]]:
    """node -> its turns on the connections it served (see the module's text)."""
    flows: dict[tuple, list[pb.Record]] = defaultdict(list)
    for hop in hops:
        r = hop.record
        if r.payload_hash and r.direction in ("in", "out"):
            flows[(r.node, frozenset((r.src, r.dst)))].append(r)
    turns: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (node, _), records in flows.items():
        if records[0].direction != "in":
            continue  # a connection it opened: its peer's time, not its own
        start = end = None
        for r in records:
            if r.direction == "in":
                if end is not None:  # the answer was sent: a new turn
                    turns[node].append((start, end))
                    start = end = None
                start = r.ts_ns if start is None else start
            elif start is not None:
                end = r.ts_ns
        if start is not None and end is not None:
            turns[node].append((start, end))
    return dict(turns)


def _queueing(hops: list[pb.Hop], node: str, turns: list[tuple[int, int]]) -> int:
    """From each turn's first data in at `node` to its first data out on another connection."""
    total = 0
    for start, end in turns:
        came = next((h.record for h in hops if h.record.node == node and h.record.ts_ns == start), None)
        if came is None:
            continue
        ends = {came.src, came.dst}
        went = next((h.record.ts_ns for h in hops if h.record.node == node and h.record.direction == "out"
                     and h.record.payload_hash and start <= h.record.ts_ns <= end
                     and {h.record.src, h.record.dst} != ends), None)
        if went is not None:
            total += went - start
    return total


def breakdown(trace: pb.Trace, tiers: dict[str, str], start_ns: int, end_ns: int) -> dict:
    """The request's time (the client's `start_ns`..`end_ns`) split by node and by tier.
    `tiers`: node -> its service's tier (its service.yaml `tier`, else the service's name);
    client nodes and routers are not servers here, so name only the others. Milliseconds."""
    hops = list(trace.hops)
    window = (start_ns, max(end_ns, start_ns))
    turns = {node: [(max(a, window[0]), min(b, window[1])) for a, b in spans if min(b, window[1]) > max(a, window[0])]
             for node, spans in busy(hops).items() if node in tiers}
    turns = {node: spans for node, spans in turns.items() if spans}
    order = sorted(turns, key=lambda node: min(turns[node]))
    nodes, by_tier = [], defaultdict(float)
    for index, node in enumerate(order):
        behind = [span for later in order[index + 1:] for span in turns[later]]
        own = _measure(_minus(turns[node], behind)) / 1e6
        entry = {"node": node, "tier": tiers[node], "busy_ms": round(_measure(turns[node]) / 1e6, 3),
                 "own_ms": round(own, 3)}
        if tiers[node] == QUEUE_TIER:
            queued = min(_queueing(hops, node, turns[node]) / 1e6, own)
            entry["queueing_ms"] = round(queued, 3)
            by_tier[QUEUEING] += queued
            own -= queued
        by_tier[tiers[node]] += own
        nodes.append(entry)
    total = (window[1] - window[0]) / 1e6
    served = _measure([span for spans in turns.values() for span in spans]) / 1e6
    parts = {CLIENT_SIDE: total - served, **by_tier}
    return {"total_ms": round(total, 3), "nodes": nodes,
            "tiers": [{"tier": name, "ms": round(ms, 3), "share": round(ms / total, 4) if total else 0.0}
                      for name, ms in parts.items()]}
