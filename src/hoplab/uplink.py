"""The proof that the lab never reaches the host's network: a capture on the host's uplink (the
interfaces its default routes leave by) with a kernel filter for the lab's subnets. Whatever it
catches is a leak. Used by the end-to-end tests around the chaos and drill suites, and by the
benchmarks and load runs, which report the count beside their figures.

The capture engine is Wireshark's own `dumpcap` (the project's set-up installs it with tshark);
`tshark` reads back what it caught."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from hoplab import bounded

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
DRAIN_S = 1.0


def uplinks() -> list[str]:
    """The interfaces the host's default routes use."""
    routes = json.loads(bounded.run(["ip", "-j", "route", "show", "default"], capture_output=True, text=True,
                                    timeout=10).stdout or "[]")
    return sorted({r["dev"] for r in routes if r.get("dev")})


class UplinkWatch:
    """`with UplinkWatch(subnets, capture) as watch: ...`; afterwards `watch.leaks` lists one
    line per packet to or from a lab subnet seen on an uplink (empty: none)."""

    def __init__(self, subnets: list[str], capture: Path, interfaces: list[str] | None = None):
        self.subnets = subnets
        self.capture = capture
        self.interfaces = uplinks() if interfaces is None else interfaces
        self.leaks: list[str] = []
        self._proc: subprocess.Popen | None = None

    @property
    def filter(self) -> str:
        return " or ".join(f"net {subnet}" for subnet in self.subnets)

    def __enter__(self) -> "UplinkWatch":
        if not self.interfaces:
            return self  # no uplink: nothing can leave by one
        self.capture.parent.mkdir(parents=True, exist_ok=True)
        argv = ["dumpcap", "-q", "-f", self.filter, "-w", str(self.capture)]
        for iface in self.interfaces:
            argv += ["-i", iface]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
        # dumpcap names each interface on stderr once it captures on it
        seen, deadline = "", time.monotonic() + START_TIMEOUT
        while not all(f"'{i}'" in seen for i in self.interfaces):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._proc.kill()
                raise RuntimeError(f"dumpcap did not start capturing on {', '.join(self.interfaces)}: "
                                   f"{seen.strip() or self._proc.stderr.read()}")
            if select.select([self._proc.stderr], [], [], 0.2)[0]:
                seen += self._proc.stderr.readline()
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        time.sleep(DRAIN_S)  # what the kernel holds for dumpcap is read before it stops
        self._proc.send_signal(signal.SIGTERM)  # dumpcap closes the file cleanly on it
        try:
            _, said = self._proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, said = bounded.communicate(self._proc, timeout=STOP_TIMEOUT, what="dumpcap, killed")
        read = bounded.run(["tshark", "-n", "-r", str(self.capture), "-T", "fields", "-e", "frame.time_relative",
                            "-e", "frame.interface_name", "-e", "ip.src", "-e", "ip.dst", "-e", "_ws.col.Info"],
                           capture_output=True, text=True, timeout=60)
        if read.returncode != 0:
            raise RuntimeError(f"tshark could not read {self.capture}: {read.stderr.strip()}")
        self.leaks = [line for line in read.stdout.splitlines() if line.strip()]
        # The kernel's own count of packets that passed the filter: one the file missed still counts.
        seen = sum(int(m[1]) for m in re.finditer(r"received/dropped on interface '[^']+': (\d+)/", said or ""))
        self.leaks += [f"(a packet the kernel passed to dumpcap but the file lacks)"] * max(0, seen - len(self.leaks))
