"""Renders an assembled trace (hoplab.v1.Trace) for people and programs: a hop table, JSON,
a self-contained HTML page with a sequence diagram, and pcapng for Wireshark and tshark."""

from __future__ import annotations

import html
import json
import struct

from hoplab.v1 import control_pb2 as pb

FORMATS = ("table", "json", "html", "pcapng")


def _tuple(t: pb.Tuple) -> dict:
    return {"src": t.src, "dst": t.dst, "proto": t.proto}


def hop_json(hop: pb.Hop) -> dict:
    r = hop.record
    out = {"node": r.node, "iface": r.iface, "direction": r.direction, "ts_ns": r.ts_ns,
           "proto": r.proto, "src": r.src, "dst": r.dst, "summary": r.summary}
    if hop.HasField("translated"):
        out["translated"] = {"before": _tuple(hop.translated.before), "after": _tuple(hop.translated.after)}
    keys = dict(hop.record.keys)
    if keys:
        out["keys"] = keys
    return out


def to_json(trace: pb.Trace) -> dict:
    return {"trace_id": trace.trace_id, "url": trace.url, "status": trace.status,
            "capture_id": trace.capture_id, "hops": [hop_json(h) for h in trace.hops]}


def nat_note(hop: pb.Hop) -> str:
    if not hop.HasField("translated"):
        return ""
    before, after = hop.translated.before, hop.translated.after
    return f"  [NAT {before.src} > {before.dst}  =>  {after.src} > {after.dst}]"


def to_table(trace: pb.Trace) -> str:
    lines = [f"trace {trace.trace_id}  {trace.url}  status {trace.status or '-'}  {len(trace.hops)} hops"]
    if not trace.hops:
        return lines[0]
    start = trace.hops[0].record.ts_ns
    rows = [("+ms", "NODE:IFACE", "DIR", "SRC", "DST", "SUMMARY")]
    for hop in trace.hops:
        r = hop.record
        rows.append((f"{(r.ts_ns - start) / 1e6:9.3f}", f"{r.node}:{r.iface}", r.direction, r.src, r.dst,
                     r.summary + nat_note(hop)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:5])) + "  " + row[5])
    return "\n".join(lines)


# ------------------------------------------------------------ pcapng

