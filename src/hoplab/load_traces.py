"""Traces of real load (`hoplab load --trace-sample N`): every node captures while Locust runs,
about one request in N carries a sampled `traceparent` (loadtests/sampling.py), and after the
run the slowest sampled requests are traced end to end, each with where its time went
(hoplab.trace.breakdown). The report folder gets `samples.json` (every sample, the traced ones
with their breakdown and gaps), `samples.html` and each traced request's trace under `traces/`
(HTML and JSON)."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hoplab.backends.base import Backend, BackendError
from hoplab.spec import Topology
from hoplab.trace.breakdown import CLIENT_SIDE, QUEUEING, breakdown

SAMPLES_FILE = "samples.jsonl"  # written by loadtests/sampling.py in each Locust node's out/ folder
TRACED = 10  # the slowest sampled requests that are traced
TRACE_TIMEOUT_S = 60  # one sample's trace: the collector assembles it from the whole run's records
CLIENT_SERVICES = ("client",)


@dataclass
class Sample:
    trace_id: str
    method: str
    name: str
    url: str
    status: int
    start_ns: int
    end_ns: int
    node: str = ""
    breakdown: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)
    trace: str = ""  # its trace's HTML, relative to the report folder

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def parse_samples(text: str, node: str) -> list[Sample]:
    """The sample lines one node's users wrote; a line that is not one is an error (it would
    lose a sample silently)."""
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            samples.append(Sample(str(entry["trace_id"]), str(entry["method"]), str(entry["name"]), str(entry["url"]),
                                  int(entry["status"]), int(entry["start_ns"]), int(entry["end_ns"]), node))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{node}:{SAMPLES_FILE} line {number}: not a sample ({exc}): {line[:200]!r}") from None
    return samples


def tiers_of(topology: Topology) -> dict[str, str]:
    """node -> its service's tier, for every node that serves (clients and routers do not)."""
    tiers = {}
    for node in topology.nodes.values():
        service = topology.services.get(node.service)
        if node.service in CLIENT_SERVICES or node.nat is not None:
            continue
        tiers[node.name] = (service.tier if service is not None and service.tier else node.service)
    return tiers


class SampledCapture:
    """Every node capturing for the run (bounded by the run's time); then the samples' traces.
    gRPC and the trace's renderers load here, not with `hoplab.load`: its argument checks and the
    UI import that module, and most runs trace nothing."""

    def __init__(self, backend: Backend, topology: Topology, max_seconds: int):
        from hoplab.control.capture import MAX_PACKETS
        from hoplab.control.client import ControlClient
        from hoplab.visit import TRACE_FILTER

        self.tiers = tiers_of(topology)
        self.control = ControlClient.of(backend, topology)
        self.capture = self.control.start(filter=TRACE_FILTER, max_seconds=max_seconds, max_packets=MAX_PACKETS)

    def stop(self, key_log: str) -> None:
        from hoplab.trace.tls import KeyLog, KeyLogError

        try:
            keys = KeyLog.parse(key_log, source="the run's TLS key log").text if key_log else ""
        except KeyLogError:
            keys = ""  # the traces say what they could not decrypt
        self.control.stop(self.capture.id, tls_keylog=keys)

    def trace(self, sample: Sample, folder: Path) -> None:
        """The sample's trace: its breakdown and gaps on `sample`, its HTML and JSON in `folder`."""
        from hoplab.trace import render

        try:
            trace = self.control.trace(sample.trace_id, capture_id=self.capture.id,
                                       window=(sample.start_ns, sample.end_ns), timeout=TRACE_TIMEOUT_S)
        except BackendError as exc:
            sample.gaps = [f"no trace: {exc}"]
            return
        trace.url = sample.url
        trace.status = sample.status or trace.status
        sample.breakdown = breakdown(trace, self.tiers, sample.start_ns, sample.end_ns)
        sample.gaps = render.gaps_text(trace)
        if not trace.hops:
            sample.gaps.append("no packet of this request was found in the capture")
        folder.mkdir(exist_ok=True)
        (folder / f"{sample.trace_id}.html").write_text(render.to_html(trace))
        (folder / f"{sample.trace_id}.json").write_text(json.dumps(render.to_json(trace), indent=2) + "\n")
        sample.trace = f"{folder.name}/{sample.trace_id}.html"

    def close(self) -> None:
        self.control.close()


