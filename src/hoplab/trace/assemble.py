"""Assembles one visit's trace from everything a capture recorded on every node.

Packets are grouped into flows per node (one node's view of one conversation). A flow belongs
to the trace when
  - one of its packets carries the visit's W3C trace id (the plaintext HTTP requests between
    edge, balancer and web replicas, and SQL the web app tags), or
  - a proxy's access log says the connection carried it (the edge's TLS side), or
  - it is a client node's own traffic (the capture is bounded to the visit), or
  - it shares a packet with a flow already in: the same TCP sequence number and payload hash,
    or the same UDP payload, seen on another node or interface. That follows a packet across
    routed hops and across the NAT, which rewrites addresses and ports but not those.
Hops are the packets of the chosen flows in kernel-timestamp order (one clock for every
namespace). Each hop's link and network layers (MACs, TTL, IP id) are decoded from its frame
here, once. On a router, a packet seen entering one interface and leaving another is a routed
hop: the hop out carries the MACs and TTL it came in with (the router rewrote the MACs and
took one off the TTL); when its addresses changed too it is a NAT hop and carries the tuple
before and after. A connection a node opened while it served one of the trace's (a proxy's attempts to reach an
upstream that is down: no trace id ever crosses) belongs to the trace too, tied by timing.
Drops the host's kernel tracer saw (skb:kfree_skb, with the kernel's reason) of the trace's
packets join as hops of their own, direction "drop"; so does a bind() the kernel refused at a
node on a port the trace's packets went to there (a server that cannot take its port: direction
"bind"). A SYN a server took is marked with the
process that accept()ed the connection: the kernel tracer's word when it saw the accept (exact
pid, thread and command), else the server's socket snapshot at the capture's end. TLS sessions
whose keys the client logged are decrypted at every hop that saw them (`tls`). Last, the hops
are grouped into the story's stages (`stages`)."""

from __future__ import annotations

from collections import defaultdict

from hoplab.control.sockets import accepted_by, refused_reason
from hoplab.trace.decode import decode
from hoplab.trace.stages import stages
from hoplab.trace.tls import KeyLog, decrypt
from hoplab.v1 import control_pb2 as pb


def _l4(record) -> str:
    return "tcp" if record.tcp_flags else "udp" if ":" in record.src else record.proto


def flow_key(record) -> tuple:
    return (record.node, _l4(record), frozenset((record.src, record.dst)))


def packet_key(record) -> tuple | None:
    """What stays the same when a router or NAT forwards the packet."""
    if record.tcp_flags:
        return ("tcp", record.tcp_seq, record.tcp_flags, record.payload_hash)
    if record.payload_hash:
        return ("udp", record.payload_hash)
    return None


def in_time_order(records) -> list:
    """The records by kernel time. A node's records do not come in order: what it received
    came in its own agent's batches, and what it sent is made out of its arrival at a peer, in
    the peer's batches (`server.sender_of`)."""
    return sorted(records, key=lambda r: r.ts_ns)


