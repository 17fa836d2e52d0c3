"""Renders an assembled trace (hoplab.v1.Trace) for people and programs: a hop table, JSON,
a self-contained HTML page with a sequence diagram, and pcapng for Wireshark and tshark."""

from __future__ import annotations

import html
import json
import struct

from hoplab.v1 import control_pb2 as pb

FORMATS = ("table", "json", "html", "pcapng")
DSB_TLS_KEY_LOG = 0x544C534B  # "TLSK": the secrets type of an NSS key log in a pcapng


def _tuple(t: pb.Tuple) -> dict:
    return {"src": t.src, "dst": t.dst, "proto": t.proto}


def hop_json(hop: pb.Hop) -> dict:
    r = hop.record
    out = {"node": r.node, "iface": r.iface, "direction": r.direction, "ts_ns": r.ts_ns,
           "proto": r.proto, "src": r.src, "dst": r.dst, "summary": r.summary, "length": r.length,
           "tcp_flags": r.tcp_flags, "tcp_seq": r.tcp_seq,
           "eth_src": hop.layers.eth_src, "eth_dst": hop.layers.eth_dst, "ttl": hop.layers.ttl,
           "ip_id": hop.layers.ip_id}
    if hop.HasField("forwarded"):
        f = hop.forwarded
        out["forwarded"] = {"iface": f.iface, "eth_src": f.eth_src, "eth_dst": f.eth_dst, "ttl": f.ttl}
    if hop.HasField("translated"):
        out["translated"] = {"before": _tuple(hop.translated.before), "after": _tuple(hop.translated.after)}
    if hop.HasField("accepted"):
        a = hop.accepted
        out["accepted"] = {"listener": a.listener, "backlog": a.backlog, "accept_queue": a.accept_queue,
                           "syn_queue": a.syn_queue, "pid": a.pid, "process": a.process, "status": a.status,
                           "listeners": a.listeners, "listen_overflows": a.listen_overflows,
                           "source": a.source or "socket snapshot"}
        if a.accepted_ns:
            out["accepted"].update(tid=a.tid, accepted_ns=a.accepted_ns,
                                   after_syn_ms=round((a.accepted_ns - r.ts_ns) / 1e6, 3))
    if hop.refused:
        out["refused"] = hop.refused
    if hop.HasField("decrypted"):
        d = hop.decrypted
        out["decrypted"] = {"summary": d.summary, "cipher": d.cipher, "keys": dict(d.keys)}
    keys = dict(hop.record.keys)
    if keys:
        out["keys"] = keys
    if hop.record.masked:
        out["credentials_masked"] = True
    return out


def stage_json(stage: pb.Stage) -> dict:
    return {"name": stage.name, "start_ns": stage.start_ns, "end_ns": stage.end_ns,
            "duration_ms": round((stage.end_ns - stage.start_ns) / 1e6, 3), "first_hop": stage.first_hop,
            "last_hop": stage.last_hop, "hops": stage.hops, "note": stage.note}


def to_json(trace: pb.Trace) -> dict:
    return {"trace_id": trace.trace_id, "url": trace.url, "status": trace.status,
            "capture_id": trace.capture_id, "complete": not trace.gaps, "kernel_view": trace.kernel_view or "on",
            "gaps": [{"node": g.node, "reason": g.reason} for g in trace.gaps],
            "credentials": {"raw": trace.raw, "masked_frames": trace.masked_frames, "note": credentials_note(trace)},
            "stages": [stage_json(s) for s in trace.stages], "hops": [hop_json(h) for h in trace.hops]}


def nat_note(hop: pb.Hop) -> str:
    if not hop.HasField("translated"):
        return ""
    before, after = hop.translated.before, hop.translated.after
    return f"  [NAT {before.src} > {before.dst}  =>  {after.src} > {after.dst}]"


def routed_note(hop: pb.Hop) -> str:
    """What the router did to the packet besides NAT: new MACs, one less TTL."""
    if not hop.HasField("forwarded"):
        return ""
    f, now = hop.forwarded, hop.layers
    return (f"  [routed {f.iface} > {hop.record.iface}: MAC {f.eth_src} > {f.eth_dst}  =>  {now.eth_src} > "
            f"{now.eth_dst}, TTL {f.ttl} => {now.ttl}]")


