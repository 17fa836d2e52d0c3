"""What a fault is, as data: the steps to run in which node to break something, and the steps
that put it back. Nothing here acts; `hoplab.chaos.journal` records the undo before the act
runs. Every command runs inside a node through the backend, so any backend gets every fault."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hoplab.chaos.params import Context, FaultError, Param, check_params
from hoplab.spec import Topology

__all__ = ["FaultError", "Param", "Step", "Plan", "Target", "Fault", "run", "sh", "ipt_add", "ipt_remove"]

# Inside a node: its private state folder, and the pid of its service (the process the node
# runtime exec'd into the start script and then the daemon; see hoplab.node.__main__).
RUN = "${HOPLAB_RUN_DIR:-/run/hoplab}"
SERVICE_PID = f"$(cat {RUN}/service.pid)"
COMMENT = ("-m", "comment", "--comment", "hoplab-chaos")  # every rule chaos adds says so
XTABLES_WAIT = ("-w", "5")  # iptables waits at most 5 s for the xtables lock, not forever
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
    params: dict[str, Param] = field(default_factory=dict)  # name -> declared kind and default
    needs_iface: bool = False
    service: str | None = None  # the target must run this service
    # Two active faults on one node that touch the same thing (a zone file, the root qdisc)
    # would undo each other's work: the second is refused. Default: the fault's own name.
    resource: str | None = None

    @property
    def claims(self) -> str:
        return self.resource or self.name

    def defaults(self) -> dict:
        return {k: p.default for k, p in self.params.items()}

    def check(self, target: Target, params: dict) -> dict:
        """The parameters as typed values, every one checked (see `hoplab.chaos.params`)."""
        return check_params(self.name, self.params, params, Context(target.topology, target.node, target.iface))

    def plan(self, target: Target, params: dict | None = None) -> Plan:
        """Check the parameters (given as text or as values; missing ones take their default),
        then plan. Pure: nothing runs."""
        return self.planner(target, self.check(target, params or {}))


# ------------------------------------------------------------ helpers for planners
# Values reach commands as arguments: `run` is an argv; `sh` is a fixed script whose values
# arrive as its positional parameters ("$1", "$2", ...), never pasted into its text. Only names
# and addresses the topology itself holds (checked by the spec) appear in script text.


def run(node: str, *argv) -> Step:
    return Step(node, tuple(str(a) for a in argv))


def sh(node: str, *lines: str, args: tuple = ()) -> Step:
    """One shell script in a node; it stops at the first failing line. `args` become $1, $2..."""
    return Step(node, ("sh", "-c", "set -e\n" + "\n".join(lines), "sh", *(str(a) for a in args)))


def ipt_add(node: str, chain: str, *match: str, table: str = "filter") -> Step:
    return run(node, "iptables", *XTABLES_WAIT, "-t", table, "-I", chain, *match, *COMMENT)


# Idempotent: a repair may already have deleted the rule (drills expect that).
_IPT_REMOVE = 't=$1; shift; while iptables -w 5 -t "$t" -C "$@" 2>/dev/null; do iptables -w 5 -t "$t" -D "$@"; done'


def ipt_remove(node: str, chain: str, *match: str, table: str = "filter") -> Step:
    return sh(node, _IPT_REMOVE, args=(table, chain, *match, *COMMENT))


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


def network_of(target: Target) -> str:
    """The target's interface, or its only data-plane network."""
    networks = [i.network for i in target.topology.nodes[target.node].interfaces]
    return target.iface or networks[0]
