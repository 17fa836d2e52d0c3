"""The one interface every backend implements (Docker now, network namespaces later)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from hoplab import bounded
from hoplab.paths import CONTROL_TOKEN_FILE
from hoplab.progress import Progress
from hoplab.spec import Topology


IP_TIMEOUT_S = 10  # an `ip` listing of the host's routes or links


class BackendError(Exception):
    """The lab could not be brought to the asked state; the message says why."""


class PreflightError(BackendError):
    """The host cannot take this topology (e.g. a subnet clashes with a host route); raised
    before anything is created, so the CLI treats it like bad input."""


@dataclass(frozen=True)
class Failure:
    """Something a backend made that `down` or `clean` could not remove, and why."""

    kind: str  # link, iptables rule, container, network, volume, image, folder, process...
    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.error}"


@dataclass
class Cleaned:
    """What `down` or `clean` did: each thing removed ("KIND NAME") and each it failed to remove.
    The CLI prints both and exits 1 when anything failed."""

    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def extend(self, other: "Cleaned") -> "Cleaned":
        self.removed += other.removed
        self.failed += other.failed
        return self

    def attempt(self, kind: str, name: str, remove) -> bool:
        """Call `remove()`; record "KIND NAME" as removed, or its error as a failure."""
        try:
            remove()
        except (OSError, subprocess.SubprocessError, BackendError) as exc:
            self.failed.append(Failure(kind, name, _reason(exc)))
            return False
        self.removed.append(f"{kind} {name}")
        return True


def _reason(exc: Exception) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        said = exc.stderr or exc.stdout or ""
        said = (said.decode(errors="replace") if isinstance(said, bytes) else said).strip()
        return said or f"exit status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no answer within {exc.timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


@dataclass
class NodeStatus:
    node: str
    service: str
    state: str  # running, exited, missing, ...
    health: str  # healthy, starting, unhealthy, none
    addresses: dict[str, str] = field(default_factory=dict)  # interface -> address/prefix
    id: str = ""  # what the backend knows the node by: a container id, a namespace's anchor pid

    def to_json(self) -> dict:
        return {"node": self.node, "service": self.service, "state": self.state,
                "health": self.health, "addresses": self.addresses, "id": self.id}


def subnets(topology: Topology):
    """(field, subnet) of every subnet a lab uses, the management network's included."""
    for network in topology.networks.values():
        yield f"networks.{network.name}.subnet", network.subnet
    if topology.management:
        yield "management.subnet", topology.management.subnet


def route_clashes(topology: Topology, own_links: set[str],
                  others: list[tuple[ipaddress.IPv4Network, str]] = ()) -> None:
    """Refuse, before anything is created, a subnet that overlaps a host route (another lab's
    bridge, the host's uplink) that is not on one of the lab's own links, a resolver the host
    asks (its packets would go into the lab), or one of `others`."""
    routes = json.loads(bounded.run(["ip", "-j", "-4", "route", "show"], capture_output=True, text=True,
                                    timeout=IP_TIMEOUT_S).stdout or "[]")
    taken = list(others) + [(ipaddress.IPv4Network(address), "the host's resolver in /etc/resolv.conf")
                            for address in host_resolvers()]
    for route in routes:
        if route.get("dst", "default") != "default" and route.get("dev") not in own_links:
            taken.append((ipaddress.IPv4Network(route["dst"], strict=False), f"host route on {route.get('dev')}"))
    problems = [f"{topology.source}: {name}: {subnet} overlaps {other} ({owner})"
                for name, subnet in subnets(topology) for other, owner in taken if subnet.overlaps(other)]
    if problems:
        raise PreflightError("\n".join(problems))




def host_resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The IPv4 nameservers the host's resolver asks, read from its file (never queried)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(str(ipaddress.IPv4Address(words[1])))
            except ValueError:  # IPv6 or junk: no IPv4 lab subnet can hold it
                pass
    return found


def ensure_control_token(path: Path) -> str:
    """The lab's Control API token: made once per lab (at `up`), mode 0600 from its creation,
    kept until the lab's state is removed. Only the host and the control node hold it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_control_token(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return read_control_token(path)


def read_control_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise BackendError(f"{path}: no Control API token ({exc.strerror}): is the lab up on this backend?") from None
    if len(token) != 64 or any(c not in "0123456789abcdef" for c in token):
        raise BackendError(f"{path}: not a Control API token (64 hex digits); `hoplab down` and `up` make a new one")
    return token


class Backend(ABC):
    name: str
    state_root: Path  # per lab, a folder of this backend's state on the host

    catalog: dict = {}  # the project's services, when a topology carries none (built in code)

    def services(self, topology: Topology) -> dict:
        """The services a topology's nodes run: the catalog it was checked against (its own
        service_dirs' first, then the project's)."""
        return topology.services or self.catalog

    @abstractmethod
    def up(self, topology: Topology, progress: Progress) -> list[NodeStatus]:
        """Build what is missing, start every node, wait until all are healthy."""

    @abstractmethod
    def down(self, topology: Topology, progress: Progress) -> Cleaned:
        """Stop and remove the lab: nodes, networks, volumes, host rules. Returns what was
        removed and what could not be."""

    @abstractmethod
    def status(self, topology: Topology, addresses: bool = True) -> list[NodeStatus]:
        """One entry per node of the topology, running or not; without each node's addresses
        (asked of the node itself, a command each) when `addresses` is False."""

    @abstractmethod
    def exec(self, topology: Topology, node: str, argv: list[str], interactive: bool) -> int:
        """Run a command in a node; returns its exit status."""

    @abstractmethod
    def run(self, topology: Topology, node: str, argv: list[str], timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command in a node, feeding it `input`, and capture its output."""

    @abstractmethod
    def stop_node(self, topology: Topology, node: str, timeout: float) -> None:
        """Stop a node's service (its stop signal, then SIGKILL after `timeout` seconds); the
        node keeps its place in the lab, as `docker compose stop` keeps a container."""

    @abstractmethod
    def start_node(self, topology: Topology, node: str, progress: Progress) -> None:
        """Start a stopped node's service again and wait until it is healthy."""

    def node_pids(self, topology: Topology) -> dict[str, int]:
        """One process (in the host's pid namespace) per running node, inside that node's network
        namespace: how the host's kernel tracer tells which node a drop happened in. None known
        by default: drops are then named by no node."""
        return {}

    def logs(self, topology: Topology, node: str, lines: int = 20) -> list[str]:
        """The last `lines` lines its service wrote (stdout and stderr); none known by default."""
        return []

    def control_token_file(self, lab: str) -> Path:
        return self.state_root / lab / CONTROL_TOKEN_FILE

    def control_token(self, topology: Topology) -> str:
        """The token the host's Control API calls carry (hoplab.control.client.ControlClient)."""
        return read_control_token(self.control_token_file(topology.name))

    def clean_images(self, progress: Progress) -> Cleaned:
        """`hoplab clean --images`: what this backend keeps across labs (built images, prepared
        service caches), all of it; only what hoplab made."""
        return Cleaned()

    @abstractmethod
    def clean(self, lab: str | None, progress: Progress) -> Cleaned:
        """Remove everything this backend made for lab `lab` (every lab when None), whatever
        state it was left in, found by hoplab's own marks (labels, link aliases, rule comments),
        never by a name pattern. Returns what was removed and what could not be."""
