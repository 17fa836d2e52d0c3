"""Driving a lab the way a user does, and reading the host's state. Tests call the backend in
process (`Lab.exec`, `Lab.status`: no CLI start-up per command); the tests about the CLI itself
go through `Lab.hoplab` / `hoplab`, a `hoplab` process each, as a user would."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import yaml

from hoplab import cli, spec
from hoplab.backends import nodeproc
from hoplab.backends.base import Backend
from hoplab.backends.netns import NetnsBackend, debian_packages, missing_packages
from hoplab.paths import BUILD_DIR, TOPOLOGY_DIR
from hoplab.services import load_catalog

HOPLAB = [sys.executable, "-m", "hoplab"]
LAB_TOPOLOGY = TOPOLOGY_DIR / "lab.yaml"
DUO_TOPOLOGY = TOPOLOGY_DIR / "duo.yaml"
BACKENDS = ("docker", "netns")
OTHER = {"docker": "netns", "netns": "docker"}  # each backend's counterpart
# The two backends' suites run at the same time, one per worker (`make test`). The Docker suite
# runs the shipped topologies; the netns suite their twins (`twin`): the same networks, nodes
# and data subnets under another lab name and management subnet, since the host holds an
# address on every management bridge and on no data bridge.
EXAMPLE = TOPOLOGY_DIR.parent / "examples" / "own-service"
EXAMPLE_TOPOLOGY = EXAMPLE / "notes.yaml"
EXAMPLE_IMAGE_TOPOLOGY = EXAMPLE / "notes-image.yaml"  # Docker only, its own name and subnets
TWINS = {LAB_TOPOLOGY: ("nlab", "172.31.253.0/24"), DUO_TOPOLOGY: ("nduo", "172.30.253.0/26"),
         EXAMPLE_TOPOLOGY: ("nnotes", "172.29.253.0/26")}
TWIN_DIR = BUILD_DIR / "test-topologies"


def hoplab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`hoplab ARGS...` as a user types it, run in this process (`cli.main`, which the installed
    script calls): the same parsing, checks, output and exit status, without a new Python each
    time. `hoplab_process` runs a real process, for the tests about processes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code if isinstance(exc.code, int) else 2
    return _checked(subprocess.CompletedProcess(["hoplab", *args], code, out.getvalue(), err.getvalue()), check)


def hoplab_process(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m hoplab ARGS...` as its own process."""
    return _checked(subprocess.run([*HOPLAB, *args], capture_output=True, text=True, timeout=timeout), check)


def _checked(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, result.args))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def twin(path: Path, name: str, management: str) -> Path:
    """`path`'s topology as lab `name` on management subnet `management` (every management
    address at the same offset) and on data subnets of its own (`twin_subnet`, every address
    at the same offset), written under build/test-topologies/."""
    data = yaml.safe_load(path.read_text())
    old, new = ipaddress.IPv4Network(data["management"]["subnet"]), ipaddress.IPv4Network(management)
    offset = int(ipaddress.IPv4Address(data["management"]["control"])) - int(old.network_address)
    data["name"] = name
    # paths in the topology are relative to its file: the twin lives elsewhere
    if "service_dirs" in data:
        data["service_dirs"] = [str((path.parent / d).resolve()) for d in data["service_dirs"]]
    if "locustfile" in data.get("load", {}):
        data["load"]["locustfile"] = str((path.parent / data["load"]["locustfile"]).resolve())
    data["management"]["subnet"] = str(new)
    data["management"]["control"] = str(new.network_address + offset)
    # Data subnets of their own too: bridged packets of every lab meet in the host's one
    # connection-tracking table (bridge netfilter), where two labs' identical address pairs
    # would be one flow.
    moves = {ipaddress.IPv4Network(n["subnet"]): twin_subnet(ipaddress.IPv4Network(n["subnet"]))
             for n in data["networks"].values()}
    data = _moved(data, moves)
    TWIN_DIR.mkdir(parents=True, exist_ok=True)
    out = TWIN_DIR / f"{name}.yaml"
    text = f"# The twin of {path.name} for the netns suite (tests/e2e/helpers.py); do not edit.\n"
    text += yaml.safe_dump(data, sort_keys=False)
    if not out.exists() or out.read_text() != text:  # two workers may write it: same bytes
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.rename(out)
    return out


IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def twin_subnet(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """A twin's data subnet: TEST-NET-2 moves to 198.18.100.0/24 (the benchmarking range; never
    TEST-NET-3, where the host reaches its package mirrors), a private one moves 100 up in its
    third octet (192.168.50.0/24 -> 192.168.150.0/24)."""
    if subnet.subnet_of(ipaddress.IPv4Network("198.51.100.0/24")):
        return ipaddress.IPv4Network(f"198.18.100.{subnet.network_address.packed[3]}/{subnet.prefixlen}")
    a, b, c, d = subnet.network_address.packed
    return ipaddress.IPv4Network(f"{a}.{b}.{c + 100}.{d}/{subnet.prefixlen}")


def _moved(value, moves: dict):
    """`value` with every address in a moved subnet at the same offset in its new one."""
    if isinstance(value, dict):
        return {k: _moved(v, moves) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, moves) for v in value]
    if isinstance(value, str):
        def move(match):
            address = ipaddress.IPv4Address(match[0])
            old = next((net for net in moves if address in net), None)
            return str(moves[old].network_address + (int(address) - int(old.network_address))) if old else match[0]
        return IPV4.sub(move, value)
    return value


def suite_topology(path: Path, backend: str) -> Path:
    """The topology file a backend's suite runs for `path` (LAB_TOPOLOGY or DUO_TOPOLOGY)."""
    return path if backend == "docker" else twin(path, *TWINS[path])


def all_lab_subnets() -> list[str]:
    """Every subnet any lab of either suite uses (what must never show on the host's uplink)."""
    from hoplab.backends.base import subnets

    paths = [*TWINS, *(twin(path, *names) for path, names in TWINS.items()), EXAMPLE_IMAGE_TOPOLOGY]
    return sorted({str(subnet) for path in paths for _, subnet in subnets(spec.load(path))})


def suite_labs(backend: str) -> set[str]:
    """The lab names a backend's suite makes."""
    # notesimg: the example's Docker lab, which the netns worker brings up (test_example.py)
    return ({"lab", "duo"} if backend == "docker" else {name for name, _ in TWINS.values()}) | {"notesimg"}


def concurrent_labs(backend: str) -> set[str]:
    """The labs the other backend's suite may be changing while this one's tests run."""
    return suite_labs(OTHER[backend])


