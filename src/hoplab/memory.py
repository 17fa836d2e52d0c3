"""How much memory each node of a lab holds: the proportional set size (Pss) of every process
in the node's network namespace. Pss splits a page shared by n processes into n shares, so the
nodes' figures add up to the lab's real cost (RSS would count the shared Python and libc pages
of every node again). One walk over /proc serves every node, on both backends: a container's
processes and a netns node's are all in its network namespace."""

from __future__ import annotations

import os
from pathlib import Path

from hoplab.trace.kernel import namespace_map


def pss_bytes(pid: str, proc: Path) -> int:
    """A process's Pss from smaps_rollup (kB there); 0 when it is gone or not ours to read."""
    try:
        for line in (proc / pid / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def node_memory(node_pids: dict[str, int], proc: Path = Path("/proc")) -> dict[str, int]:
    """Bytes per node for the nodes in `node_pids` (one process of each, as `Backend.node_pids`
    gives them); a node whose process is gone is left out."""
    namespaces = namespace_map(node_pids, host=False)
    memory = {node: 0 for node in namespaces.values()}
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            inode = os.stat(proc / pid / "ns" / "net").st_ino
        except OSError:
            continue
        node = namespaces.get(inode)
        if node is not None:
            memory[node] += pss_bytes(pid, proc)
    return memory


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"
