"""The one interface every backend implements (Docker now, network namespaces later)."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from hoplab.progress import Progress
from hoplab.spec import Topology


class BackendError(Exception):
    """The lab could not be brought to the asked state; the message says why."""


class PreflightError(BackendError):
    """The host cannot take this topology (e.g. a subnet clashes with a host route); raised
    before anything is created, so the CLI treats it like bad input."""


@dataclass
class NodeStatus:
    node: str
    service: str
    state: str  # running, exited, missing, ...
    health: str  # healthy, starting, unhealthy, none
    addresses: dict[str, str] = field(default_factory=dict)  # interface -> address/prefix

    def to_json(self) -> dict:
        return {"node": self.node, "service": self.service, "state": self.state,
                "health": self.health, "addresses": self.addresses}


class Backend(ABC):
    name: str

    @abstractmethod
    def up(self, topology: Topology, progress: Progress) -> list[NodeStatus]:
        """Build what is missing, start every node, wait until all are healthy."""

    @abstractmethod
    def down(self, topology: Topology, progress: Progress) -> None:
        """Stop and remove the lab: nodes, networks, volumes, host rules."""

    @abstractmethod
    def status(self, topology: Topology) -> list[NodeStatus]:
        """One entry per node of the topology, running or not."""

    @abstractmethod
    def exec(self, topology: Topology, node: str, argv: list[str], interactive: bool) -> int:
        """Run a command in a node; returns its exit status."""

    @abstractmethod
    def run(self, topology: Topology, node: str, argv: list[str], timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command in a node, feeding it `input`, and capture its output."""

    @abstractmethod
    def clean(self, lab: str | None, progress: Progress) -> list[str]:
        """Remove everything this backend made for lab `lab` (every lab when None), whatever
        state it was left in. Returns what was removed."""
