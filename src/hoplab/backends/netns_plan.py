"""What a netns lab is made of on the host, as data: one bridge per network, one veth pair per
node interface, the host's own address on the management bridge. Pure (topology in, names out),
so `up` can journal every name before it creates anything and `clean` can find each again."""

from __future__ import annotations

from dataclasses import dataclass

from hoplab.backends.base import PreflightError
from hoplab.node import MANAGEMENT
from hoplab.spec import MANAGEMENT_NETWORK, Topology

BRIDGE_PREFIX = "hn"  # Docker's bridges are "hl-…": both backends can run side by side
VETH_PREFIX = "hv"
MAX_IFNAME = 15  # Linux's limit
MARK_PREFIX = "hoplab:"


def lab_prefixes(lab: str) -> tuple[str, str]:
    """The name prefixes of every link a lab makes in the host's namespace (lab names have no
    hyphen, so lab `a`'s never begin lab `ab`'s). Names keep labs apart; only the mark below
    says a link is hoplab's."""
    return f"{BRIDGE_PREFIX}-{lab}-", f"{VETH_PREFIX}-{lab}-"


def link_mark(lab: str) -> str:
    """The alias (ifalias) every link a lab makes in the host's namespace carries from its
    creation: how `down` and `clean` find it again. A name is no mark: anyone can make a link
    called `hv-lab-0`."""
    return f"{MARK_PREFIX}{lab}"


def marked_links(links: list[dict], lab: str | None) -> list[str]:
    """The links of `ip -j -d link show` that carry lab `lab`'s mark (any lab's when None),
    bridges first: deleting one frees its ports."""
    def ours(link: dict) -> bool:
        alias = link.get("ifalias") or ""
        return alias == link_mark(lab) if lab else alias.startswith(MARK_PREFIX) and len(alias) > len(MARK_PREFIX)

    def bridge_first(link: dict) -> tuple[bool, str]:
        return (link.get("linkinfo") or {}).get("info_kind") != "bridge", link["ifname"]

    return [link["ifname"] for link in sorted(filter(ours, links), key=bridge_first)]


@dataclass(frozen=True)
class Port:
    """One node interface: a veth whose host end joins the network's bridge."""

    node: str
    network: str
    bridge: str
    veth: str  # the end in the host's namespace
    iface: str  # the end in the node, named after its network (traces read `router:home`)
    address: str | None  # "a.b.c.d/len"; None for a DHCP client's interface


@dataclass(frozen=True)
class NetnsPlan:
    lab: str
    bridges: dict[str, str]  # network -> bridge
    ports: tuple[Port, ...]
    nodes: tuple[str, ...]
    host_address: tuple[str, str] | None  # (management bridge, "a.b.c.d/len")

    def ports_of(self, node: str) -> list[Port]:
        return [p for p in self.ports if p.node == node]

    def to_json(self) -> dict:
        return {"bridges": sorted(self.bridges.values()), "veths": [p.veth for p in self.ports],
                "nodes": list(self.nodes)}


def plan(topology: Topology) -> NetnsPlan:
    bridges = topology.bridge_names(BRIDGE_PREFIX)
    ports = []
    for node in topology.nodes.values():
        for iface in node.interfaces:
            prefixlen = topology.networks[iface.network].subnet.prefixlen
            address = f"{iface.address}/{prefixlen}" if iface.address else None
            ports.append((node.name, iface.network, iface.network, address))
        if topology.management:
            address = f"{topology.management.addresses[node.name]}/{topology.management.subnet.prefixlen}"
            ports.append((node.name, MANAGEMENT_NETWORK, MANAGEMENT, address))
    planned = []
    for index, (node, network, iface, address) in enumerate(ports):
        veth = f"{VETH_PREFIX}-{topology.name}-{index}"
        if len(veth) > MAX_IFNAME:
            raise PreflightError(f"{topology.source}: nodes: {len(ports)} interfaces are too many for the netns "
                                 f"backend's link names ({veth!r} is longer than {MAX_IFNAME} characters)")
        planned.append(Port(node, network, bridges[network], veth, iface, address))
    host_address = None
    if topology.management:
        host_address = (bridges[MANAGEMENT_NETWORK],
                        f"{topology.management.host_address}/{topology.management.subnet.prefixlen}")
    return NetnsPlan(topology.name, bridges, tuple(planned), tuple(topology.nodes), host_address)