@dataclass
class Lab:
    """A lab of the suite: its backend driven in this process, the CLI when a test is about it."""

    topology: spec.Topology
    backend: str = "docker"

    @property
    def path(self) -> str:
        return str(self.topology.source)

    @property
    def name(self) -> str:
        return self.topology.name

    @cached_property
    def driver(self) -> Backend:
        return cli.make_backend(self.backend)

    def hoplab(self, verb: str, *args: str, **kw) -> subprocess.CompletedProcess:
        """A verb on this lab through the CLI: its topology and backend named."""
        return hoplab(verb, "--topology", self.path, "--backend", self.backend, *args, **kw)

    def exec(self, node: str, *argv: str, check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        result = self.driver.run(self.topology, node, list(argv), timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{node}$ {shlex.join(argv)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def sh(self, node: str, script: str, **kw) -> subprocess.CompletedProcess:
        return self.exec(node, "sh", "-c", script, **kw)

    def status(self) -> dict[str, dict]:
        return {s.node: s.to_json() for s in self.driver.status(self.topology)}

    def healthy(self) -> bool:
        return all(s.health == "healthy" for s in self.driver.status(self.topology, addresses=False))

    def address(self, node: str, network: str) -> str:
        return str(self.topology.nodes[node].address_on(network))

    @property
    def www(self) -> str:
        return f"https://www.{self.topology.domain.name}"

    def clients(self) -> list[str]:
        return [n.name for n in self.topology.nodes_of("client")]

    def servers(self) -> list[str]:
        return [n.name for n in self.topology.nodes.values() if n.service != "client"]

    # what a DHCP client node itself says about its configuration

    def lease_address(self, node: str, network: str) -> ipaddress.IPv4Address:
        links = json.loads(self.exec(node, "ip", "-j", "-4", "addr", "show", "dev", network).stdout)
        return ipaddress.IPv4Address(links[0]["addr_info"][0]["local"])

    def default_gateway(self, node: str) -> str:
        routes = json.loads(self.exec(node, "ip", "-j", "-4", "route", "show", "default").stdout)
        assert len(routes) == 1, routes
        return routes[0]["gateway"]

    def nameservers(self, node: str) -> list[str]:
        text = self.exec(node, "cat", "/etc/resolv.conf").stdout
        return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")]

    def dig(self, node: str, *query: str) -> list[str]:
        out = self.exec(node, "dig", "+short", "+time=2", "+tries=1", *query).stdout
        return out.split("\n")[:-1] if out else []


def load_lab(path: Path, backend: str = "docker") -> Lab:
    return Lab(spec.load(path), backend)


def missing_prerequisite(backend: str) -> str | None:
    """Why a backend cannot run here, or None."""
    if backend == "docker":
        return None if engine_reachable() else "no Docker engine reachable (`make up` or scripts/setup-host starts one)"
    if os.geteuid() != 0:
        return "the netns backend needs root"
    if not shutil.which("mnexec"):
        return "mnexec not found (Debian package mininet; `scripts/setup-host netns` installs it)"
    missing = missing_packages(debian_packages(load_catalog()))
    if missing:
        return f"Debian packages for netns nodes missing: {' '.join(missing)} (`scripts/setup-host netns`)"
    return None


def require(backend: str) -> None:
    """Skip a test whose backend cannot run here, naming why; with CI set, fail it instead."""
    reason = missing_prerequisite(backend)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{backend} backend cannot run: {reason} (CI is set: both backends must run)", pytrace=False)
        pytest.skip(f"{backend} backend: {reason}")


# ------------------------------------------------------------ host state


def docker_objects(label: str) -> dict[str, list[str]]:
    def ids(*args: str) -> list[str]:
        return sorted(subprocess.run(["docker", *args, "--filter", f"label={label}"], capture_output=True,
                                     text=True, check=True).stdout.split())

    return {"containers": ids("ps", "-aq"), "networks": ids("network", "ls", "-q"),
            "volumes": ids("volume", "ls", "-q")}


BUILD_STEP = re.compile(r"(sha256:)?[0-9a-f]{12,64}")  # an image known by its id alone


def host_state(exclude: set[str] = frozenset()) -> dict[str, list[str]]:
    """What a test compares before and after: every container, network, volume, firewall rule,
    nftables table and link on the host, leaving out what belongs to the labs in `exclude` (the
    other suite's labs change meanwhile: the two backends' suites run at the same time)."""
    def lines(*argv: str) -> list[str]:
        return sorted(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines())

    state = {
        **netns_state(),
        # A `docker build` elsewhere (the example's image, built by the other suite meanwhile)
        # runs each step in a throwaway container from an untagged image: left out.
        "containers": [line.split(" ", 1)[1] for line in lines(
            "docker", "ps", "-a", "--format", "{{.Image}} {{.Names}} {{.Label \"io.hoplab.lab\"}}")
            if not BUILD_STEP.fullmatch(line.split(" ", 1)[0])],
        "networks": lines("docker", "network", "ls", "--format", "{{.Name}}"),
        "volumes": lines("docker", "volume", "ls", "--format", "{{.Name}}"),
        "iptables": lines("iptables", "-w", "-S"),
        "nat": lines("iptables", "-w", "-t", "nat", "-S"),
        "nftables": lines("nft", "list", "tables"),
        "links": [line.split("@")[0] for line in lines("ip", "-o", "link", "show")
                  for line in [line.split(": ")[1]]],
    }
    if exclude:
        marks = tuple(mark for lab in exclude for mark in (
            f"hoplab-{lab}-", f"hoplab-{lab}_", f"hl-{lab}-", f"hoplab:{lab}", f"hn-{lab}-", f"hv-{lab}-", f"netns {lab} "))
        tables = {f"table inet hoplab-{prefix}-{lab}" for lab in exclude for prefix in ("hl", "hn")}
        state = {k: [v for v in vs if not any(m in v for m in marks) and v not in tables and not v.endswith(
            tuple(f" {lab}" for lab in exclude))] for k, vs in state.items()}
        # veth peers of containers are anonymous: compare only non-veth links
        state["links"] = [v for v in state["links"] if not v.startswith("veth")]
    return state


def netns_state() -> dict[str, list[str]]:
    """The netns backends' share of the host: each lab's namespaces, and the host's mounts
    (Docker's own image and namespace mounts left out)."""
    spaces = set()
    for pid, lab in nodeproc.lab_processes(None).items():
        try:
            spaces.add(f"netns {lab} {os.stat(f'/proc/{pid}/ns/net').st_ino}")
        except FileNotFoundError:  # ended meanwhile
            continue
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    # Named namespaces (`ip netns add`, under /run/netns/) are never a lab's: the netns backend
    # holds its namespaces with anchor processes. The unit tests make named ones, and may run
    # beside this suite.
    return {"namespaces": sorted(spaces),
            "mounts": sorted(m for m in mounts if not m.startswith(("/var/lib/docker/", "/run/docker/", "/run/netns/")))}


def lab_leftovers(lab: str) -> dict[str, list[str]]:
    objects = docker_objects(f"io.hoplab.lab={lab}") if engine_reachable() else {}
    rules = [r for r in subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout.splitlines()
             if f"hoplab:{lab}" in r]
    rules += [t for t in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
              if t in (f"table inet hoplab-hl-{lab}", f"table inet hoplab-hn-{lab}")]
    bridges = [line for line in subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                                                text=True).stdout.splitlines()
               if any(f"{prefix}-{lab}-" in line for prefix in ("hl", "hn", "hv"))]
    processes = [f"{pid}" for pid, _ in nodeproc.lab_processes(lab).items()]
    folders = [str(d) for d in [NetnsBackend().state_dir(lab)] if d.exists()]
    return {"containers": [], "networks": [], "volumes": [], **objects, "iptables": rules, "bridges": bridges,
            "processes": processes, "folders": folders}


def engine_reachable() -> bool:
    try:
        return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


# ------------------------------------------------------------ checks shared by every topology


def assert_dhcp_lease(lab: Lab, client: str) -> ipaddress.IPv4Address:
    """The client's address, default route and resolver came from the lab's DHCP server."""
    (network,) = [i.network for i in lab.topology.nodes[client].interfaces if i.address is None]
    scope = lab.topology.networks[network].dhcp
    address = lab.lease_address(client, network)
    assert scope.first <= address <= scope.last, f"{client}: {address} outside the pool {scope.first}-{scope.last}"
    assert lab.default_gateway(client) == lab.address(scope.gateway, network)
    assert lab.nameservers(client) == [str(lab.topology.dns_address)]
    lease = json.loads(lab.exec(client, "cat", f"/run/hoplab/lease-{network}").stdout)
    assert lease["server"] == lab.address(scope.server, network), "the lease came from another server"
    assert lease["domain"] == lab.topology.domain.name
    return address


def assert_dns(lab: Lab, client: str) -> None:
    """From the client: A, MX and PTR answers of the lab's zone, by name through its resolver."""
    domain = lab.topology.domain
    for name, address in domain.records.items():
        assert lab.dig(client, f"{name}.{domain.name}") == [str(address)]
    if domain.mx:
        assert lab.dig(client, "MX", domain.name) == [f"10 {domain.mx}.{domain.name}."]
    dns_address = str(lab.topology.dns_address)
    assert lab.dig(client, "-x", dns_address) == [f"{domain.server}.{domain.name}."]
    router = lab.topology.nodes_of("router")[0]
    for _, address in router.static_addresses:
        assert lab.dig(client, "-x", str(address)) == [f"{router.name}.{domain.name}."]


# Page loads from a client as a user (one after the other) or a script (all at once) makes them:
# each answer's HTTP status and Retry-After ("" when none), in the order curl finished them.
ANSWER = "%{http_code} %header{retry-after}\n"
ONE_AFTER_ANOTHER = 'for i in $(seq "$1"); do curl -sS -o /dev/null --max-time 3 -w "$2" "$3"; done'


def answers(output: str) -> list[tuple[str, str]]:
    return [(line.split() + [""])[:2] for line in output.splitlines() if line.strip()]


def quick_loads(lab: Lab, client: str, count: int, path: str = "/") -> list[tuple[str, str]]:
    """`count` page loads in a row, one curl each, as quick reloads in a browser."""
    return answers(lab.exec(client, "sh", "-c", ONE_AFTER_ANOTHER, "sh", str(count), ANSWER, f"{lab.www}{path}",
                            check=False).stdout)


def burst(lab: Lab, client: str, count: int, connections: int = 10, path: str = "/") -> list[tuple[str, str]]:
    """`count` page loads at once over `connections` connections (curl --parallel)."""
    argv = ["curl", "-sS", "--parallel", "--parallel-max", str(connections), "--max-time", "10", "-w", ANSWER]
    for _ in range(count):
        argv += ["-o", "/dev/null", f"{lab.www}{path}"]
    return answers(lab.exec(client, *argv, check=False, timeout=30).stdout)
