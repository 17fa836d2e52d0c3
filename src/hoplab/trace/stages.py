"""The story a trace's hops tell, as stages: lease, name lookup, ARP, connect, TLS, request,
server work, response, close, datagrams (a UDP exchange that is neither DNS nor DHCP), drop
where the kernel dropped a packet, and bind where it refused a server its port. Each is computed from the hops themselves (protocol, TCP flags,
summary, the node that saw them), so it holds for any topology:
- the client is the first client node with a hop; its connection is its first SYN out;
- the edge is the last node the SYN reached; routers are the nodes with forwarded hops;
- the request is the client's first application data out after the handshake; the response
  runs from the edge's first data back on that connection to the client's last data in; server
  work is every hop behind the edge (neither client, edge nor router) in between.
A stage spans its first to its last hop. Stages may overlap, and one that did not happen is
left out (a page the edge had cached has no server work)."""

from __future__ import annotations

from collections.abc import Iterable

from hoplab.v1 import control_pb2 as pb

ORDER = ("lease", "lookup", "arp", "connect", "tls", "request", "server work", "response", "close", "datagrams",
         "drop", "bind")
HANDSHAKE_WORDS = ("ClientHello", "ServerHello", "handshake", "ChangeCipherSpec", "Certificate", "Finished")


def _app_data(hop: pb.Hop) -> bool:
    """A segment carrying application bytes that are not the TLS handshake. Decrypted, TLS
    says so itself (TLS 1.3 sends its Finished as application data on the wire)."""
    if hop.HasField("decrypted"):
        return any(part.startswith(("HTTP", "application data")) for part in hop.decrypted.summary.split(" + "))
    summary = hop.record.summary
    return bool(hop.record.tcp_flags) and ("application data" in summary or summary.startswith(("HTTP", "SQL"))) \
        and not any(word in summary for word in HANDSHAKE_WORDS)


def _span(name: str, hops: list[pb.Hop], indexes: Iterable[int], note: str = "") -> pb.Stage | None:
    indexes = sorted(set(indexes))
    if not indexes:
        return None
    first, last = indexes[0], indexes[-1]
    return pb.Stage(name=name, start_ns=hops[first].record.ts_ns, end_ns=hops[last].record.ts_ns,
                    first_hop=first, last_hop=last, hops=len(indexes), note=note)


def stages(hops: list[pb.Hop], client_nodes: set[str]) -> list[pb.Stage]:
    if not hops:
        return []
    client = next((h.record.node for h in hops if h.record.node in client_nodes), hops[0].record.node)
    by_proto = {name: [i for i, h in enumerate(hops) if h.record.proto == proto]
                for name, proto in (("lease", "dhcp"), ("lookup", "dns"))}
    found = [_span(name, hops, indexes) for name, indexes in by_proto.items()]
    # ARP: one stage per address asked for (the DHCP server's for a renewal, then the gateway's)
    asked: dict[str, list[int]] = {}
    for i, h in enumerate(hops):
        if h.record.proto == "arp":
            target = h.record.dst if h.record.summary.startswith("ARP who-has") else h.record.src
            asked.setdefault(target, []).append(i)
    found += [_span("arp", hops, indexes, f"who has {target}") for target, indexes in asked.items()]
    # A connectionless exchange (the game's moves and answers): its datagrams, wherever seen
    datagrams = [i for i, h in enumerate(hops) if h.record.proto == "udp" and h.record.direction != "bind"]
    found.append(_span("datagrams", hops, datagrams, "UDP: no handshake, and nobody sends a lost datagram again"))
    dropped = [i for i, h in enumerate(hops) if h.record.direction == "drop"]
    reasons = sorted({hops[i].record.keys.get("drop_reason", "") for i in dropped})
    found.append(_span("drop", hops, dropped, ", ".join(r for r in reasons if r)))
    refused = [i for i, h in enumerate(hops) if h.record.direction == "bind"]
    errors = sorted({f"{hops[i].record.keys.get('bind_error', '')} on {hops[i].record.src}" for i in refused})
    found.append(_span("bind", hops, refused, "a server could not take its port: " + ", ".join(errors)))
    syn = next((i for i, h in enumerate(hops) if h.record.node == client and h.record.direction == "out"
                and h.record.tcp_flags == "SYN"), None)
    if syn is not None:
        found += _connection_stages(hops, client, syn)
    else:  # a request on a connection opened before it (a load run's sample, on a keep-alive connection)
        sent = next((i for i, h in enumerate(hops) if h.record.node == client and h.record.direction == "out"
                     and _app_data(h)), None)
        if sent is not None:
            found += _connection_stages(hops, client, sent)
    done = [s for s in found if s is not None]
    return sorted(done, key=lambda s: (s.start_ns, ORDER.index(s.name)))


def _connection_stages(hops: list[pb.Hop], client: str, syn: int) -> list[pb.Stage | None]:
    """The stages of the client's connection from its first packet out: its SYN, or (a
    connection already open) its request."""
    conn = hops[syn].record
    opened = conn.tcp_flags == "SYN"
    ends = {conn.src, conn.dst}
    ours = [i for i, h in enumerate(hops) if h.record.node == client and {h.record.src, h.record.dst} == ends]
    synack = next((i for i in ours if hops[i].record.tcp_flags == "SYN,ACK"), None)
    acked = next((i for i in ours if synack is not None and i > synack and hops[i].record.direction == "out"), synack)
    # The edge: where the SYN was last seen arriving (a router on the way sees it arrive too).
    same = (conn.tcp_flags, conn.tcp_seq, conn.payload_hash)
    arrivals = [h.record.node for h in hops[syn:] if h.record.direction == "in" and h.record.node != client
                and h.record.dst == conn.dst and (h.record.tcp_flags, h.record.tcp_seq, h.record.payload_hash) == same]
    edge = arrivals[-1] if arrivals else ""
    routers = {h.record.node for h in hops if h.HasField("forwarded") or h.HasField("translated")}
    out: list[pb.Stage | None] = []
    if opened:
        out.append(_span("connect", hops, [syn, acked] if acked is not None else [syn], f"to {conn.dst}"))
    hello = next((i for i in ours if "ClientHello" in hops[i].record.summary), None)
    request = next((i for i in ours if hops[i].record.direction == "out" and _app_data(hops[i])), None)
    if hello is not None:
        handshake = [i for i in ours if i >= hello and (request is None or i < request)]
        out.append(_span("tls", hops, handshake))
    if request is not None:
        reached = next((i for i in range(request, len(hops)) if hops[i].record.node == edge
                        and hops[i].record.direction == "in" and _app_data(hops[i])), None)
        out.append(_span("request", hops, [request] + ([reached] if reached is not None else [])))
        start = reached if reached is not None else request
        # The response starts when the edge sends data back on the client's connection; the
        # server work is what happened behind the edge until then.
        back = next((i for i in range(start, len(hops)) if hops[i].record.node == edge
                     and hops[i].record.direction == "out" and hops[i].record.src == conn.dst
                     and _app_data(hops[i])), None)
        until = back if back is not None else len(hops)
        out.append(_span("server work", hops, [i for i in range(start, until)
                                               if hops[i].record.node not in {client, edge, *routers}]))
        received = [i for i in ours if i > start and hops[i].record.direction == "in" and _app_data(hops[i])]
        out.append(_span("response", hops, ([back] if back is not None else []) + received))
    close = next((i for i in ours if any(flag in hops[i].record.tcp_flags for flag in ("FIN", "RST"))), None)
    if close is not None:
        out.append(_span("close", hops, [close, ours[-1]]))
    return out