def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def to_pcapng(trace: pb.Trace) -> bytes:
    """One interface block per node:interface (named so in Wireshark), nanosecond timestamps,
    packets in time order, each with its direction and the hop's summary as a comment."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))
    interfaces: dict[tuple[str, str], int] = {}
    packets = b""
    for hop in trace.hops:
        r = hop.record
        key = (r.node, r.iface)
        if key not in interfaces:
            interfaces[key] = len(interfaces)
            options = _option(2, f"{r.node}:{r.iface}".encode()) + _option(9, b"\x09") + _option(0, b"")
            out += _block(1, struct.pack("<HHI", 1, 0, 0) + options)  # LINKTYPE_ETHERNET, no snap limit
        flags = 1 if r.direction == "in" else 2
        options = _option(2, struct.pack("<I", flags)) + _option(1, r.summary.encode()[:1000]) + _option(0, b"")
        packets += _block(6, struct.pack("<IIIII", interfaces[key], r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF, len(r.frame),
                                         max(r.length, len(r.frame))) + r.frame + b"\0" * (-len(r.frame) % 4)
                          + options)
    return out + packets


# ------------------------------------------------------------ HTML

_LANE_W, _ROW_H, _TOP, _LEFT = 210, 22, 60, 150  # _LEFT: room for the time column


def _messages(trace: pb.Trace) -> list[tuple[pb.Hop, pb.Hop | None]]:
    """Each packet once: the sender's `out` paired with the receiver's `in` (same addresses and
    the same sequence number and payload), or a hop alone when only one side saw it."""
    from hoplab.trace.assemble import packet_key

    pending: dict[tuple, list[pb.Hop]] = {}
    pairs: list[list] = []
    for hop in trace.hops:
        key = (packet_key(hop.record), hop.record.src, hop.record.dst)
        if hop.record.direction == "out":
            pair = [hop, None]
            pairs.append(pair)
            pending.setdefault(key, []).append(pair)
        else:
            waiting = pending.get(key)
            if waiting and key[0] is not None:
                waiting.pop(0)[1] = hop
                if not waiting:
                    del pending[key]
            else:
                pairs.append([None, hop])
    return [(a, b) if a else (b, None) for a, b in pairs]


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
    for node, lx in x.items():
        svg.append(f'<line x1="{lx}" y1="{_TOP - 10}" x2="{lx}" y2="{height}" stroke="#cbd5e1"/>'
                   f'<text x="{lx}" y="{_TOP - 20}" text-anchor="middle" font-weight="bold">{html.escape(node)}</text>')
    for row, (first, second) in enumerate(messages):
        y = _TOP + _ROW_H * row + 10
        span = abs(x[second.record.node] - x[first.record.node]) if second is not None else _LANE_W
        label = html.escape(_fit(first.record.summary, span))
        ms = f"{(first.record.ts_ns - start) / 1e6:.3f} ms"
        color = "#b45309" if first.HasField("translated") or (second and second.HasField("translated")) else "#334155"
        if second is not None and second.record.node != first.record.node:
            x1, x2 = x[first.record.node], x[second.record.node]
            svg.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" marker-end="url(#a)">'
                       f'<title>{ms} {html.escape(first.record.summary)}</title></line>')
            svg.append(f'<text x="{(x1 + x2) / 2}" y="{y - 3}" text-anchor="middle" fill="{color}">{label}</text>')
        else:
            svg.append(f'<circle cx="{x[first.record.node]}" cy="{y}" r="3" fill="{color}"><title>{ms} '
                       f'{html.escape(first.record.summary)}</title></circle>'
                       f'<text x="{x[first.record.node] + 8}" y="{y + 4}" fill="{color}">{label}</text>')
        notes = []
        for hop in (first, second):
            if hop is not None and hop.HasField("translated"):
                notes.append(f"NAT at {hop.record.node}: {hop.translated.before.src} \u2192 {hop.translated.after.src}")
            if hop is not None and hop.record.keys.get("x_cache"):
                notes.append(f"cache {hop.record.keys['x_cache']}")
        if notes:
            svg.append(f'<text x="{notes_x}" y="{y + 4}" fill="#b45309">'
                       f'{html.escape("; ".join(dict.fromkeys(notes)), quote=False)}</text>')
        svg.append(f'<text x="4" y="{y + 4}" fill="#64748b">{ms}</text>')
    svg.append("</svg>")
    rows = "".join(
        f"<tr><td>{(r.ts_ns - start) / 1e6:.3f}</td><td>{html.escape(r.node)}:{html.escape(r.iface)}</td>"
        f"<td>{r.direction}</td><td>{html.escape(r.src)}</td><td>{html.escape(r.dst)}</td>"
        f"<td>{html.escape(r.summary + nat_note(h))}</td></tr>" for h in trace.hops for r in [h.record])
    title = html.escape(f"hoplab trace {trace.trace_id}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;font:12px monospace}"
            "td,th{border-bottom:1px solid #e2e8f0;padding:2px 8px;text-align:left} .scroll{overflow-x:auto}"
            f"</style></head><body><h1>{title}</h1><p>{html.escape(trace.url)} &mdash; status "
            f"{trace.status or '-'} &mdash; {len(trace.hops)} hops, {len(messages)} messages</p>"
            f"<h2>Sequence</h2><div class='scroll'>{''.join(svg)}</div><h2>Hops</h2><table><tr><th>+ms</th>"
            f"<th>node:iface</th><th>dir</th><th>src</th><th>dst</th><th>summary</th></tr>{rows}</table>"
            "</body></html>\n")
