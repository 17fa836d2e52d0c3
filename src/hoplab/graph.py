"""Draws a topology: networks as ellipses, nodes as boxes, an edge per interface labelled with
its address and, for an impaired link end, its impairment (drawn dashed and red in DOT). DOT
and Mermaid as text; SVG and PNG through Graphviz's `dot`."""

from __future__ import annotations

import shutil
from pathlib import Path

from hoplab import bounded
from hoplab.spec import Topology

FORMATS = ("svg", "png", "dot", "mermaid")
DOT_TIMEOUT_S = 60  # Graphviz laying out one lab
_SUFFIXES = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}


class GraphError(Exception):
    pass


def format_for(path: Path) -> str:
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise GraphError(f"{path}: cannot tell the format from the suffix; use one of "
                         f"{', '.join(sorted(_SUFFIXES))} or --format") from None


def _edges(topology: Topology, newline: str):
    """(node, network, label, impaired) per interface: its address, and its impairment under it."""
    for node in topology.nodes.values():
        for iface in node.interfaces:
            label = str(iface.address) if iface.address else "DHCP"
            if iface.impairment:
                label += f"{newline}{iface.impairment}"
            yield node, iface.network, label, iface.impairment is not None


def to_dot(topology: Topology) -> str:
    lines = [f'graph "{topology.name}" {{', "  rankdir=LR;", '  node [fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for net in topology.networks.values():
        extra = f"\\nDHCP {net.dhcp.first}-{net.dhcp.last}" if net.dhcp else ""
        lines.append(f'  "net:{net.name}" [shape=ellipse, style=filled, fillcolor="#dbeafe", '
                     f'label="{net.name}\\n{net.subnet}{extra}"];')
    for node in topology.nodes.values():
        lines.append(f'  "{node.name}" [shape=box, style="rounded,filled", fillcolor="#f1f5f9", '
                     f'label="{node.name}\\n({node.service})"];')
    for node, network, label, impaired in _edges(topology, "\\n"):
        style = ', style=dashed, color="#b91c1c", fontcolor="#b91c1c"' if impaired else ""
        lines.append(f'  "{node.name}" -- "net:{network}" [label="{label}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(topology: Topology) -> str:
    lines = ["graph LR"]
    for net in topology.networks.values():
        lines.append(f'  net_{net.name}(["{net.name}<br/>{net.subnet}"])')
    for node in topology.nodes.values():
        lines.append(f'  {node.name}["{node.name}<br/>({node.service})"]')
    for node, network, label, impaired in _edges(topology, "<br/>"):
        lines.append(f'  {node.name} {"-.-" if impaired else "---"}|"{label}"| net_{network}')
    return "\n".join(lines) + "\n"


def write(topology: Topology, output: Path, fmt: str | None = None) -> Path:
    fmt = fmt or format_for(output)
    if fmt == "mermaid":
        output.write_text(to_mermaid(topology))
    elif fmt == "dot":
        output.write_text(to_dot(topology))
    else:
        dot = shutil.which("dot")
        if dot is None:
            raise GraphError("Graphviz's `dot` is not installed (`make up` installs it); "
                             "DOT and Mermaid text need nothing: use -o FILE.dot or FILE.mmd")
        bounded.run([dot, f"-T{fmt}", "-o", str(output)], input=to_dot(topology), text=True, check=True,
                    timeout=DOT_TIMEOUT_S)
    return output
