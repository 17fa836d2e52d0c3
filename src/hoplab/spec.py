"""The topology model: a YAML file validated against `topology/schema.json` and then checked for
what a schema cannot say (overlapping subnets, addresses outside their subnet, references to
nodes that do not exist). The result is pure data; backends build labs from it.

Every error names the file, the field and the reason, and they are all reported at once."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hoplab import userfile
from hoplab.paths import SCHEMA_FILE
from hoplab.services import CatalogError, Service, load_catalog

DHCP = "dhcp"  # the address value that means "ask the network's DHCP server"
CONTROL_NODE = "control"  # the control service's node, added when the topology has `management`
MANAGEMENT_NETWORK = "mgmt"
CONTROL_PORT = 50051
# An image node's own service: hoplab's sidecar beside the user's container (services/sidecar).
SIDECAR = "sidecar"

# Ranges no lab may use: TEST-NET-1 is reserved for isolation probes (docs/architecture.md);
# TEST-NET-3 is where these machines reach their package mirrors, which a lab bridge would
# shadow (the host would route to the lab instead); the rest cannot work as a lab subnet or
# belong to the host and Docker.
RESERVED_RANGES = {
    IPv4Network("192.0.2.0/24"): "TEST-NET-1, kept for isolation probes",
    IPv4Network("203.0.113.0/24"): "TEST-NET-3, where the host may reach its package mirrors",
    IPv4Network("0.0.0.0/8"): "'this' network",
    IPv4Network("127.0.0.0/8"): "loopback",
    IPv4Network("169.254.0.0/16"): "link-local",
    IPv4Network("224.0.0.0/3"): "multicast and reserved",
    IPv4Network("172.17.0.0/16"): "Docker's default bridge",
}


class TopologyError(userfile.FileError):
    """Invalid topology. `problems` is a list of (field, reason)."""

    kind = "topology"


@dataclass(frozen=True)
class DhcpScope:
    server: str  # node name
    first: IPv4Address
    last: IPv4Address
    gateway: str  # node name
    lease_time: int

    def __contains__(self, address: IPv4Address) -> bool:
        return self.first <= address <= self.last


@dataclass(frozen=True)
class Network:
    name: str
    subnet: IPv4Network
    dhcp: DhcpScope | None = None


@dataclass(frozen=True)
class Impairment:
    """What a link end does to every packet on its way out (hoplab.node.impair applies it)."""

    delay_ms: float = 0
    jitter_ms: float = 0
    loss_percent: float = 0
    rate: str = ""  # tc's units; "" = as fast as the link

    def to_runtime(self) -> dict:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms, "loss_percent": self.loss_percent,
                "rate": self.rate}

    def __str__(self) -> str:
        said = [f"delay {self.delay_ms:g} ms" + (f" ± {self.jitter_ms:g}" if self.jitter_ms else "")
                if self.delay_ms or self.jitter_ms else "", f"loss {self.loss_percent:g}%" if self.loss_percent else "",
                f"rate {self.rate}" if self.rate else ""]
        return ", ".join(part for part in said if part)


@dataclass(frozen=True)
class Interface:
    network: str
    address: IPv4Address | None  # None: configured by DHCP
    impairment: Impairment | None = None  # the topology's `impairments:` for this link end


@dataclass(frozen=True)
class Nat:
    inside: tuple[str, ...]
    outside: str


DEFAULT_TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")  # as a real site: clients negotiate TLS 1.3
PROXIES = ("lb", "cache")  # the project's services that read `upstream` (a user's own may too)
DEFAULT_HEALTH_PATH = "/health"
# How a balancer (service lb) picks a backend for each request; the topology's `algorithm`.
# Only `weighted` reads the replicas' `weight` (services/lb/start maps each to HAProxy's).
ALGORITHMS = ("round-robin", "least-connections", "weighted", "source-hash")
DEFAULT_ALGORITHM = "round-robin"
WEIGHTED = "weighted"
BALANCER = "lb"  # the service that balances: its nodes have an algorithm, their backends a weight


@dataclass(frozen=True)
class Upstream:
    """Where a proxy node sends requests: servers (node, address on a network it shares with
    the proxy) and their port; `health` is the path a balancer checks."""

    servers: tuple[tuple[str, IPv4Address], ...]
    port: int
    health: str = DEFAULT_HEALTH_PATH

    def to_runtime(self) -> dict:
        return {"servers": [[n, str(a)] for n, a in self.servers], "port": self.port, "health": self.health}


@dataclass(frozen=True)
class RateLimit:
    """The edge's limit per client address (nginx limit_req with nodelay): `requests_per_second`
    sustained, and `burst` more answered at once before it refuses with 429."""

    requests_per_second: int
    burst: int = 0

    def to_runtime(self) -> dict:
        return {"requests_per_second": self.requests_per_second, "burst": self.burst}


@dataclass(frozen=True)
class Image:
    """A node that runs a local image of the user's own (Docker only). Its node's service is
    hoplab's sidecar, which holds the node's addresses, DNS and routes and runs its agent; the
    image's container shares the sidecar's network and process namespaces."""

    ref: str
    entry: str  # the file's node entry (replicas share it), for messages: nodes.<entry>.image
    command: tuple[str, ...] = ()  # () = the image's own
    health: tuple[str, ...] = ()  # () = the image's own HEALTHCHECK, if any
    ports: tuple[int, ...] = ()  # what it listens on: an upstream's default port; never published
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Node:
    """One running node; a replicated entry of the file gives several (web1, web2, ...)."""

    name: str
    service: str
    interfaces: tuple[Interface, ...]
    nat: Nat | None = None
    tls_protocols: tuple[str, ...] = DEFAULT_TLS_PROTOCOLS  # what a TLS server on it offers (the edge)
    upstream: Upstream | None = None  # a proxy's backends or origin, when the topology chooses them
    sites: tuple[tuple[str, Upstream], ...] = ()  # the edge's other names (NAME.<domain>) and where each goes
    image: Image | None = None  # the user's image, beside the sidecar (service SIDECAR)
    rate_limit: RateLimit | None = None  # the edge's requests per client address; None: no limit
    algorithm: str | None = None  # a balancer's (ALGORITHMS); None on every other node
    weight: int | None = None  # a balancer's backend: its share under a weighted balancer; None: not given (1)

    def address_on(self, network: str) -> IPv4Address | None:
        for iface in self.interfaces:
            if iface.network == network:
                return iface.address
        return None

    @property
    def static_addresses(self) -> list[tuple[str, IPv4Address]]:
        return [(i.network, i.address) for i in self.interfaces if i.address is not None]


@dataclass(frozen=True)
class Domain:
    name: str
    server: str
    mx: str | None
    records: dict[str, IPv4Address]


@dataclass(frozen=True)
class Management:
    """The control plane's own network: every node has an address on it, after the control
    service's. Agents reach the control service here; nothing on it is ever traced."""

    subnet: IPv4Network
    control: IPv4Address
    port: int
    addresses: dict[str, IPv4Address]  # node -> its address, the control node's included

    @property
    def api_port(self) -> int:
        """The Control API's own port, next to the agents' (`port`): served to the host only,
        with the lab's token (see hoplab.control.server)."""
        return self.port + 1

    @property
    def host_address(self) -> IPv4Address:
        """The host's own address on the management bridge (the CLI dials the control service
        from it): the subnet's highest, which the validation keeps free."""
        return self.subnet.broadcast_address - 1


