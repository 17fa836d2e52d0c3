"""Mininet builds a netns lab's namespaces, bridges and veths from a `NetnsPlan`: one Mininet
host per node (`mnexec -cdn`: its own network and mount namespaces), one `LinuxBridge` switch
per network, no controller. The topology stays data (`LabTopo`); Mininet only builds it. Every
link it makes in the host's namespace gets the lab's mark (`ip link set dev X alias hoplab:<lab>`)
right after its creation: how `down` and `clean` find it, never by its name.

Mininet comes from Debian's package (which carries `mnexec`; the PyPI wheel does not), so its
module is found in Debian's python3 path, appended after the venv's own packages."""

from __future__ import annotations

import sys
from pathlib import Path

from hoplab import bounded
from hoplab.backends.base import IP_TIMEOUT_S, BackendError
from hoplab.backends.netns_plan import NetnsPlan, link_mark

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
if DEBIAN_DIST_PACKAGES not in sys.path:
    sys.path.append(DEBIAN_DIST_PACKAGES)
try:
    from mininet.log import setLogLevel
    from mininet.link import Link
    from mininet.net import Mininet
    from mininet.node import Host
    from mininet.nodelib import LinuxBridge
    from mininet.topo import Topo
except ImportError as exc:  # pragma: no cover - depends on the host
    raise BackendError(f"Mininet is not installed ({exc}): `scripts/setup-host netns` installs Debian's "
                       "mininet package") from None

# Mininet.init() raises host-wide limits and sysctls (fixLimits) the first time a network is
# built; a lab must leave the host's settings as it found them.
Mininet.inited = True


def _ip(*args: str) -> None:
    result = bounded.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if result.returncode != 0:
        raise BackendError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _mark(link: str, mark: str) -> None:
    _ip("link", "set", "dev", link, "alias", mark)


def _no_ipv6(link: str) -> None:
    """The host's ends of a lab stay silent: no link-local address, so the host sends no
    router solicitations or MLD reports into the lab."""
    knob = Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")


class LabBridge(LinuxBridge):
    """Mininet's LinuxBridge, made with iproute2: LinuxBridge.start needs brctl and enslaves
    only ports whose names contain the bridge's, and ours are named by the plan."""

    def __init__(self, name: str, mark: str, **params):
        self.mark = mark
        super().__init__(name, **params)

    @classmethod
    def setup(cls) -> None:
        """LinuxBridge.setup insists on brctl and warns about bridge netfilter; the backend's
        host firewall rules handle the latter (see hoplab.backends.hostfw)."""

    def start(self, _controllers) -> None:
        _ip("link", "add", "name", self.name, "type", "bridge")
        _mark(self.name, self.mark)
        _no_ipv6(self.name)
        for intf in self.intfList():
            if intf.name != "lo":
                _no_ipv6(intf.name)
                _ip("link", "set", "dev", intf.name, "master", self.name, "up")
        _ip("link", "set", "dev", self.name, "up")

    def stop(self, deleteIntfs: bool = True) -> None:
        bounded.run(["ip", "link", "del", self.name], capture_output=True, timeout=IP_TIMEOUT_S)
        super(LinuxBridge, self).stop(deleteIntfs)


class LabLink(Link):
    """A veth pair from its bridge's end (in the host's namespace, marked) into its node's
    namespace. Mininet's own would first delete any link of that name, whoever made it."""

    def __init__(self, node1, node2, mark: str, **params):
        self.mark = mark
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None, node2=None,
                     deleteIntfs=True):
        if node2 is None:
            raise BackendError(f"{intfname1}: a lab link joins a bridge to a node's namespace")
        ends = (["name", intfname1, *(["address", addr1] if addr1 else [])],
                ["name", intfname2, *(["address", addr2] if addr2 else [])])
        _ip("link", "add", *ends[0], "type", "veth", "peer", *ends[1], "netns", str(node2.pid))
        _mark(intfname1, self.mark)


class LabTopo(Topo):
    """The plan as a Mininet topology: hosts carry no address of their own (ip=None: Mininet
    would otherwise hand each one from 10.0.0.0/8); each port's address is its interface's."""

    def build(self, plan: NetnsPlan) -> None:
        mark = link_mark(plan.lab)
        for index, bridge in enumerate(sorted(plan.bridges.values()), start=1):
            self.addSwitch(bridge, cls=LabBridge, dpid=f"{index:016x}", mark=mark)
        for node in plan.nodes:
            self.addHost(node, ip=None)
        for port in plan.ports:
            self.addLink(port.bridge, port.node, cls=LabLink, mark=mark, intfName1=port.veth,
                         intfName2=port.iface, params2={"ip": port.address} if port.address else {})


class Build:
    """A built lab while `up` sets it up. Each host's namespaces are held by its Mininet shell
    until the backend has put a process of its own there; then `release` ends the shells and
    the lab outlives this process, as a Docker lab outlives `docker compose up`."""

    def __init__(self, plan: NetnsPlan):
        setLogLevel("error")
        self.net = Mininet(topo=LabTopo(plan=plan), switch=LabBridge, host=Host, controller=None,
                           autoSetMacs=False, autoStaticArp=False, waitConnected=False, build=False)
        self.net.build()
        self.net.start()

    @property
    def shell_pids(self) -> dict[str, int]:
        return {host.name: host.pid for host in self.net.hosts}

    def release(self) -> None:
        for node in [*self.net.hosts, *self.net.switches]:
            node.terminate()
