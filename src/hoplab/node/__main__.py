"""`python3 -m hoplab.node start`: prepare the node, then hand over to the service's start
script (which usually execs its daemon). `python3 -m hoplab.node renew`: this node's DHCP
client renews its lease now (hoplab.node.dhcp)."""

import os
import subprocess
import sys

from hoplab.node import NodeContext


def main(argv: list[str]) -> None:
    if argv[:1] == ["renew"]:
        from hoplab.node import dhcp

        raise SystemExit(dhcp.main())
    if argv[:1] != ["start"]:
        raise SystemExit("usage: python3 -m hoplab.node start|renew")
    node = NodeContext.from_environment()
    node.prepare()
    if node.lab.get("management") and not node.is_control:
        # The agent lives beside the service for the node's whole life; it only captures when
        # the control service asks.
        agent = subprocess.Popen([sys.executable, "-m", "hoplab.control.agent"], stdin=subprocess.DEVNULL)
        (node.run_dir / "agent.pid").write_text(f"{agent.pid}\n")
    # Chaos's process faults find the service here, in any backend: exec keeps this pid, so it
    # is the start script's and then the daemon's it execs.
    (node.run_dir / "service.pid").write_text(f"{os.getpid()}\n")
    start = str(node.service_dir / "start")
    os.execv(sys.executable, [sys.executable, start])


main(sys.argv[1:])