@dataclass(frozen=True)
class Topology:
    name: str
    source: Path
    domain: Domain
    networks: dict[str, Network]
    nodes: dict[str, Node]  # expanded replicas, in file order
    management: Management | None = None
    # The catalog the topology was checked against: its own service_dirs' services first, then
    # the project's. Backends read services from here.
    services: dict[str, Service] = field(default_factory=dict, compare=False)
    service_dirs: tuple[Path, ...] = ()
    locustfile: Path | None = None  # `load: locustfile:`, resolved against the topology's folder

    @property
    def dns_address(self) -> IPv4Address:
        return self.nodes[self.domain.server].static_addresses[0][1]

    def bridge_names(self, prefix: str) -> dict[str, str]:
        """A host bridge per network (the management one included), `<prefix>-<lab>-<network>`,
        or the network's index when that is longer than Linux's 15 characters."""
        names = {}
        networks = list(self.networks) + ([MANAGEMENT_NETWORK] if self.management else [])
        for index, net in enumerate(networks):
            name = f"{prefix}-{self.name}-{net}"
            names[net] = name if len(name) <= 15 else f"{prefix}-{self.name}-{index}"
        return names

    def nodes_of(self, service: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.service == service]

    def waits_for(self, node: str, services: dict[str, Service] | None = None) -> list[str]:
        """The nodes that must be healthy before `node` starts: those of the services its own
        declares `after`, and the servers of its upstream and sites (a balancer whose backends
        are not up yet is not healthy)."""
        this = self.nodes[node]
        catalog = services or self.services
        names = [other.name for dep in (catalog[this.service].after if this.service in catalog else ())
                 for other in self.nodes_of(dep)]
        for upstream in ([this.upstream] if this.upstream else []) + [u for _, u in this.sites]:
            names += [server for server, _ in upstream.servers]
        return list(dict.fromkeys(n for n in names if n != node))

    def free_addresses(self, network: str) -> list[IPv4Address]:
        """A data network's addresses that no node holds and no DHCP pool hands out, highest
        first."""
        net = self.networks[network]
        taken = {n.address_on(network) for n in self.nodes.values()} - {None}
        return [a for a in reversed(list(net.subnet.hosts())) if a not in taken and not (net.dhcp and a in net.dhcp)]

    def bridge_address(self, network: str) -> IPv4Address | None:
        """The address a container engine reserves for a data network's bridge (its IPAM
        gateway): the highest free one. hoplab's Docker networks keep it off the bridge
        (inhibit_ipv4), so the host holds no address on a data network; it is never handed out
        or picked as a "wrong" address all the same."""
        free = self.free_addresses(network)
        return free[0] if free else None

    def interim_range(self, network: str) -> IPv4Network | None:
        """Where a container engine may put a DHCP client's interface before its lease replaces
        the address: the highest block of free addresses (bridge address excluded) big enough for
        the network's DHCP clients, its own network and broadcast addresses unused."""
        count = sum(1 for n in self.nodes.values() for i in n.interfaces if i.network == network and i.address is None)
        if not count:
            return None
        subnet = self.networks[network].subnet
        usable = set(self.free_addresses(network)) - {self.bridge_address(network)}
        prefix = 32
        while 2 ** (32 - prefix) < count + 2:
            prefix -= 1
        for block in reversed(list(subnet.subnets(new_prefix=max(prefix, subnet.prefixlen)))):
            if all(a in usable for a in block) and block.network_address != subnet.network_address:
                return block
        return None

    @cached_property
    def zone(self) -> dict:
        """The forward and reverse DNS data the lab's DNS server serves."""
        records = []
        owners: dict[IPv4Address, str] = {}
        for node in self.nodes.values():
            # A multi-homed node is named by its first network's address (a client must not be
            # handed an address it has no route to); each of its addresses still has a PTR.
            for index, (_, address) in enumerate(node.static_addresses):
                if index == 0:
                    records.append((node.name, "A", str(address)))
                owners.setdefault(address, node.name)
        for name, address in self.domain.records.items():
            records.append((name, "A", str(address)))
            owners.setdefault(address, name)
        for node in self.nodes.values():  # an edge's sites: NAME.<domain> is the edge
            for name, _ in node.sites:
                records.append((name, "A", str(node.static_addresses[0][1])))
        if self.domain.mx:
            records.append(("@", "MX", f"10 {self.domain.mx}.{self.domain.name}."))
        reverse: dict[str, list[tuple[str, str]]] = {}
        for address, owner in sorted(owners.items()):
            octets = str(address).split(".")
            zone = ".".join(reversed(octets[:3])) + ".in-addr.arpa"
            reverse.setdefault(zone, []).append((octets[3], f"{owner}.{self.domain.name}."))
        return {"name": self.domain.name, "ns": self.domain.server, "records": records, "reverse": reverse}

    def to_runtime(self) -> dict:
        """What every node's start script reads (`/etc/hoplab/lab.json`): resolved addresses
        only, so the node runtime needs no YAML, no schema and no validation."""
        networks = {}
        for net in self.networks.values():
            entry: dict = {"subnet": str(net.subnet)}
            if net.dhcp:
                entry["dhcp"] = {
                    "server": net.dhcp.server,
                    "first": str(net.dhcp.first),
                    "last": str(net.dhcp.last),
                    "gateway": str(self.nodes[net.dhcp.gateway].address_on(net.name)),
                    "lease_time": net.dhcp.lease_time,
                }
            networks[net.name] = entry
        nodes = {}
        for node in self.nodes.values():
            entry = {
                "service": node.service,
                "interfaces": [
                    {"network": i.network, "address": str(i.address) if i.address else None,
                     "prefixlen": self.networks[i.network].subnet.prefixlen,
                     **({"impairment": i.impairment.to_runtime()} if i.impairment else {})}
                    for i in node.interfaces
                ],
            }
            entry["tls"] = {"protocols": list(node.tls_protocols)}
            if node.image:
                entry["image"] = {"ref": node.image.ref, "ports": list(node.image.ports)}
            if node.upstream:
                entry["upstream"] = node.upstream.to_runtime()
            if node.rate_limit:
                entry["rate_limit"] = node.rate_limit.to_runtime()
            if node.algorithm:
                entry["algorithm"] = node.algorithm
            if node.weight is not None:
                entry["weight"] = node.weight
            if node.sites:
                entry["sites"] = {f"{name}.{self.domain.name}": up.to_runtime() for name, up in node.sites}
            if node.nat:
                entry["nat"] = {
                    "inside": [{"network": n, "subnet": str(self.networks[n].subnet)} for n in node.nat.inside],
                    "outside": node.nat.outside,
                }
            nodes[node.name] = entry
        management = None
        if self.management:
            management = {"subnet": str(self.management.subnet), "control": str(self.management.control),
                          "port": self.management.port, "api_port": self.management.api_port,
                          "host": str(self.management.host_address),
                          "addresses": {n: str(a) for n, a in self.management.addresses.items()}}
        return {
            "lab": self.name,
            "management": management,
            "domain": self.domain.name,
            "dns_server": str(self.dns_address),
            "networks": networks,
            "nodes": nodes,
            "zone": self.zone,
        }

    def runtime_json(self) -> str:
        return json.dumps(self.to_runtime(), indent=1, sort_keys=True) + "\n"


