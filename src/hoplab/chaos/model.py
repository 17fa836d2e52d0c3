"""What a fault is, as data: the steps to run in which node to break something, and the steps
that put it back. Nothing here acts; `hoplab.chaos.journal` records the undo before the act
runs. Every command runs inside a node through the backend, so any backend gets every fault."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Callable

from hoplab.spec import Topology


class FaultError(Exception):
    """A fault that cannot be planned: bad target or parameter (exit 2)."""


# Inside a node: its private state folder, and the pid of its service (the process the node
# runtime exec'd into the start script and then the daemon; see hoplab.node.__main__).
RUN = "${HOPLAB_RUN_DIR:-/run/hoplab}"
SERVICE_PID = f"$(cat {RUN}/service.pid)"
COMMENT = "-m comment --comment hoplab-chaos"  # every rule chaos adds says so
MAX_DURATION_S = 1800  # no fault outlives this; drills give people time to think


@dataclass(frozen=True)
class Step:
    node: str
    argv: tuple[str, ...] = ()
    # "run": argv in the node. "restart": bring the lab back to its declared state (the
    # backend's `up`, which starts a node whose service died) -- the only undo of a kill.
    kind: str = "run"

    def to_json(self) -> dict:
        return {"node": self.node, "argv": list(self.argv), "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict) -> "Step":
        return cls(data["node"], tuple(data["argv"]), data.get("kind", "run"))


@dataclass
class Plan:
    act: list[Step]
    undo: list[Step]
    symptom: str


@dataclass(frozen=True)
class Target:
    """Where a fault acts, checked against the topology."""

    node: str
    iface: str | None
    topology: Topology


Planner = Callable[[Target, dict], Plan]


@dataclass(frozen=True)
class Fault:
    name: str
    family: str
    description: str
    planner: Planner
    params: dict = field(default_factory=dict)  # name -> default (its type is the parameter's)
    needs_iface: bool = False
    service: str | None = None  # the target must run this service
    # Two active faults on one node that touch the same thing (a zone file, the root qdisc)
    # would undo each other's work: the second is refused. Default: the fault's own name.
    resource: str | None = None

    @property
    def claims(self) -> str:
        return self.resource or self.name

    def plan(self, target: Target, params: dict) -> Plan:
        return self.planner(target, params)


# ------------------------------------------------------------ helpers for planners


def sh(node: str, *lines: str) -> Step:
    """One shell script in a node; it stops at the first failing line."""
    return Step(node, ("sh", "-c", "set -e\n" + "\n".join(lines)))


def ipt_add(rule: str, table: str = "filter") -> str:
    return f"iptables -w -t {table} -I {rule} {COMMENT}"


def ipt_remove(rule: str, table: str = "filter") -> str:
    """Idempotent: a repair may already have deleted the rule (drills expect that)."""
    return (f"while iptables -w -t {table} -C {rule} {COMMENT} 2>/dev/null; "
            f"do iptables -w -t {table} -D {rule} {COMMENT}; done")


def quote(text: str) -> str:
    return shlex.quote(text)


def static_addresses(topology: Topology, node: str) -> list[str]:
    return [str(a) for _, a in topology.nodes[node].static_addresses]


def unused_address(topology: Topology, network: str) -> str:
    """The highest address of a network that no node holds, no DHCP pool hands out and no
    bridge reserves: a plausible wrong answer that belongs to nobody, the host least of all
    (an answer or route pointing at the host would make it a router onto its own uplink)."""
    bridge, interim = topology.bridge_address(network), topology.interim_range(network)
    for address in topology.free_addresses(network):
        if address != bridge and not (interim and address in interim):
            return str(address)
    raise FaultError(f"network {network} has no free address that neither a node nor the host holds")


def ipv4(name: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise FaultError(f"{name}: {text!r} is not an IPv4 address") from None


def network_of(target: Target) -> str:
    """The target's interface, or its only data-plane network."""
    networks = [i.network for i in target.topology.nodes[target.node].interfaces]
    return target.iface or networks[0]
