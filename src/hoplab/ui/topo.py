"""The topology as the page draws it: networks and nodes as vertices, one link per interface,
and a layout computed from the topology alone (so any topology draws without code changes).

Layout: each data network gets a column (in file order, two slots apart); a node sits in the
column of its network, or, joined to several, in the slot midway between them (a router between
its LAN and its uplink, an edge between the internet and its origin). Nodes sharing a slot stack
vertically, above and below the network's own vertex. A node on no data network (the control
service) gets a slot after the last network."""

from __future__ import annotations

from hoplab.spec import Topology

SLOT_W, ROW_H, MARGIN = 150, 70, 60


def link_id(node: str, network: str) -> str:
    """How the page names the link of a node's interface (the interface carries the network's name)."""
    return f"{node}|{network}"


def layout(topology: Topology) -> tuple[dict[str, tuple[float, float]], float, float]:
    """(x, y) of every node and of every network ("net:NAME"), and the drawing's width and height."""
    column = {name: 2 * i for i, name in enumerate(topology.networks)}
    slots: dict[int, list[str]] = {}
    for node in topology.nodes.values():
        cols = sorted(column[i.network] for i in node.interfaces if i.network in column)
        if not cols:  # on no data network (the control service): a slot of its own, at the end
            slots.setdefault(2 * len(column) - 1, []).append(node.name)
            continue
        slot = (cols[0] + cols[-1]) // 2 if len(cols) > 1 else cols[0]
        if len(cols) > 1 and slot % 2 == 0:  # midway falls on a network's column: beside it
            slot += 1
        slots.setdefault(slot, []).append(node.name)
    rows = max([len(names) + (1 if slot % 2 == 0 else 0) for slot, names in slots.items()] + [1])
    height = 2 * MARGIN + (rows - 1) * ROW_H
    middle = height / 2
    positions: dict[str, tuple[float, float]] = {}
    for name, col in column.items():
        positions[f"net:{name}"] = (MARGIN + col * SLOT_W, middle)
    for slot, names in slots.items():
        x = MARGIN + slot * SLOT_W
        # Around the middle row; on a network's column the middle row is the network's own.
        offsets = []
        step = 1 if slot % 2 == 0 else 0.5
        k = 1 if slot % 2 == 0 else 0.5 if len(names) % 2 == 0 else 0
        while len(offsets) < len(names):
            for sign in ((-1, 1) if k else (1,)):
                if len(offsets) < len(names):
                    offsets.append(sign * k)
            k += step if slot % 2 == 0 else 1
        for name, offset in zip(names, sorted(offsets)):
            positions[name] = (x, middle + offset * ROW_H)
    width = 2 * MARGIN + max([x for x, _ in positions.values()] + [0]) - MARGIN
    top = min(y for _, y in positions.values())
    shift = MARGIN - top  # the top row at the margin
    positions = {k: (x, y + shift) for k, (x, y) in positions.items()}
    height = max(y for _, y in positions.values()) + MARGIN
    return positions, width, height


def graph_json(topology: Topology) -> dict:
    positions, width, height = layout(topology)
    networks = [{"name": n.name, "subnet": str(n.subnet), "dhcp": f"{n.dhcp.first}-{n.dhcp.last}" if n.dhcp else "",
                 "x": positions[f"net:{n.name}"][0], "y": positions[f"net:{n.name}"][1]}
                for n in topology.networks.values()]
    nodes = [{"name": n.name, "service": n.service, "x": positions[n.name][0], "y": positions[n.name][1],
              "interfaces": [{"network": i.network, "address": str(i.address) if i.address else "DHCP"}
                             for i in n.interfaces],
              "nat": {"inside": list(n.nat.inside), "outside": n.nat.outside} if n.nat else None}
             for n in topology.nodes.values()]
    links = [{"id": link_id(n.name, i.network), "node": n.name, "network": i.network,
              "address": str(i.address) if i.address else "DHCP"}
             for n in topology.nodes.values() for i in n.interfaces]
    return {"lab": topology.name, "domain": topology.domain.name if topology.domain else "",
            "clients": [n.name for n in topology.nodes_of("client")],
            "width": width, "height": height, "networks": networks, "nodes": nodes, "links": links}