# ---------------------------------------------------------------- loading and validation


def load(path: Path | str, catalog: dict[str, Service] | None = None) -> Topology:
    return from_data(userfile.read_yaml(path, TopologyError), Path(path), catalog)


def _image_node_reason(err, field: str) -> str | None:
    """The topology's own words for what the schema says about image nodes (None: the
    generic reason)."""
    if err.validator == "pattern" and list(err.absolute_path)[-1:] == ["image"]:
        return f"{err.instance!r} is not an image reference (NAME[:TAG] or NAME@sha256:DIGEST)"
    if err.validator == "pattern" and "HOPLAB_" in err.validator_value:
        return f"{err.instance!r}: names starting HOPLAB_ are hoplab's; others must match [A-Za-z_][A-Za-z0-9_]*"
    if err.validator == "oneOf" and field.startswith("nodes."):  # service or image
        return ("give either service (a service folder) or image (a local Docker image), not both"
                if isinstance(err.instance, dict) and {"service", "image"} <= err.instance.keys() else
                "needs service (a service folder) or image (a local Docker image)")
    if err.validator == "dependentRequired":
        needing = sorted(k for k, v in err.validator_value.items() if k in err.instance and v[0] not in err.instance)
        return f"{', '.join(needing)}: only for a node that runs an image (give image, or drop them)"
    return None