def assemble(trace_id: str, url: str, capture_id: str, records, client_nodes: set[str],
             translations=(), logs: dict | None = None, sockets: dict | None = None, drops=(),
             accepts=(), key_log: KeyLog | None = None, binds=()) -> pb.Trace:
    flows: dict[tuple, list] = defaultdict(list)
    by_packet: dict[tuple, set] = defaultdict(set)
    for record in in_time_order(records):
        key = flow_key(record)
        flows[key].append(record)
        pk = packet_key(record)
        if pk:
            by_packet[pk].add(key)
    # Connections a proxy's log says carried this trace (e.g. the edge's TLS side, opaque on the wire)
    logged = {(node, frozenset((line.src, line.dst))) for node, lines in (logs or {}).items() for line in lines
              if trace_id in line.traceparent}
    chosen = {key for key, recs in flows.items()
              if key[0] in client_nodes or (key[0], key[2]) in logged
              or any(trace_id in r.keys.get("traceparent", "") for r in recs)}
    _follow_packets(chosen, flows, by_packet)
    # A proxy that fails to reach its upstream never sends the trace id on: the connections it
    # opened while serving a request of the trace belong to it all the same (tied by timing).
    windows = _serving(chosen, flows)
    opened = {key for key, recs in flows.items() if key not in chosen and recs[0].direction == "out"
              and recs[0].tcp_flags == "SYN" and _within(windows, key[0], recs[0].ts_ns)}
    if opened:
        chosen |= opened
        _follow_packets(chosen, flows, by_packet)
    # The kernel's drops of the trace's packets: of a chosen flow, or at a node while it served
    # the trace (a packet dropped on its way out is never captured, so it has no flow to match).
    ends = {key[2] for key in chosen}
    ours = [d for d in drops if frozenset((d.src, d.dst)) in ends or _within(windows, d.node, d.ts_ns)]
    # A refused bind() on a port the trace's packets used at that node: the server that should
    # have answered them could not take its port.
    ports = {(key[0], key[1], endpoint.rpartition(":")[2]) for key in chosen for endpoint in key[2]}
    refused = [b for b in binds if (b.node, b.proto, b.address.rpartition(":")[2]) in ports]
    picked = sorted([*(r for key in chosen for r in flows[key]), *map(drop_record, ours), *map(bind_record, refused)],
                    key=lambda r: r.ts_ns)
    trace = _trace(trace_id, url, capture_id, picked, client_nodes, translations, sockets, accepts, key_log)
    _note_timed(trace.stages, [flows[key][0] for key in opened])
    return trace


def assemble_request(trace_id: str, url: str, capture_id: str, records, window: tuple[int, int],
                     client_nodes: set[str], translations=(), logs: dict | None = None, sockets: dict | None = None,
                     key_log: KeyLog | None = None) -> pb.Trace:
    """One request of the many a capture saw (a load run's sample): `window` is its client's
    start and end. Connections are shared there (a user's keep-alive connection, the edge's
    upstream pool, the web's pooled database connection), so a flow is not the unit: its hops
    are the slice of each connection that carried this request, and the same packets where
    routers and the NAT saw them. At the edge, the TLS connection its access log names, within
    the window (one user's connection carries one request at a time); behind it, on each
    connection a packet of which carries the trace id, that request's exchange (`exchange`)."""
    start, end = window
    flows: dict[tuple, list] = defaultdict(list)
    by_packet: dict[tuple, list] = defaultdict(list)
    for record in in_time_order(records):
        flows[flow_key(record)].append(record)
        pk = packet_key(record)
        if pk:
            by_packet[pk].append(record)
    logged = {(node, frozenset((line.src, line.dst))) for node, lines in (logs or {}).items() for line in lines
              if trace_id in line.traceparent}
    picked: dict[int, object] = {}
    for key, recs in flows.items():
        if (key[0], key[2]) in logged:
            picked.update((id(r), r) for r in recs if start <= r.ts_ns <= end)
        elif any(trace_id in r.keys.get("traceparent", "") for r in recs):
            picked.update((id(r), r) for r in exchange(recs, trace_id))
    # the same packets where others saw them (the client, the router on both sides of the NAT)
    for record in list(picked.values()):
        pk = packet_key(record)
        for other in by_packet.get(pk, ()) if pk else ():
            if start <= other.ts_ns <= end:
                picked.setdefault(id(other), other)
    ordered = sorted(picked.values(), key=lambda r: r.ts_ns)
    return _trace(trace_id, url, capture_id, ordered, client_nodes, translations, sockets, (), key_log)


def exchange(records: list, trace_id: str) -> list:
    """One request and its answer on a connection that carries many in turn (an HTTP/1.1
    keep-alive connection, a pooled SQL connection): from the first packet carrying the trace id
    (from the connection's SYN, when it was opened for this request) to the asker's next data
    after the last answer to it, which starts the next request."""
    marked = [i for i, r in enumerate(records) if trace_id in r.keys.get("traceparent", "")]
    if not marked:
        return []
    first, last = marked[0], marked[-1]
    asker = (records[first].src, records[first].dst)
    if not any(r.payload_hash for r in records[:first]):
        first = 0  # opened for this request: its handshake is part of it
    answered, end = False, len(records)
    for index in range(last + 1, len(records)):
        record = records[index]
        if not record.payload_hash:
            continue
        if (record.src, record.dst) == asker:
            if answered:
                end = index
                break
        else:
            answered = True
    return records[first:end]