def server_note(hop: pb.Hop) -> str:
    """What the server's kernel says: who took the connection, or why it refused it."""
    if hop.refused:
        return f"  [refused: {hop.refused}]"
    if not hop.HasField("accepted"):
        return ""
    a = hop.accepted
    who = f"{a.process} pid {a.pid}" if a.pid else f"one of {a.listeners or 'its processes'} (closed by the end)"
    if a.status == "in_accept_queue":
        who = "nobody yet: waiting in the accept queue"
    if a.accepted_ns:  # the kernel saw the accept() itself
        who += f" (thread {a.tid}, {(a.accepted_ns - hop.record.ts_ns) / 1e6:.3f} ms after the SYN)"
    where = f" on {a.listener}, backlog {a.backlog}, accept queue {a.accept_queue}" if a.listener else ""
    snapshot = (f", SYN queue {a.syn_queue}, listen overflows {a.listen_overflows}"
                if a.listeners or a.source != "kernel accept probe" else "")
    return f"  [accepted by {who}{where}{snapshot}; {a.source or 'socket snapshot'}]"


def where(record: pb.Record) -> str:
    """node:iface, or the node alone (a drop on the way out, before any interface)."""
    return f"{record.node}:{record.iface}" if record.iface else record.node


def said(hop: pb.Hop) -> str:
    """What the packet says: the decoder's summary, and what its TLS records said decrypted."""
    if hop.HasField("decrypted"):
        return f"{hop.record.summary} [decrypted: {hop.decrypted.summary}]"
    return hop.record.summary


def notes(hop: pb.Hop) -> str:
    return routed_note(hop) + nat_note(hop) + server_note(hop)


def gaps_text(trace: pb.Trace) -> list[str]:
    lines = [f"INCOMPLETE: {g.node}: {g.reason}" for g in trace.gaps]
    if trace.kernel_view:
        lines.append(f"kernel view {trace.kernel_view}")
    return lines


def waterfall(trace: pb.Trace, width: int = 40) -> list[str]:
    """The stages as text bars on the trace's time line."""
    if not trace.stages or not trace.hops:
        return []
    start, end = trace.hops[0].record.ts_ns, trace.hops[-1].record.ts_ns
    span = max(end - start, 1)
    lines = []
    for stage in trace.stages:
        left = int((stage.start_ns - start) / span * width)
        size = max(1, int((stage.end_ns - stage.start_ns) / span * width))
        bar = " " * left + "#" * min(size, width - left)
        lines.append(f"  {stage.name:<12}{(stage.start_ns - start) / 1e6:9.3f} ms {(stage.end_ns - stage.start_ns) / 1e6:9.3f} ms"
                     f"  |{bar:<{width}}|  {stage.hops} hops{('  ' + stage.note) if stage.note else ''}")
    return ["stages (start, duration):"] + lines


def to_table(trace: pb.Trace) -> str:
    lines = [f"trace {trace.trace_id}  {trace.url}  status {trace.status or '-'}  {len(trace.hops)} hops"]
    lines += gaps_text(trace)
    if not trace.hops:
        return "\n".join(lines)
    lines += waterfall(trace)
    start = trace.hops[0].record.ts_ns
    rows = [("+ms", "NODE:IFACE", "DIR", "ETH SRC > DST", "TTL", "IP ID", "SRC", "DST", "SUMMARY")]
    for hop in trace.hops:
        r, l2 = hop.record, hop.layers
        rows.append((f"{(r.ts_ns - start) / 1e6:9.3f}", where(r), r.direction,
                     f"{l2.eth_src} > {l2.eth_dst}" if l2.eth_src else "-", str(l2.ttl) if l2.ttl else "-",
                     f"0x{l2.ip_id:04x}" if l2.ttl else "-", r.src, r.dst, said(hop) + notes(hop)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:-1])) + "  " + row[-1])
    return "\n".join(lines)