def _rate_limit_reason(err, field: str) -> str | None:
    """The topology's own words for a bad `rate_limit` value (None: the generic reason)."""
    if ".rate_limit." not in f".{field}." or isinstance(err.instance, dict):
        return None
    if err.validator == "type":
        return f"{err.instance!r} is not a whole number"
    if err.validator == "minimum" and field.endswith(".requests_per_second"):
        return f"{err.instance} is not a rate: at least 1 request per second (for no limit, leave rate_limit out)"
    if err.validator == "minimum" and field.endswith(".burst"):
        return f"{err.instance} is not a burst: 0 or more requests"
    return None


def _balancing_reason(err, field: str) -> str | None:
    """The topology's own words for a bad `algorithm` or `weight` (None: the generic reason)."""
    parts = field.split(".")
    if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "algorithm" and err.validator == "enum":
        return f"{err.instance!r} is not an algorithm: {', '.join(ALGORITHMS)}"
    if not (len(parts) in (3, 4) and parts[0] == "nodes" and parts[2] == "weight"):
        return None
    if err.validator == "type":
        return (f"{err.instance!r} is not a weight: a whole number from 1 to 256, "
                "or a list of them, one per replica")
    if err.validator == "minimum":
        return f"{err.instance} is not a weight: 1 to 256 (to send a replica nothing, leave it out of the upstream)"
    if err.validator == "maximum":
        return f"{err.instance} is not a weight: 1 to 256 (HAProxy's largest is 256)"
    return None


def _impairment_reason(err, field: str) -> str | None:
    """The topology's own words for a bad `impairments` entry (None: the generic reason)."""
    if not field.startswith("impairments"):
        return None
    if err.validator == "pattern" and field == "impairments":
        return f"{err.instance!r} is not a link end: NODE:NETWORK (client:home)"
    if err.validator == "pattern" and field.endswith(".rate"):
        return f"{err.instance!r} is not a rate: a whole number above 0 and a unit (bit, kbit, mbit, gbit)"
    if err.validator == "minProperties":
        return "give at least one of delay_ms, jitter_ms, loss_percent, rate"
    if err.validator in ("minimum", "maximum"):
        unit = "%" if field.endswith("_percent") else " ms"
        return f"{err.instance}{unit} is outside 0..{err.schema.get('maximum')}{unit}"
    return None


def _own_reason(err, field: str) -> str | None:
    return (_image_node_reason(err, field) or _rate_limit_reason(err, field) or _balancing_reason(err, field)
            or _impairment_reason(err, field))


def service_dirs(data: dict, source: Path | str) -> tuple[Path, ...]:
    """The topology's `service_dirs`, relative to the topology file; each must be a folder."""
    base = Path(source).resolve().parent
    folders, problems = [], []
    for index, text in enumerate(data.get("service_dirs") or ()):
        folder = (base / text).resolve()
        if not folder.is_dir():
            problems.append((f"service_dirs.{index}", f"{text!r} is not a folder ({folder})"))
        elif not any(folder.glob("*/service.yaml")):
            problems.append((f"service_dirs.{index}", f"{folder} holds no <name>/service.yaml"))
        folders.append(folder)
    if problems:
        raise TopologyError(source, problems)
    return tuple(folders)