def _trace(trace_id: str, url: str, capture_id: str, picked: list, client_nodes: set[str], translations,
           sockets: dict | None, accepts, key_log: KeyLog | None) -> pb.Trace:
    """The trace of the records picked, in time order: each hop's layers, routing and NAT,
    the server that took each SYN, what TLS said, the status and the stages."""
    hops = [pb.Hop(record=r, layers=layers(r)) for r in picked]
    _mark_routing(hops, translations)
    _mark_servers(hops, sockets or {}, accepts)
    gaps = _decrypt(hops, key_log) if key_log else []
    status = next((int(keys["http_status"]) for h in reversed(hops)
                   for keys in (h.record.keys, h.decrypted.keys) if keys.get("http_status", "").isdigit()), 0)
    return pb.Trace(trace_id=trace_id, url=url, status=status, hops=hops, capture_id=capture_id,
                    stages=stages(hops, client_nodes), gaps=gaps, tls_keylog=key_log.text if key_log else "")


def _note_timed(story: list, firsts: list) -> None:
    """Connections tied by timing alone (their node did not forward `traceparent`: a proxy whose
    upstream was down, a service that talks to its own database or cache without it) are named
    on the stage they fall in (server work first), so the trace says how it knows."""
    for first in sorted(firsts, key=lambda r: r.ts_ns):
        said = f"tied by timing, no traceparent: {first.node} {first.src} -> {first.dst}"
        inside = [s for s in story if s.start_ns <= first.ts_ns <= s.end_ns]
        before = [s for s in story if s.start_ns <= first.ts_ns]
        stage = next((s for s in inside if s.name == "server work"), None) or next(iter(inside), None) \
            or (before[-1] if before else None)
        if stage is not None and said not in stage.note:
            stage.note = f"{stage.note}; {said}" if stage.note else said


def _decrypt(hops: list, key_log: KeyLog) -> list[pb.Gap]:
    """Each hop a decrypted TLS record ended in gets what it said; a session the key log
    should have opened and did not is a gap (the story at those hops stays sealed)."""
    readout = decrypt(hops, key_log)
    for index, plain in readout.hops.items():
        hops[index].decrypted.CopyFrom(pb.Decrypted(summary=plain.summary, keys=plain.keys, cipher=plain.cipher))
    return [pb.Gap(node=node, reason=f"TLS not decrypted: {reason}") for node, reason in readout.problems]


def _follow_packets(chosen: set, flows: dict, by_packet: dict) -> None:
    """Add every flow that shares a packet with a chosen one, on any node (across routers and
    the NAT), until nothing new comes in."""
    frontier = list(chosen)
    while frontier:
        key = frontier.pop()
        for record in flows[key]:
            pk = packet_key(record)
            for other in by_packet.get(pk, ()) if pk else ():
                if other not in chosen:
                    chosen.add(other)
                    frontier.append(other)


def _serving(chosen: set, flows: dict) -> dict[str, list[tuple[int, int]]]:
    """node -> the times it served a chosen connection it had accepted (from that connection's
    first packet in to its last packet out)."""
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key in chosen:
        recs = flows[key]
        if recs and recs[0].direction == "in" and recs[0].tcp_flags == "SYN":
            outs = [r.ts_ns for r in recs if r.direction == "out"]
            if outs:
                windows[key[0]].append((recs[0].ts_ns, max(outs)))
    return windows


def _within(windows: dict, node: str, ts_ns: int) -> bool:
    return any(start <= ts_ns <= end for start, end in windows.get(node, ()))


def _split(endpoint: str) -> tuple[str, int] | None:
    address, _, port = endpoint.rpartition(":")
    return (address, int(port)) if address and port.isdigit() else None


