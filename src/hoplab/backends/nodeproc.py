"""The processes of a netns lab, found the way `clean` must find them after a crash: every
process the backend starts carries `HOPLAB_NETNS=<lab>` in its environment, and a namespace is
the lab's when such a process lives in it. Daemons that scrub their environment (Postfix,
Dovecot) are found by their namespace; nothing in the host's own namespace is ever touched."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARKER = "HOPLAB_NETNS"


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _ns(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _netns(pid: int | str) -> int | None:
    return _ns(pid, "net")


def in_own_namespaces(pid: int) -> bool:
    """Whether `pid` lives in network and mount namespaces of its own, not the host's (nor this
    process's). A command attached to a process (`mnexec -a`) runs in its namespaces: attached
    to one still in the host's, a node's mounts (/etc, /var, /run overlaid) would land on the host."""
    return all((found := _ns(pid, kind)) is not None and found not in (_ns(1, kind), _ns("self", kind))
               for kind in ("net", "mnt"))


def wait_in_own_namespaces(pid: int, timeout: float = 10.0) -> bool:
    """Wait until a just-started anchor (`mnexec -a SHELL sleep infinity`) has joined its node's
    namespaces: Popen returns before mnexec has called setns."""
    deadline = time.monotonic() + timeout
    while not in_own_namespaces(pid):
        if not _running(pid) or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def marked(pid: int, lab: str | None) -> str | None:
    """The lab a process was started for, if it carries the marker (and it is `lab`'s)."""
    for item in _environ(pid).split(b"\0"):
        if item.startswith(MARKER.encode() + b"="):
            found = item.split(b"=", 1)[1].decode(errors="replace")
            return found if lab is None or found == lab else None
    return None


def alive(pid: int | None, lab: str) -> bool:
    """A recorded anchor pid still names our process (not a recycled pid). Only for processes
    that keep their environment: daemons that set their process title (nginx) overwrite it."""
    return bool(pid) and marked(pid, lab) is not None and _running(pid)


def wait_beside(pid: int, anchor: int, timeout: float = 10.0) -> bool:
    """Wait until a just-started service (`mnexec -a ANCHOR ...`) runs in its anchor's network
    namespace: Popen returns before mnexec has called setns, and till then it looks gone."""
    deadline = time.monotonic() + timeout
    while not beside(pid, anchor):
        if not _running(pid) or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def beside(pid: int | None, anchor: int) -> bool:
    """A recorded service pid still runs in the anchor's network namespace."""
    return bool(pid) and _running(pid) and _netns(pid) == _netns(anchor) is not None


def in_namespace_of(pid: int) -> list[int]:
    """Every process sharing `pid`'s network namespace (never the host's)."""
    space = _netns(pid)
    if space is None or space in (_netns(1), _netns("self")):
        return []
    return [p for p in _pids() if _netns(p) == space]


def lab_processes(lab: str | None) -> dict[int, str]:
    """pid -> lab for every process in a namespace that holds a marked process of `lab` (of
    any lab when None)."""
    host = {_netns(1), _netns("self")}
    spaces: dict[int, str] = {}
    for pid in _pids():
        found = marked(pid, lab)
        space = _netns(pid) if found else None
        if space is not None and space not in host:
            spaces[space] = found
    return {pid: spaces[space] for pid in _pids() if (space := _netns(pid)) in spaces}


def terminate(pids: list[int], grace: float = 5.0, first: int | None = signal.SIGTERM) -> None:
    """`first` to each (None: they were signalled already), then SIGKILL to whatever is left
    after `grace` seconds."""
    for pid in pids if first is not None else []:
        _signal(pid, first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _running(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def running(pid: int) -> bool:
    """Whether `pid` is there and not a zombie."""
    return _running(pid)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
