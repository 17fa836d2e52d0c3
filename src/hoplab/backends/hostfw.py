"""The host firewall rules hoplab adds, and only those: each carries the comment
`hoplab:<lab>`, which is how `down` and `clean` find them again (and nothing else).

Two kinds:
- An ACCEPT per lab bridge, for traffic that stays on it. With bridge netfilter on (Docker
  turns it on), frames crossing a Linux bridge go through the host's FORWARD chain; Docker's
  isolation rules for internal networks drop a DHCP DISCOVER (source 0.0.0.0) between two
  containers on the same bridge, and Docker's `FORWARD DROP` policy drops everything on a bridge
  Docker did not make (a netns lab's). The Docker backend puts these in DOCKER-USER (Docker's
  place for them); the netns backend in FORWARD itself, which exists with or without Docker.
- The guard: the host is not part of the lab. An nftables table of the lab's own
  (`inet hoplab-<bridge prefix>-<lab>`, comment `hoplab:<lab>`) drops whatever the host would
  route out of or into a lab network, whatever it would answer on a lab bridge that it did not
  ask for, and any packet to or from a lab subnet on an interface that is not a lab bridge (the
  uplink above all). Per-bridge sysctls say the same to the kernel: no forwarding, no ARP
  answers for addresses of other interfaces, no redirects, no IPv6. They go with the bridge;
  the table and the rules go with `down` and `clean`."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from hoplab import bounded
from hoplab.backends.base import Cleaned

CHAIN = "DOCKER-USER"
TAG_PREFIX = "hoplab:"
TABLE_PREFIX = "hoplab-"
LOCK_WAIT_S = "10"  # iptables -w: how long to wait for the xtables lock, not forever
COMMAND_TIMEOUT = 30
# Every hoplab bridge on the host, of either backend (Docker: hl-, netns: hn-).
LAB_BRIDGES = '"hl-*", "hn-*"'
BRIDGE_SYSCTLS = {"ipv4/conf/{}/forwarding": "0", "ipv4/conf/{}/arp_ignore": "1", "ipv4/conf/{}/arp_announce": "2",
                  "ipv4/conf/{}/send_redirects": "0", "ipv4/conf/{}/accept_redirects": "0",
                  "ipv6/conf/{}/disable_ipv6": "1"}


class HostFirewall:
    def __init__(self, bridge_prefix: str, chain: str = CHAIN, iptables: str = "iptables", nft: str = "nft",
                 proc_sys: Path = Path("/proc/sys/net")):
        self.bridge_prefix = bridge_prefix
        self.chain = chain
        self.iptables = iptables
        self.nft = nft
        self.proc_sys = proc_sys

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return bounded.run([self.iptables, "-w", LOCK_WAIT_S, *args], text=True, capture_output=True, check=check,
                           timeout=COMMAND_TIMEOUT)

    def _nft(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return bounded.run([self.nft, *args], text=True, capture_output=True, check=check, input=input,
                           timeout=COMMAND_TIMEOUT)

    @staticmethod
    def tag(lab: str) -> str:
        return f"{TAG_PREFIX}{lab}"

    def table(self, lab: str) -> str:
        return f"{TABLE_PREFIX}{self.bridge_prefix}-{lab}"

    # ------------------------------------------------------------ making

    def allow_bridges(self, lab: str, bridges: list[str]) -> None:
        for bridge in bridges:
            rule = ["-i", bridge, "-o", bridge, "-m", "comment", "--comment", self.tag(lab), "-j", "ACCEPT"]
            if self._run("-C", self.chain, *rule, check=False).returncode != 0:
                self._run("-I", self.chain, "1", *rule)

    def guard(self, lab: str, bridges: list[str], subnets: list[str]) -> None:
        """Install (or replace) the lab's guard table: `ruleset` below, atomically."""
        self._nft("-f", "-", input=self.ruleset(lab, bridges, subnets))

    def ruleset(self, lab: str, bridges: list[str], subnets: list[str]) -> str:
        table = f"inet {self.table(lab)}"
        per_bridge_forward = "\n".join(
            f'    iifname "{b}" oifname != "{b}" counter drop comment "routed out of a lab network"\n'
            f'    oifname "{b}" iifname != "{b}" counter drop comment "routed into a lab network"' for b in bridges)
        per_bridge_input = "\n".join(
            f'    iifname "{b}" ct state established,related accept\n'
            f'    iifname "{b}" counter drop comment "the host answers only what it asked"' for b in bridges)
        # `add` then `delete` makes the replacement work whether or not the table exists.
        return f"""add table {table}
delete table {table}
table {table} {{
  comment "{self.tag(lab)}"
  set lab_subnets {{ type ipv4_addr; flags interval; elements = {{ {", ".join(subnets)} }} }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
{per_bridge_forward}
    oifname {{ {LAB_BRIDGES} }} accept
    ip saddr @lab_subnets counter drop comment "a lab address off the lab's bridges"
    ip daddr @lab_subnets counter drop comment "a lab address off the lab's bridges"
  }}
  chain output {{
    type filter hook output priority filter - 5; policy accept;
    oifname {{ "lo", {LAB_BRIDGES} }} accept
    ip saddr @lab_subnets counter drop comment "a lab address off the lab's bridges"
    ip daddr @lab_subnets counter drop comment "a lab address off the lab's bridges"
  }}
  chain input {{
    type filter hook input priority filter - 5; policy accept;
{per_bridge_input}
    iifname {{ "lo", {LAB_BRIDGES} }} accept
    ip saddr @lab_subnets counter drop comment "a lab address on a non-lab interface"
  }}
}}
"""

    def harden(self, bridges: list[str]) -> None:
        """The per-bridge sysctls, on the bridges that exist now."""
        for bridge in bridges:
            for key, value in BRIDGE_SYSCTLS.items():
                knob = self.proc_sys / key.format(bridge)
                if knob.parent.exists():
                    knob.write_text(value)

    # ------------------------------------------------------------ finding and removing

    def rules(self, lab: str | None = None) -> list[list[str]]:
        """The rule specs (without `-A CHAIN`) that hoplab made, for one lab or all."""
        listed = self._run("-S", self.chain, check=False)
        if listed.returncode != 0:
            return []
        found = []
        for line in listed.stdout.splitlines():
            words = shlex.split(line)
            if words[:2] != ["-A", self.chain] or "--comment" not in words:
                continue
            comment = words[words.index("--comment") + 1]
            if comment == self.tag(lab) if lab else comment.startswith(TAG_PREFIX):
                found.append(words[2:])
        return found

    def tables(self, lab: str | None = None) -> list[str]:
        """This backend's guard tables (for one lab or all): named for it and tagged hoplab's."""
        listed = self._nft("list", "tables", "inet", check=False)
        names = [line.split()[-1] for line in listed.stdout.splitlines() if line.startswith("table inet ")]
        wanted = [self.table(lab)] if lab else [n for n in names if n.startswith(self.table(""))]
        found = []
        for name in wanted:
            if name not in names:
                continue
            shown = self._nft("list", "table", "inet", name, check=False).stdout
            if f'comment "{TAG_PREFIX}' in shown:
                found.append(name)
        return found

    def remove(self, lab: str | None = None) -> Cleaned:
        """Every rule and table found above (by hoplab's comment), each removed or its failure
        recorded: one that cannot go does not keep the rest."""
        cleaned = Cleaned()
        for rule in self.rules(lab):
            cleaned.attempt("iptables rule", f"{self.chain} {' '.join(rule)}",
                            lambda rule=rule: self._run("-D", self.chain, *rule))
        for table in self.tables(lab):
            cleaned.attempt("nftables table", f"inet {table}",
                            lambda table=table: self._nft("delete", "table", "inet", table))
        return cleaned