KERNEL_ACCEPT = "kernel accept probe"
SOCKET_SNAPSHOT = "socket snapshot"
# An accept follows its SYN by a whole handshake; the slack only covers the tracer's clock
# conversion (one CLOCK_REALTIME - CLOCK_MONOTONIC offset, sampled when it started).
ACCEPT_SLACK_NS = 1_000_000


def _mark_servers(hops: list, sockets: dict, accepts=()) -> None:
    """On a SYN a server took, the listener and the process that accepted the connection: from
    the kernel's accept probe when it saw that accept() (the exact process and thread, the
    listener's backlog and accept queue at that moment), else from the node's socket snapshot
    at the capture's end (the holder of the socket if it was still open, else the listener's
    owners). On the RST a server answered a SYN with (not one that closes an open connection),
    why (no listener), from the snapshot."""
    taken: dict[tuple, list] = defaultdict(list)
    for accept in accepts:
        taken[(accept.node, accept.local, accept.remote)].append(accept)
    # (node, its end, the peer's end) of SYNs a node received and had not answered yet: only a
    # RST that answers one of those is a refusal (a RST on an open connection is a close)
    unanswered: set[tuple] = set()
    for hop in hops:
        r = hop.record
        view = sockets.get(r.node)
        ends = (_split(r.src), _split(r.dst))
        if None in ends:
            continue
        if r.tcp_flags == "SYN" and r.direction == "in":
            unanswered.add((r.node, r.dst, r.src))
        elif r.tcp_flags == "SYN,ACK" and r.direction == "out":
            unanswered.discard((r.node, r.src, r.dst))
        if r.tcp_flags == "SYN" and r.direction == "in":
            (client_ip, client_port), (server_ip, server_port) = ends
            kernel = min((a for a in taken.get((r.node, r.dst, r.src), ()) if a.ts_ns >= r.ts_ns - ACCEPT_SLACK_NS),
                         key=lambda a: a.ts_ns, default=None)  # the first accept of this tuple after the SYN
            found = accepted_by((server_ip, server_port, client_ip, client_port), view) if view else None
            if found or kernel:
                hop.accepted.CopyFrom(_accepted(found, view, kernel))
        elif (view is not None and "RST" in r.tcp_flags and r.direction == "out"
              and (r.node, r.src, r.dst) in unanswered):
            (server_ip, server_port), _ = ends
            reason = refused_reason(server_ip, server_port, view)
            if reason:
                hop.refused = reason


def _accepted(found: dict | None, view: dict | None, kernel: pb.KernelAccept | None = None) -> pb.Accepted:
    """The snapshot's answer, then what the kernel saw at accept() over it: the process and
    thread that called it and the listener's state at that moment."""
    accepted = pb.Accepted(source=SOCKET_SNAPSHOT)
    if found:
        owners = ", ".join(f"{o['command']} {o['pid']}" for o in found["listener_owners"])
        accepted = pb.Accepted(listener=found["listener"], backlog=found["backlog"] or 0,
                               accept_queue=found["accept_queue"] or 0, syn_queue=found["syn_queue"] or 0,
                               pid=found["pid"] or 0, process=found["process"] or "", status=found["status"],
                               listeners=owners, listen_overflows=view["counters"].get("ListenOverflows", 0),
                               source=SOCKET_SNAPSHOT)
    if kernel:
        accepted.source, accepted.status = KERNEL_ACCEPT, "accepted"
        accepted.pid, accepted.process, accepted.tid, accepted.accepted_ns = (kernel.pid, kernel.process, kernel.tid,
                                                                              kernel.ts_ns)
        if kernel.listener:  # not known when the thread was already in accept() as the tracer attached
            accepted.listener, accepted.backlog, accepted.accept_queue = (kernel.listener, kernel.backlog,
                                                                          kernel.accept_queue)
    return accepted


def drop_record(drop: pb.KernelDrop) -> pb.Record:
    """A kernel drop as a hop of its own, at the node where the packet died: every drop of a
    lab packet while the visit was traced (the tracer's filter keeps to the lab's subnets)."""
    where = f" in {drop.location}" if drop.location else ""
    return pb.Record(node=drop.node or "(host)", iface=drop.iface, direction="drop", ts_ns=drop.ts_ns,
                     proto=drop.proto, src=drop.src, dst=drop.dst,
                     summary=f"DROPPED: {drop.words} ({drop.reason}{where})",
                     keys={"drop_reason": drop.reason, "drop_location": drop.location})