def from_data(data, source: Path | str, catalog: dict[str, Service] | None = None) -> Topology:
    """`catalog`: the services to check against (default: the project's). A topology's
    `service_dirs` come before it; a bad service.yaml there raises CatalogError."""
    if not isinstance(data, dict):
        raise TopologyError(source, [("(top level)", "expected a mapping of name, domain, networks, nodes")])
    problems = userfile.schema_problems(SCHEMA_FILE, data, _own_reason)
    if problems:
        raise TopologyError(source, problems)
    folders = service_dirs(data, source)
    if folders:
        catalog = {**(catalog if catalog is not None else load_catalog()), **load_catalog(extra=folders)}
    elif catalog is None:
        catalog = load_catalog()
    checker = _Checker(data, catalog)
    topology = checker.build(source)
    if checker.problems:
        raise TopologyError(source, checker.problems)
    locustfile = None
    if (data.get("load") or {}).get("locustfile"):
        locustfile = (Path(source).resolve().parent / data["load"]["locustfile"]).resolve()
        if not locustfile.is_file():
            raise TopologyError(source, [("load.locustfile", f"{data['load']['locustfile']!r} is not a file ({locustfile})")])
    return dataclasses.replace(topology, services=catalog, service_dirs=folders, locustfile=locustfile)


