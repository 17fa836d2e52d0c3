"""Every benchmark runs with the host's uplink watched (hoplab.uplink): a packet to or from a
lab subnet there would mean the lab reached past the host. The count is printed with the
figures; any packet makes the benchmark exit 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hoplab import spec
from hoplab.backends.base import subnets
from hoplab.paths import BUILD_DIR, TOPOLOGY_DIR
from hoplab.uplink import UplinkWatch


def lab_up(topology: Path, *options: str) -> None:
    """`hoplab up` of the lab a benchmark measures, quietly; a lab that does not come up ends it."""
    subprocess.run([sys.executable, "-m", "hoplab", "up", "-q", "--topology", str(topology), *options], check=True,
                   stdout=subprocess.DEVNULL)


def run_watched(main: Callable[[], None], name: str) -> None:
    lab_subnets = sorted({str(subnet) for path in sorted(TOPOLOGY_DIR.glob("*.yaml"))
                          for _, subnet in subnets(spec.load(path))})
    capture = BUILD_DIR / "bench" / f"uplink-{name}.pcapng"
    with UplinkWatch(lab_subnets, capture) as watch:
        main()
    where = ", ".join(watch.interfaces) or "no uplink"
    print(f"\nhost uplink ({where}): {len(watch.leaks)} packet(s) with a lab address (capture: {capture})")
    if watch.leaks:
        print("\n".join(watch.leaks[:20]))
        sys.exit(1)