# ------------------------------------------------------------ pcapng

def credentials_note(trace: pb.Trace) -> str:
    """What the trace's frames say about credentials: every output with frames carries it."""
    if trace.raw:
        return ("RAW: frames as captured, credentials (SMTP AUTH, IMAP LOGIN, SQL passwords) in clear; "
                "handle this file as a secret")
    return (f"credentials masked with '*' in {trace.masked_frames} frame(s) (SMTP AUTH, IMAP LOGIN, SQL passwords); "
            "--raw for the frames as captured")


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def wire_packets(trace: pb.Trace) -> list[pb.Hop]:
    """Each packet on the wire once: its first sighting (usually the sender's). The same packet
    seen by the receiver, or on both sides of a bridge, has the same addresses, IP id, TCP
    sequence and payload; only a router's TTL differs. (Across a NAT the addresses change: the
    two sides are two conversations, each shown once.) A file with every sighting makes
    Wireshark flag every second copy as a retransmission or a duplicate ACK."""
    seen, kept = set(), []
    for hop in trace.hops:
        r = hop.record
        if hop.layers.ttl:
            key = ("ip", r.src, r.dst, r.proto, hop.layers.ip_id, r.tcp_flags, r.tcp_seq, r.payload_hash)
        else:  # ARP and other non-IP frames: the frame itself
            key = ("frame", bytes(r.frame))
        if key not in seen:
            seen.add(key)
            kept.append(hop)
    return kept


def to_pcapng(trace: pb.Trace, every_hop: bool = False) -> bytes:
    """One interface block per node:interface (named so in Wireshark), nanosecond timestamps,
    packets in time order, each with its direction and the hop's summary as a comment. Each wire
    packet once (`wire_packets`), or with `every_hop` every sighting (per-node views: filter on
    frame.interface_name)."""
    shb_comment = _option(1, f"hoplab trace {trace.trace_id}: {credentials_note(trace)}".encode())
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_comment + _option(0, b""))
    if trace.tls_keylog:  # a Decryption Secrets Block, as `editcap --inject-secrets tls,FILE` writes it
        secrets = trace.tls_keylog.encode()
        out += _block(0x0000000A, struct.pack("<II", DSB_TLS_KEY_LOG, len(secrets)) + secrets)
    interfaces: dict[tuple[str, str], int] = {}
    packets = b""
    for hop in trace.hops if every_hop else wire_packets(trace):
        r = hop.record
        if not r.frame:
            continue  # a kernel drop: no frame was captured (the table, JSON and HTML show it)
        key = (r.node, r.iface)
        if key not in interfaces:
            interfaces[key] = len(interfaces)
            options = _option(2, f"{r.node}:{r.iface}".encode()) + _option(9, b"\x09") + _option(0, b"")
            out += _block(1, struct.pack("<HHI", 1, 0, 0) + options)  # LINKTYPE_ETHERNET, no snap limit
        flags = 1 if r.direction == "in" else 2
        masked = " [credentials masked]" if r.masked else ""
        comment = (said(hop) + notes(hop)).encode()[:1000 - len(masked)] + masked.encode()
        options = _option(2, struct.pack("<I", flags)) + _option(1, comment) + _option(0, b"")
        packets += _block(6, struct.pack("<IIIII", interfaces[key], r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF, len(r.frame),
                                         max(r.length, len(r.frame))) + r.frame + b"\0" * (-len(r.frame) % 4)
                          + options)
    return out + packets


# ------------------------------------------------------------ HTML

_LANE_W, _ROW_H, _TOP, _LEFT = 210, 22, 60, 150  # _LEFT: room for the time column
_BANDS = ("#dbeafe", "#dcfce7", "#fef9c3", "#fae8ff", "#ffedd5", "#e0f2fe", "#f1f5f9", "#fee2e2", "#ecfccb")