def report(samples: list[Sample], every: int, traced: list[Sample], report_dir: Path) -> dict:
    """summary.json's `samples`, and samples.json and samples.html in the report folder."""
    section = {
        "every": every, "sampled": len(samples), "traced": len(traced),
        "incomplete": sum(1 for s in traced if s.gaps),
        "slowest": [_row(s) for s in traced],
        "html": "samples.html",
    }
    (report_dir / "samples.json").write_text(json.dumps(
        {**section, "samples": [_row(s) for s in sorted(samples, key=lambda s: s.start_ns)]}, indent=2) + "\n")
    (report_dir / "samples.html").write_text(to_html(section))
    return section


def _row(sample: Sample) -> dict:
    row = {k: v for k, v in asdict(sample).items() if k not in ("breakdown", "gaps", "trace")}
    row["ms"] = round(sample.ms, 3)
    if sample.breakdown or sample.gaps or sample.trace:
        row.update(breakdown=sample.breakdown, gaps=sample.gaps, trace=sample.trace)
    return row


COLOURS = {CLIENT_SIDE: "#94a3b8", "edge": "#0ea5e9", "balancer": "#a855f7", QUEUEING: "#f97316",
           "replica": "#22c55e", "database": "#eab308"}


def text_lines(section: dict, shown: int = 5) -> list[str]:
    """The slowest sampled requests, a line each: time, status, name, and its tiers."""
    lines = [f"sampled: {section['sampled']} requests (about 1 in {section['every']}); traced the slowest "
             f"{section['traced']}: {section['html']}"]
    for row in section["slowest"][:shown]:
        parts = ", ".join(f"{t['tier']} {t['ms']:.1f}" for t in row.get("breakdown", {}).get("tiers", ()) if t["ms"] > 0)
        lines.append(f"  {row['ms']:8.1f} ms  {row['status'] or '-':>3}  {row['name']:<26} {parts}")
    return lines


def to_html(section: dict) -> str:
    rows = []
    for row in section["slowest"]:
        tiers = row.get("breakdown", {}).get("tiers", [])
        total = row.get("breakdown", {}).get("total_ms") or row["ms"] or 1
        bar = "<div style='display:flex;width:360px'>" + "".join(
            f"<span style='flex:none;height:14px;width:{max(t['ms'], 0) / total * 360:.1f}px;"
            f"background:{COLOURS.get(t['tier'], '#64748b')}' title='{html.escape(t['tier'])}: {t['ms']:.2f} ms'></span>"
            for t in tiers) + "</div>"
        split = ", ".join(f"{html.escape(t['tier'])} {t['ms']:.1f}" for t in tiers if t["ms"] > 0)
        gaps = "".join(f"<li>{html.escape(g)}</li>" for g in row.get("gaps", ()))
        link = f"<a href='{html.escape(row['trace'])}'>trace</a>" if row.get("trace") else "-"
        rows.append(f"<tr><td>{row['ms']:.1f}</td><td>{row['status'] or '-'}</td><td>{html.escape(row['method'])}</td>"
                    f"<td>{html.escape(row['name'])}</td><td>{bar}</td><td>{split}</td><td>{link}</td>"
                    f"<td>{'<ul>' + gaps + '</ul>' if gaps else ''}</td></tr>")
    legend = " ".join(f"<span style='background:{c};padding:0 6px'>&nbsp;</span> {html.escape(n)}"
                      for n, c in COLOURS.items())
    return ("<!doctype html><html><head><meta charset='utf-8'><title>hoplab load: the slowest sampled requests</title>"
            "<style>body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;font:12px monospace}"
            "td,th{border-bottom:1px solid #e2e8f0;padding:3px 8px;text-align:left;vertical-align:top}</style></head>"
            f"<body><h1>The slowest sampled requests</h1><p>{section['sampled']} requests sampled (about 1 in "
            f"{section['every']}), the slowest {section['traced']} traced end to end; "
            f"{section['incomplete']} of them incomplete.</p><p>{legend}</p>"
            "<table><tr><th>ms</th><th>status</th><th>method</th><th>name</th><th>where the time went</th>"
            f"<th>ms by tier</th><th>trace</th><th>gaps</th></tr>{''.join(rows)}</table></body></html>\n")