def bind_record(failed: pb.KernelBind) -> pb.Record:
    """A refused bind() as a hop of its own, at the node whose process asked."""
    return pb.Record(node=failed.node, direction="bind", ts_ns=failed.ts_ns, proto=failed.proto, src=failed.address,
                     summary=f"REFUSED: {failed.words} ({failed.error}) for {failed.address}"
                             f"{'/' + failed.proto if failed.proto else ''}, asked by {failed.process} (pid {failed.pid})",
                     keys={"bind_error": failed.error, "process": failed.process, "pid": str(failed.pid)})


def _endpoint(ip: str | None, port: int | None, mac: str | None) -> str:
    if ip and port is not None:
        return f"{ip}:{port}"
    return ip or mac or ""


def complete(record: pb.Record) -> None:
    """A record its agent shipped raw (a frame, no protocol yet) gets what the decoder reads in
    the frame: protocol, addresses and ports, summary, TCP flags and sequence, IP id, payload
    hash and correlation keys. A record that has them already is left as it is."""
    if record.proto or not record.frame:
        return
    packet = decode(record.frame)
    record.proto, record.summary = packet.proto, packet.summary
    record.src = _endpoint(packet.src_ip, packet.src_port, packet.eth_src)
    record.dst = _endpoint(packet.dst_ip, packet.dst_port, packet.eth_dst)
    record.tcp_flags, record.tcp_seq = packet.tcp_flags or "", packet.tcp_seq or 0
    record.ip_id, record.payload_hash = packet.ip_id or 0, packet.payload_hash or ""
    record.keys.update({k: str(v) for k, v in packet.keys.items()})


def layers(record) -> pb.Layers:
    packet = decode(record.frame)
    return pb.Layers(eth_src=packet.eth_src or "", eth_dst=packet.eth_dst or "", ttl=packet.ttl or 0,
                     ip_id=packet.ip_id or 0)


def _mark_routing(hops: list, translations=()) -> None:
    """Mark routed hops with what they came in as, and NAT hops with the tuple before and
    after. The router's conntrack table says the translation first-hand; where it has no entry
    (already expired), a packet seen entering one interface and leaving another with other
    addresses says the same."""
    by_tuple: dict[tuple[str, str], pb.Translation] = {}
    for t in translations:
        by_tuple[(t.after.src, t.after.dst)] = t  # leaving translated
        by_tuple[(t.before.dst, t.before.src)] = pb.Translation(  # its replies, translated back
            before=pb.Tuple(src=t.after.dst, dst=t.after.src, proto=t.after.proto),
            after=pb.Tuple(src=t.before.dst, dst=t.before.src, proto=t.before.proto))
    entering: dict[tuple, pb.Hop] = {}
    for hop in hops:
        pk = packet_key(hop.record)
        if hop.record.direction == "in":
            if pk:
                entering[(hop.record.node, pk)] = hop
            continue
        before = entering.get((hop.record.node, pk)) if pk else None
        if before and before.record.iface != hop.record.iface:
            hop.forwarded.CopyFrom(pb.Forwarding(iface=before.record.iface, eth_src=before.layers.eth_src,
                                                 eth_dst=before.layers.eth_dst, ttl=before.layers.ttl))
        known = by_tuple.get((hop.record.src, hop.record.dst))
        if known is not None:
            hop.translated.CopyFrom(known)
            continue
        if (before and before.record.iface != hop.record.iface
                and (before.record.src, before.record.dst) != (hop.record.src, hop.record.dst)):
            hop.translated.CopyFrom(pb.Translation(
                before=pb.Tuple(src=before.record.src, dst=before.record.dst, proto=before.record.proto),
                after=pb.Tuple(src=hop.record.src, dst=hop.record.dst, proto=hop.record.proto)))