def message_pairs(trace: pb.Trace) -> list[list[int | None]]:
    """Each packet once, as indexes into `trace.hops`: the sender's `out` paired with the
    receiver's `in` (same addresses and the same sequence number and payload), or a hop alone
    ([index, None]) when only one side saw it. The sequence diagram's rows: `to_html` and the
    web UI draw these."""
    from hoplab.trace.assemble import packet_key

    pending: dict[tuple, list[list]] = {}
    pairs: list[list] = []
    for index, hop in enumerate(trace.hops):
        key = (packet_key(hop.record), hop.record.src, hop.record.dst)
        if hop.record.direction == "out":
            pair = [index, None]
            pairs.append(pair)
            pending.setdefault(key, []).append(pair)
        else:
            waiting = pending.get(key)
            if waiting and key[0] is not None:
                waiting.pop(0)[1] = index
                if not waiting:
                    del pending[key]
            else:
                pairs.append([None, index])
    return [[a, b] if a is not None else [b, None] for a, b in pairs]


def _messages(trace: pb.Trace) -> list[tuple[pb.Hop, pb.Hop | None]]:
    hops = list(trace.hops)
    return [(hops[a], hops[b] if b is not None else None) for a, b in message_pairs(trace)]


def _fit(text: str, pixels: float) -> str:
    """Cut a label to what fits over an arrow that long (monospace, 11 px: ~6.6 px a char)."""
    chars = max(int(pixels / 6.6) - 2, 8)
    return text if len(text) <= chars else text[:chars - 1] + "\u2026"


