"""The host firewall rules hoplab adds, and only those: each carries the comment
`hoplab:<lab>`, which is how `down` and `clean` find them again (and nothing else).

Why they exist: with bridge netfilter on (Docker turns it on), frames crossing a Linux bridge
go through the host's FORWARD chain. Docker's isolation rules for internal networks drop a DHCP
DISCOVER (source 0.0.0.0) between two containers on the same bridge, and Docker's `FORWARD
DROP` policy drops everything on a bridge Docker did not make (a netns lab's). An ACCEPT for
traffic that stays on one lab bridge lets it through and nothing more. The Docker backend puts
its rules in DOCKER-USER (Docker's place for them); the netns backend in FORWARD itself, which
exists with or without Docker."""

from __future__ import annotations

import shlex
import subprocess

CHAIN = "DOCKER-USER"
TAG_PREFIX = "hoplab:"


class HostFirewall:
    def __init__(self, iptables: str = "iptables", chain: str = CHAIN):
        self.iptables = iptables
        self.chain = chain

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([self.iptables, "-w", *args], text=True, capture_output=True, check=check)

    @staticmethod
    def tag(lab: str) -> str:
        return f"{TAG_PREFIX}{lab}"

    def allow_bridges(self, lab: str, bridges: list[str]) -> None:
        for bridge in bridges:
            rule = ["-i", bridge, "-o", bridge, "-m", "comment", "--comment", self.tag(lab), "-j", "ACCEPT"]
            if self._run("-C", self.chain, *rule, check=False).returncode != 0:
                self._run("-I", self.chain, "1", *rule)

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

    def remove(self, lab: str | None = None) -> list[str]:
        removed = []
        for rule in self.rules(lab):
            self._run("-D", self.chain, *rule)
            removed.append(f"iptables rule {self.chain} {' '.join(rule)}")
        return removed