class _Checker:
    """The checks a schema cannot express. Collects every problem instead of stopping."""

    def __init__(self, data: dict, catalog: dict[str, Service]):
        self.data = data
        self.catalog = catalog
        self.problems: list[tuple[str, str]] = []
        self.entries: dict[str, list[str]] = {}  # a node entry of the file -> its nodes (replicas)

    def fail(self, field: str, reason: str) -> None:
        self.problems.append((field, reason))

    def _address(self, field: str, text: str) -> IPv4Address | None:
        try:
            return IPv4Address(text)
        except ValueError:
            self.fail(field, f"{text!r} is not an IPv4 address")
            return None

    def build(self, source) -> Topology:
        networks = self._networks()
        nodes = self._nodes(networks)
        self._upstreams(nodes)
        self._weights(nodes)
        self._impairments(nodes)
        self._dhcp_scopes(networks, nodes)
        domain = self._domain(networks, nodes)
        management = self._management(networks, nodes)
        return Topology(self.data["name"], Path(source), domain, networks, nodes, management)

    def _subnet(self, field: str, text: str, networks: dict[str, Network]) -> IPv4Network | None:
        try:
            subnet = IPv4Network(text)
        except ValueError as exc:
            self.fail(field, f"{text!r} is not an IPv4 subnet ({exc})")
            return None
        if not 16 <= subnet.prefixlen <= 29:
            self.fail(field, f"{subnet} must be between /16 and /29")
            return None
        clash = next((r for r in RESERVED_RANGES if subnet.overlaps(r)), None)
        if clash:
            self.fail(field, f"{subnet} overlaps {clash} ({RESERVED_RANGES[clash]})")
            return None
        other = next((n for n in networks.values() if n.subnet.overlaps(subnet)), None)
        if other:
            self.fail(field, f"{subnet} overlaps networks.{other.name} ({other.subnet})")
            return None
        return subnet

    def _networks(self) -> dict[str, Network]:
        networks: dict[str, Network] = {}
        for name, spec in self.data["networks"].items():
            subnet = self._subnet(f"networks.{name}.subnet", spec["subnet"], networks)
            if subnet is not None:
                networks[name] = Network(name, subnet)
        return networks

    def _management(self, networks: dict[str, Network], nodes: dict[str, Node]) -> Management | None:
        spec = self.data.get("management")
        if spec is None:
            return None
        if MANAGEMENT_NETWORK in self.data["networks"]:
            self.fail(f"networks.{MANAGEMENT_NETWORK}", "the name is the management network's")
        if CONTROL_NODE in nodes:
            self.fail(f"nodes.{CONTROL_NODE}", "the name is the control service's (see management)")
            return None
        subnet = self._subnet("management.subnet", spec["subnet"], networks)
        control = self._address("management.control", spec["control"])
        if subnet is None or control is None:
            return None
        if control not in subnet or control in (subnet.network_address, subnet.broadcast_address):
            self.fail("management.control", f"{control} is not a host address of {subnet}")
            return None
        names = [CONTROL_NODE, *nodes]
        # One address each from the control service's on, and one left for the host's bridge.
        if int(control) + len(names) >= int(subnet.broadcast_address):
            self.fail("management.subnet", f"{subnet} has no room for {len(names)} nodes from {control} on")
            return None
        addresses = {name: control + i for i, name in enumerate(names)}
        nodes[CONTROL_NODE] = Node(CONTROL_NODE, "control", ())
        port = spec.get("port", CONTROL_PORT)
        if port >= 65535:
            self.fail("management.port", f"{port} leaves no port after it for the Control API (port + 1)")
            return None
        return Management(subnet, control, port, addresses)

    def _nodes(self, networks: dict[str, Network]) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        used: dict[IPv4Address, str] = {}
        for name, spec in self.data["nodes"].items():
            field = f"nodes.{name}"
            image = self._image(field, name, spec)
            service = SIDECAR if image else spec["service"]
            if not image and service not in self.catalog:
                self.fail(f"{field}.service", f"unknown service {service!r} "
                          f"(known: {', '.join(sorted(self.catalog))})")
            replicas = spec.get("replicas", 1)
            names = [name] if replicas == 1 else [f"{name}{i}" for i in range(1, replicas + 1)]
            self.entries[name] = names
            interfaces: list[list[Interface]] = [[] for _ in names]
            for net_name, value in spec["networks"].items():
                nfield = f"{field}.networks.{net_name}"
                net = networks.get(net_name)
                if net is None:
                    if net_name not in self.data["networks"]:
                        self.fail(nfield, f"unknown network {net_name!r}")
                    continue
                if value == DHCP:
                    if "dhcp" not in self.data["networks"][net_name]:
                        self.fail(nfield, f"'dhcp' needs networks.{net_name}.dhcp")
                    for ifaces in interfaces:
                        ifaces.append(Interface(net_name, None))
                    continue
                first = self._address(nfield, value)
                if first is None:
                    continue
                for i, ifaces in enumerate(interfaces):
                    if int(first) + i > int(IPv4Address("255.255.255.255")):
                        self.fail(nfield, f"replica {names[i]}'s address runs past 255.255.255.255")
                        continue
                    address = first + i
                    label = f"{address} (replica {names[i]})" if replicas > 1 else str(address)
                    if address not in net.subnet or address in (net.subnet.network_address,
                                                                 net.subnet.broadcast_address):
                        self.fail(nfield, f"{label} is not a host address of {net.subnet}")
                    elif address in used:
                        self.fail(nfield, f"{label} is already used by {used[address]}")
                    else:
                        used[address] = names[i]
                        ifaces.append(Interface(net_name, address))
            nat = self._nat(field, spec, networks)
            rate_limit = self._rate_limit(field, spec)
            algorithm = self._algorithm(field, spec)
            weights = self._weight_list(field, spec, names)
            for i, instance in enumerate(names):
                if instance in nodes:
                    self.fail(field, f"node name {instance!r} is already taken")
                    continue
                nodes[instance] = Node(instance, service, tuple(interfaces[i]), nat,
                                       tuple(spec.get("tls", {}).get("protocols", DEFAULT_TLS_PROTOCOLS)),
                                       image=image, rate_limit=rate_limit, algorithm=algorithm, weight=weights[i])
        return nodes

    def _algorithm(self, field: str, spec: dict) -> str | None:
        if spec.get("service") == BALANCER:
            return spec.get("algorithm", DEFAULT_ALGORITHM)
        if "algorithm" in spec:
            what = f"service {spec['service']!r}" if "service" in spec else f"image {spec['image']!r}"
            self.fail(f"{field}.algorithm", f"only a balancer (service {BALANCER!r}) has an algorithm, not {what}")
        return None

    def _weight_list(self, field: str, spec: dict, names: list[str]) -> list[int | None]:
        """The entry's `weight` for each of its replicas: one for all, or one each in order."""
        weight = spec.get("weight")
        if not isinstance(weight, list):
            return [weight] * len(names)
        if len(weight) != len(names):
            self.fail(f"{field}.weight", f"{len(weight)} weights for {len(names)} node(s) ({', '.join(names)}): "
                                         "give one for all, or one per replica")
            return [None] * len(names)
        return list(weight)

    def _weights(self, nodes: dict[str, Node]) -> None:
        """A `weight` is for a balancer's backend, and one that a weighted balancer reads: a
        weight no balancer would use is refused, not ignored."""
        backends: dict[str, list[Node]] = {}  # node -> the balancers that send it requests
        for lb in (n for n in nodes.values() if n.service == BALANCER):
            for server in self._balanced(lb, nodes):
                backends.setdefault(server, []).append(lb)
        for name, spec in self.data["nodes"].items():
            if "weight" not in spec:
                continue
            field = f"nodes.{name}.weight"
            instances = [n for n in self.entries.get(name, []) if n in nodes]
            strays = [n for n in instances if n not in backends]
            if strays:
                self.fail(field, f"{', '.join(map(repr, strays))}: not behind a balancer; a weight is for a backend of "
                                 f"a {BALANCER} node (a web node on its network, or a node its upstream names)")
                continue
            unweighed = [n for n in instances if not any(lb.algorithm == WEIGHTED for lb in backends[n])]
            if unweighed:
                balancers = sorted({f"{lb.name} ({lb.algorithm})" for n in unweighed for lb in backends[n]})
                self.fail(field, f"no balancer of {', '.join(unweighed)} reads weights: {', '.join(balancers)}; "
                                 f"only algorithm {WEIGHTED!r} does")

    @staticmethod
    def _balanced(lb: Node, nodes: dict[str, Node]) -> list[str]:
        """The nodes a balancer sends requests to: its upstream's, else every web node with a
        static address on a network it is on (as services/lb/start finds them)."""
        if lb.upstream:
            return [name for name, _ in lb.upstream.servers]
        mine = {i.network for i in lb.interfaces}
        return [n.name for n in nodes.values() if n.service == "web" and any(net in mine for net, _ in n.static_addresses)]

    def _impairments(self, nodes: dict[str, Node]) -> None:
        """Each `NODE:NETWORK` onto its interface: NODE a node or a replicated entry (all its
        replicas), NETWORK one the node is on; jitter no larger than the delay."""
        for key, spec in (self.data.get("impairments") or {}).items():
            field = f"impairments.{key}"
            entry, network = key.split(":")
            names = self.entries.get(entry) or ([entry] if entry in nodes else [])
            if not names:
                self.fail(field, f"unknown node {entry!r} (nodes: {', '.join(nodes)})")
                continue
            if spec.get("jitter_ms", 0) > spec.get("delay_ms", 0):
                self.fail(f"{field}.jitter_ms", f"{spec['jitter_ms']:g} ms is more than the delay "
                                                f"({spec.get('delay_ms', 0):g} ms): a packet cannot leave before it came")
                continue
            impairment = Impairment(spec.get("delay_ms", 0), spec.get("jitter_ms", 0), spec.get("loss_percent", 0),
                                    spec.get("rate", ""))
            for name in names:
                node = nodes[name]
                if network not in [i.network for i in node.interfaces]:
                    self.fail(field, f"{name} has no interface on {network!r} "
                                     f"(its networks: {', '.join(i.network for i in node.interfaces)})")
                    break
                nodes[name] = dataclasses.replace(node, interfaces=tuple(
                    dataclasses.replace(i, impairment=impairment) if i.network == network else i
                    for i in node.interfaces))

    def _rate_limit(self, field: str, spec: dict) -> RateLimit | None:
        if "rate_limit" not in spec:
            return None
        if spec.get("service") != "cache":
            what = f"service {spec['service']!r}" if "service" in spec else f"image {spec['image']!r}"
            self.fail(f"{field}.rate_limit", f"only a cache (the edge) limits requests, not {what}")
            return None
        limit = spec["rate_limit"]
        return RateLimit(limit["requests_per_second"], limit.get("burst", 0))

    def _image(self, field: str, name: str, spec: dict) -> Image | None:
        if "image" not in spec:
            return None
        sidecar = self.catalog.get(SIDECAR)
        if sidecar is None or sidecar.user:
            self.fail(f"{field}.image", f"an image node needs hoplab's own {SIDECAR!r} service, "
                                        f"which {'a service folder of yours hides' if sidecar else 'is missing'}")
        return Image(spec["image"], name, tuple(spec.get("command", ())), tuple(spec.get("health", ())),
                     tuple(spec.get("ports", ())), tuple((k, str(v)) for k, v in (spec.get("env") or {}).items()))

    def _upstreams(self, nodes: dict[str, Node]) -> None:
        """`upstream` and `sites`: each named node (a replicated entry: all its replicas) must
        share a network with the proxy, where it has a static address."""
        entries = self.entries
        for name, spec in self.data["nodes"].items():
            field = f"nodes.{name}"
            what = f"service {spec['service']!r}" if "service" in spec else f"image {spec['image']!r}"
            if "upstream" in spec and spec.get("service") not in PROXIES and not getattr(
                    self.catalog.get(spec.get("service")), "user", False):
                self.fail(f"{field}.upstream", f"{what} reads no upstream "
                                               f"(only {', '.join(PROXIES)} or a service of your own)")
            if "sites" in spec and spec.get("service") != "cache":
                self.fail(f"{field}.sites", f"only a cache (the edge) serves sites, not {what}")
            for instance in [n for n in entries.get(name, []) if n in nodes]:
                node = nodes[instance]
                upstream = self._upstream(f"{field}.upstream", node, spec["upstream"], nodes, entries) \
                    if "upstream" in spec else None
                sites = tuple((label, up) for label, value in (spec.get("sites") or {}).items()
                              if (up := self._upstream(f"{field}.sites.{label}", node, value, nodes, entries)))
                if sites and not node.static_addresses:
                    self.fail(f"{field}.sites", f"node {instance!r} has no static address for the sites' records")
                for label, _ in sites:
                    if label in nodes or label in (self.data["domain"].get("records") or {}):
                        self.fail(f"{field}.sites.{label}", f"{label!r} is already a node or a record of the domain")
                nodes[instance] = dataclasses.replace(node, upstream=upstream, sites=sites)

    def _upstream(self, field: str, proxy: Node, spec: dict, nodes: dict[str, Node],
                  entries: dict[str, list[str]]) -> Upstream | None:
        servers = []
        for name in spec["nodes"]:
            targets = [n for n in entries.get(name) or [name] if n in nodes]
            if not targets:
                self.fail(f"{field}.nodes", f"unknown node {name!r}")
            for target in targets:
                if target == proxy.name:
                    self.fail(f"{field}.nodes", f"{target!r} is the proxy itself")
                    continue
                on = {i.network for i in proxy.interfaces}
                shared = [a for net, a in nodes[target].static_addresses if net in on]
                if not shared:
                    self.fail(f"{field}.nodes", f"node {target!r} has no static address on a network {proxy.name!r} is on")
                    continue
                servers.append((target, shared[0]))
        if not servers:
            return None
        port = spec.get("port") or self._declared_port(field, [n for n, _ in servers], nodes)
        if port is None:
            return None
        return Upstream(tuple(servers), port, spec.get("health", DEFAULT_HEALTH_PATH))

    def _declared_port(self, field: str, servers: list[str], nodes: dict[str, Node]) -> int | None:
        """An upstream without `port`: the one its servers declare (an image node's first `ports`)."""
        declared = {n: nodes[n].image.ports[0] if nodes[n].image and nodes[n].image.ports else None for n in servers}
        if len(set(declared.values())) == 1 and None not in declared.values():
            return declared[servers[0]]
        self.fail(f"{field}.port", "required unless every node named declares the same first port "
                                   "(an image node's ports); " + ", ".join(f"{n}: {p or 'none'}" for n, p in declared.items()))
        return None

    def _nat(self, field: str, spec: dict, networks: dict[str, Network]) -> Nat | None:
        if "nat" not in spec:
            return None
        if spec.get("service") != "router":
            self.fail(f"{field}.nat", "only a router node does NAT")
        nat = Nat(tuple(spec["nat"]["inside"]), spec["nat"]["outside"])
        for net_name in (*nat.inside, nat.outside):
            if net_name not in spec["networks"]:
                self.fail(f"{field}.nat", f"network {net_name!r} is not one of this node's networks")
        if nat.outside in nat.inside:
            self.fail(f"{field}.nat", f"{nat.outside!r} cannot be both inside and outside")
        return nat

    def _static_node_on(self, field: str, node_name: str, network: str, nodes: dict[str, Node],
                        service: str | None = None) -> Node | None:
        node = nodes.get(node_name)
        if node is None:
            self.fail(field, f"unknown node {node_name!r}")
        elif service and node.service != service:
            self.fail(field, f"node {node_name!r} runs {node.service!r}, not {service!r}")
        elif node.address_on(network) is None:
            self.fail(field, f"node {node_name!r} has no static address on network {network!r}")
        else:
            return node
        return None

    def _dhcp_scopes(self, networks: dict[str, Network], nodes: dict[str, Node]) -> None:
        for name, spec in self.data["networks"].items():
            if "dhcp" not in spec or name not in networks:
                continue
            dspec, field = spec["dhcp"], f"networks.{name}.dhcp"
            subnet = networks[name].subnet
            self._static_node_on(f"{field}.server", dspec["server"], name, nodes, service="dhcp")
            self._static_node_on(f"{field}.gateway", dspec["gateway"], name, nodes)
            bounds = dspec["pool"].split("-")
            if len(bounds) != 2:
                self.fail(f"{field}.pool", f"{dspec['pool']!r} is not FIRST-LAST")
                continue
            first, last = (self._address(f"{field}.pool", b.strip()) for b in bounds)
            if first is None or last is None:
                continue
            if not (subnet.network_address < first <= last < subnet.broadcast_address):
                self.fail(f"{field}.pool", f"{first}-{last} is not an ascending range of host addresses of {subnet}")
                continue
            scope = DhcpScope(dspec["server"], first, last, dspec["gateway"], dspec.get("lease_time", 3600))
            for node in nodes.values():
                address = node.address_on(name)
                if address is not None and address in scope:
                    self.fail(f"{field}.pool", f"{first}-{last} contains {node.name}'s static address {address}")
            networks[name] = Network(name, subnet, scope)

    def _domain(self, networks: dict[str, Network], nodes: dict[str, Node]) -> Domain:
        spec = self.data["domain"]
        server = nodes.get(spec["server"])
        if server is None:
            self.fail("domain.server", f"unknown node {spec['server']!r}")
        elif server.service != "dns":
            self.fail("domain.server", f"node {server.name!r} runs {server.service!r}, not 'dns'")
        elif not server.static_addresses:
            self.fail("domain.server", f"node {server.name!r} has no static address")
        records: dict[str, IPv4Address] = {}
        for name, value in (spec.get("records") or {}).items():
            field = f"domain.records.{name}"
            address = self._address(field, value)
            if address is None:
                continue
            if not any(address in n.subnet for n in networks.values()):
                self.fail(field, f"{address} is outside every lab subnet")
            elif name in nodes:
                self.fail(field, f"{name!r} is already the name of a node")
            else:
                records[name] = address
        mx = spec.get("mx")
        if mx and mx not in records and mx not in nodes:
            self.fail("domain.mx", f"{mx!r} is neither a node nor a record")
        return Domain(spec["name"], spec["server"], mx, records)