def to_html(trace: pb.Trace) -> str:
    lanes: list[str] = []
    for hop in trace.hops:
        if hop.record.node not in lanes:
            lanes.append(hop.record.node)
    x = {node: _LEFT + i * _LANE_W for i, node in enumerate(lanes)}
    messages = _messages(trace)
    height = _TOP + _ROW_H * (len(messages) + 1)
    notes_x = _LEFT + _LANE_W * max(len(lanes) - 1, 0) + 40
    width = notes_x + 560
    start = trace.hops[0].record.ts_ns if trace.hops else 0
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
           'font-size="11"><defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
           '<path d="M0,0 L7,3 L0,6 z" fill="#334155"/></marker></defs>']
    row_of = {id(hop): row for row, pair in enumerate(messages) for hop in pair if hop is not None}
    for index, stage in enumerate(trace.stages):  # bands behind the arrows: the story's stages
        rows = [row_of[id(h)] for h in trace.hops[stage.first_hop:stage.last_hop + 1] if id(h) in row_of]
        if not rows:
            continue
        top, bottom = _TOP + _ROW_H * min(rows) - 2, _TOP + _ROW_H * max(rows) + 16
        fill = _BANDS[index % len(_BANDS)]
        svg.append(f'<rect x="70" y="{top}" width="{width - 70}" height="{bottom - top}" fill="{fill}" '
                   f'opacity="0.35"><title>{html.escape(stage.name)}: '
                   f'{(stage.end_ns - stage.start_ns) / 1e6:.3f} ms, {stage.hops} hops</title></rect>'
                   f'<text x="74" y="{top + 12}" fill="#475569" font-style="italic">{html.escape(stage.name)}</text>')
    for node, lx in x.items():
        svg.append(f'<line x1="{lx}" y1="{_TOP - 10}" x2="{lx}" y2="{height}" stroke="#cbd5e1"/>'
                   f'<text x="{lx}" y="{_TOP - 20}" text-anchor="middle" font-weight="bold">{html.escape(node)}</text>')
    for row, (first, second) in enumerate(messages):
        y = _TOP + _ROW_H * row + 10
        span = abs(x[second.record.node] - x[first.record.node]) if second is not None else _LANE_W
        # decrypted, the arrow says what the TLS record carried ("TLS: HTTP GET /")
        text = f"TLS: {first.decrypted.summary}" if first.HasField("decrypted") else first.record.summary
        label = html.escape(_fit(text, span))
        ms = f"{(first.record.ts_ns - start) / 1e6:.3f} ms"
        color = "#b45309" if first.HasField("translated") or (second and second.HasField("translated")) else "#334155"
        if first.record.direction in ("drop", "bind"):  # where the kernel said no
            color = "#b91c1c"
        if second is not None and second.record.node != first.record.node:
            x1, x2 = x[first.record.node], x[second.record.node]
            svg.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" marker-end="url(#a)">'
                       f'<title>{ms} {html.escape(said(first))}</title></line>')
            svg.append(f'<text x="{(x1 + x2) / 2}" y="{y - 3}" text-anchor="middle" fill="{color}">{label}</text>')
        else:
            svg.append(f'<circle cx="{x[first.record.node]}" cy="{y}" r="3" fill="{color}"><title>{ms} '
                       f'{html.escape(said(first))}</title></circle>'
                       f'<text x="{x[first.record.node] + 8}" y="{y + 4}" fill="{color}">{label}</text>')
        remarks = []
        for hop in (first, second):
            if hop is not None and hop.HasField("forwarded"):
                remarks.append(f"routed at {hop.record.node}: TTL {hop.forwarded.ttl} \u2192 {hop.layers.ttl}, "
                               f"MAC \u2192 {hop.layers.eth_src}")
            if hop is not None and hop.HasField("translated"):
                remarks.append(f"NAT at {hop.record.node}: {hop.translated.before.src} \u2192 {hop.translated.after.src}")
            if hop is not None and (hop.record.keys.get("x_cache") or hop.decrypted.keys.get("x_cache")):
                remarks.append(f"cache {hop.record.keys.get('x_cache') or hop.decrypted.keys['x_cache']}")
        if remarks:
            svg.append(f'<text x="{notes_x}" y="{y + 4}" fill="#b45309">'
                       f'{html.escape("; ".join(dict.fromkeys(remarks)), quote=False)}</text>')
        svg.append(f'<text x="4" y="{y + 4}" fill="#64748b">{ms}</text>')
    svg.append("</svg>")
    rows = "".join(
        f"<tr><td>{(r.ts_ns - start) / 1e6:.3f}</td><td>{html.escape(where(r))}</td>"
        f"<td>{r.direction}</td><td>{html.escape(h.layers.eth_src)} &gt; {html.escape(h.layers.eth_dst)}</td>"
        f"<td>{h.layers.ttl or '-'}</td><td>{html.escape(r.src)}</td><td>{html.escape(r.dst)}</td>"
        f"<td>{html.escape(said(h) + notes(h))}</td></tr>" for h in trace.hops for r in [h.record])
    stage_rows = "".join(
        f"<tr><td>{html.escape(st.name)}</td><td>{(st.start_ns - start) / 1e6:.3f}</td>"
        f"<td>{(st.end_ns - st.start_ns) / 1e6:.3f}</td><td>{st.hops}</td><td>{html.escape(st.note)}</td></tr>"
        for st in trace.stages)
    gap_items = "".join(f"<li><b>{html.escape(g.node)}</b>: {html.escape(g.reason)}</li>" for g in trace.gaps)
    gaps = f"<div class='gaps'><b>Incomplete trace</b><ul>{gap_items}</ul></div>" if gap_items else ""
    title = html.escape(f"hoplab trace {trace.trace_id}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;font:12px monospace}"
            "td,th{border-bottom:1px solid #e2e8f0;padding:2px 8px;text-align:left} .scroll{overflow-x:auto}"
            ".gaps{background:#fef2f2;border:1px solid #fca5a5;padding:4px 12px;margin:8px 0}"
            f"</style></head><body><h1>{title}</h1><p>{html.escape(trace.url)} &mdash; status "
            f"{trace.status or '-'} &mdash; {len(trace.hops)} hops, {len(messages)} messages</p>{gaps}"
            f"<h2>Stages</h2><table><tr><th>stage</th><th>+ms</th><th>ms</th><th>hops</th><th>note</th></tr>"
            f"{stage_rows}</table>"
            f"<h2>Sequence</h2><div class='scroll'>{''.join(svg)}</div><h2>Hops</h2><table><tr><th>+ms</th>"
            f"<th>node:iface</th><th>dir</th><th>eth src &gt; dst</th><th>ttl</th><th>src</th><th>dst</th>"
            f"<th>summary</th></tr>{rows}</table></body></html>\n")
