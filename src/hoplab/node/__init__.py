"""The node runtime: what runs inside every lab node, container or namespace alike.

Standard library only: it is installed into the images as a wheel and must not need the
CLI's dependencies. A backend starts a node by running `python3 -m hoplab.node start` with
  HOPLAB_NODE       the node's name
  HOPLAB_LAB_JSON   the resolved lab (`Topology.to_runtime()`), default /etc/hoplab/lab.json
  HOPLAB_SERVICE    the service's folder (start, health, templates), default /opt/hoplab/service
  HOPLAB_RUN_DIR    the node's private state folder, default /run/hoplab
"""

from __future__ import annotations

import ipaddress
import json
import os
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hoplab import bounded

MANAGEMENT = "mgmt"  # the management interface's name (never traced)
# A service that serves connections on behalf of a trace (a proxy) may log one JSON object a
# line here: {"src": client ip:port, "dst": server ip:port, "traceparent": ..., "text": ...}.
ACCESS_LOG = "access.json"
RUN_TIMEOUT_S = 300  # a start script's step (`run`), unless it says otherwise
NFT_TIMEOUT_S = 30


@dataclass
class NodeContext:
    name: str
    lab: dict
    service_dir: Path
    run_dir: Path

    @classmethod
    def from_environment(cls) -> "NodeContext":
        lab = json.loads(Path(os.environ.get("HOPLAB_LAB_JSON", "/etc/hoplab/lab.json")).read_text())
        return cls(
            name=os.environ["HOPLAB_NODE"],
            lab=lab,
            service_dir=Path(os.environ.get("HOPLAB_SERVICE", "/opt/hoplab/service")),
            run_dir=Path(os.environ.get("HOPLAB_RUN_DIR", "/run/hoplab")),
        )

    @property
    def config(self) -> dict:
        return self.lab["nodes"][self.name]

    @property
    def interfaces(self) -> list[dict]:
        return self.config["interfaces"]

    def network(self, name: str) -> dict:
        return self.lab["networks"][name]

    def peers(self, service: str) -> list[tuple[str, str]]:
        """(name, address) of every node running `service`, by its address on a network this
        node shares with it, in natural order (web2 before web10)."""
        mine = {i["network"] for i in self.interfaces}
        found = []
        for name, node in self.lab["nodes"].items():
            if node["service"] != service:
                continue
            shared = [i["address"] for i in node["interfaces"] if i["network"] in mine and i["address"]]
            if shared:
                found.append((name, shared[0]))
        return sorted(found, key=lambda item: _natural(item[0]))

    def log(self, message: str) -> None:
        print(f"hoplab[{self.name}]: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------ preparing the node

    def prepare(self) -> None:
        """Name each data-plane interface after its network (traces read `router:home`, not
        `eth1`), and point the resolver at the lab DNS. DHCP clients start with no resolver:
        only their lease may give them one."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        links = json.loads(run(["ip", "-j", "-4", "addr", "show"], capture=True))
        names = {link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"], capture=True))}
        management = self.lab.get("management")
        if management:
            self._name_link(links, management["addresses"][self.name], MANAGEMENT)
            if not self.is_control:
                self._guard_management(management["control"])
        for iface in self.interfaces:
            wanted = iface["network"]
            if wanted in names:  # named already (the netns backend names them; an address may wait for DHCP)
                continue
            current = _find_link(links, iface, self.network(wanted)["subnet"])
            if current is None:
                raise SystemExit(f"hoplab[{self.name}]: no interface found for network {wanted!r}")
            run(["ip", "link", "set", "dev", current, "down"])
            run(["ip", "link", "set", "dev", current, "name", wanted])
            if iface["address"] is None:
                run(["ip", "-4", "addr", "flush", "dev", wanted])  # the backend's, not DHCP's
            run(["ip", "link", "set", "dev", wanted, "up"])
        write_in_place(Path("/etc/resolv.conf"), self._resolv_conf())
        self._impair()

    def _impair(self) -> None:
        """The topology's impairments of this node's link ends, before its service starts.
        Cleared first: a service started again in a namespace that kept them."""
        from hoplab.node import impair

        for iface in self.interfaces:
            if iface.get("impairment"):
                impair.clear(iface["network"])
                spec = iface["impairment"]
                for said in impair.apply(iface["network"], spec["delay_ms"], spec["jitter_ms"], spec["loss_percent"],
                                         spec["rate"]):
                    self.log(f"{iface['network']} {said}")

    @property
    def is_control(self) -> bool:
        return self.config["service"] == "control"

    def _name_link(self, links: list[dict], address: str, name: str) -> None:
        if any(link["ifname"] == name for link in links):
            return
        current = next((link["ifname"] for link in links for a in link.get("addr_info", [])
                        if a.get("local") == address), None)
        if current is None:
            raise SystemExit(f"hoplab[{self.name}]: no interface holds {address} for {name!r}")
        run(["ip", "link", "set", "dev", current, "down"])
        run(["ip", "link", "set", "dev", current, "name", name])
        run(["ip", "link", "set", "dev", name, "up"])

    def _guard_management(self, control: str) -> None:
        """On the management network a node talks to the control service and to nothing else,
        so it never becomes a path between nodes the data plane keeps apart. A table of its
        own: the router's iptables ruleset cannot flush it."""
        # Declared, then deleted, then written whole: the same result when the node's service
        # starts again in a namespace that kept the table.
        ruleset = ("table inet hoplab_mgmt\ndelete table inet hoplab_mgmt\n"
                   f"table inet hoplab_mgmt {{\n"
                   f"  chain input {{ type filter hook input priority -10; iifname \"{MANAGEMENT}\" "
                   f"ip saddr != {control} drop; }}\n"
                   f"  chain output {{ type filter hook output priority -10; oifname \"{MANAGEMENT}\" "
                   f"ip daddr != {control} drop; }}\n}}\n")
        bounded.run(["nft", "-f", "-"], input=ruleset, text=True, check=True, timeout=NFT_TIMEOUT_S)

    def _resolv_conf(self) -> str:
        """The lab DNS by its address on a network this node shares with it. A node with no
        such network gets no resolver, so a lookup fails at once instead of timing out; a
        DHCP client gets none until its lease names one."""
        if any(i["address"] is None for i in self.interfaces):
            return ""
        server = self.lab["zone"]["ns"]
        mine = {i["network"] for i in self.interfaces}
        shared = [i["address"] for i in self.lab["nodes"][server]["interfaces"]
                  if i["network"] in mine and i["address"]]
        if not shared:
            return ""
        return f"search {self.lab['domain']}\nnameserver {shared[0]}\noptions timeout:1 attempts:2\n"

    # ------------------------------------------------------------ helpers for start scripts

    def render(self, template: str, destination: Path, **values) -> Path:
        """Fill `$name` placeholders of a template in the service's folder."""
        text = string.Template((self.service_dir / template).read_text()).substitute(values)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text)
        return destination

    def mark_ready(self) -> None:
        (self.run_dir / "ready").write_text("ok\n")

    def exec(self, argv: list[str]) -> None:
        """Replace the start script with the service's daemon (it receives the signals)."""
        self.log("exec " + " ".join(argv))
        os.execvp(argv[0], argv)


def _find_link(links: list[dict], iface: dict, subnet: str) -> str | None:
    net = ipaddress.IPv4Network(subnet)
    for link in links:
        for info in link.get("addr_info", []):
            local = info.get("local")
            if iface["address"] is not None and local == iface["address"]:
                return link["ifname"]
            if iface["address"] is None and local and ipaddress.IPv4Address(local) in net:
                return link["ifname"]
    return None


def _natural(name: str) -> tuple:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else 0)


def run(argv: list[str], capture: bool = False, timeout: float = RUN_TIMEOUT_S) -> str:
    """Run a step of a start script (raises if it fails or outlasts `timeout` seconds)."""
    result = bounded.run(argv, check=True, text=True, stdout=subprocess.PIPE if capture else None, timeout=timeout)
    return result.stdout if capture else ""


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a file without replacing it: Docker bind-mounts /etc/resolv.conf."""
    with open(path, "w") as handle:
        handle.write(text)
