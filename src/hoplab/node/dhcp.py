"""`python3 -m hoplab.node renew`: this node's DHCP client renews its lease now.

udhcpc renews on SIGUSR1. The signal goes to this node's own client only: on the netns
backend every lab's nodes share the host's /proc, so `pidof udhcpc` (or `pkill`) would reach
other nodes' and other labs' clients too. The client is the service pid the runtime recorded
(`service.pid`: the start script execs udhcpc) when that process is a udhcpc in this node's
network namespace; else the one udhcpc in this namespace; else nothing is signalled.

Standard library only, like the rest of the node runtime."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

CLIENT = "udhcpc"
WAIT_S = 5.0  # for the new lease to be applied
POLL_S = 0.1


class RenewError(Exception):
    """No client of this node's own could be told to renew; the message says why."""


def _netns(proc: Path, pid: str) -> str | None:
    try:
        return os.readlink(proc / pid / "ns" / "net")
    except OSError:
        return None


def _comm(proc: Path, pid: str) -> str:
    try:
        return (proc / pid / "comm").read_text().strip()
    except OSError:
        return ""


def recorded_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "service.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def clients_here(proc: Path = Path("/proc"), client: str = CLIENT) -> list[int]:
    """The pids of `client` processes in this process's network namespace (never the host's
    namespace's: a node always has one of its own)."""
    own = _netns(proc, "self")
    if own is None:
        raise RenewError(f"cannot read {proc}/self/ns/net: this node's network namespace is unknown")
    found = []
    for entry in os.listdir(proc):
        if entry.isdigit() and _comm(proc, entry) == client and _netns(proc, entry) == own:
            found.append(int(entry))
    return sorted(found)


def client_pid(run_dir: Path, proc: Path = Path("/proc"), client: str = CLIENT) -> int:
    """This node's DHCP client: the recorded service pid when it is one of this namespace's
    clients, else the only client in this namespace."""
    here = clients_here(proc, client)
    recorded = recorded_pid(run_dir)
    if recorded in here:
        return recorded
    if len(here) == 1:
        return here[0]
    if not here:
        raise RenewError(f"no {client} runs in this node's network namespace (is its service up?)")
    raise RenewError(f"{len(here)} {client} processes run in this node's network namespace "
                     f"({', '.join(map(str, here))}) and none is its service (pid {recorded}): not guessing")


def _leases(run_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(run_dir.glob("lease-*")):
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()


def renew(run_dir: Path, proc: Path = Path("/proc"), wait_s: float = WAIT_S) -> int:
    """Signal this node's client and wait until its lease files change; returns its pid."""
    pid = client_pid(run_dir, proc)
    before = _leases(run_dir)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        if _leases(run_dir) != before:
            return pid
    raise RenewError(f"{CLIENT} (pid {pid}) was told to renew, but its lease did not change within {wait_s:g} s")


def main() -> int:
    run_dir = Path(os.environ.get("HOPLAB_RUN_DIR", "/run/hoplab"))
    try:
        pid = renew(run_dir)
    except RenewError as exc:
        print(f"renew: {exc}", file=sys.stderr)
        return 1
    print(f"renew: {CLIENT} (pid {pid}) has a new lease")
    return 0
