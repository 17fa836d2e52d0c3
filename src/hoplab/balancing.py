"""What each balancer of a running lab does, as HAProxy itself reports it: the lb service's own
`balancing` script (services/lb/balancing, which asks HAProxy's runtime API for `show stat`)
run in every running balancer node. `hoplab status` shows it beside the nodes."""

from __future__ import annotations

import json

from hoplab import spec
from hoplab.backends.base import Backend, NodeStatus

# The service's own read-back script, where its node keeps the service's folder.
READ_BACK = 'exec "${HOPLAB_SERVICE:-/opt/hoplab/service}/balancing"'
TIMEOUT = 10.0  # seconds for one balancer's answer


def read(backend: Backend, topology: spec.Topology, statuses: list[NodeStatus]) -> dict[str, dict]:
    """Balancer node -> {"algorithm": the topology's, "haproxy": HAProxy's `algo`, "servers":
    [{"name", "address", "weight", "status"}]}, or {"algorithm", "error"} when its HAProxy
    does not say. Balancers that are not running are left out (the node table shows them)."""
    running = {s.node for s in statuses if s.state == "running"}
    found = {}
    for node in topology.nodes_of(spec.BALANCER):
        if node.name not in running:
            continue
        try:
            result = backend.run(topology, node.name, ["sh", "-c", READ_BACK], timeout=TIMEOUT)
        except Exception as exc:  # a node gone meanwhile, a time-out: say so for this one
            found[node.name] = {"algorithm": node.algorithm, "error": f"{type(exc).__name__}: {exc}"}
            continue
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            found[node.name] = {"algorithm": node.algorithm, "error": why}
            continue
        try:
            found[node.name] = json.loads(result.stdout)
        except ValueError:
            found[node.name] = {"algorithm": node.algorithm, "error": f"not JSON: {result.stdout[:200]!r}"}
    return found


def lines(balancers: dict[str, dict]) -> list[str]:
    """One line per balancer: the topology's algorithm, HAProxy's, and each server's weight and
    status as HAProxy reports them."""
    out = []
    for name, seen in balancers.items():
        if "error" in seen:
            out.append(f"{name}: {seen['algorithm']} (HAProxy does not say: {seen['error']})")
            continue
        servers = ", ".join(f"{s['name']} weight {s['weight']} {s['status']}" for s in seen["servers"]) or "no servers"
        out.append(f"{name}: {seen['algorithm']} (HAProxy: balance {seen['haproxy']}): {servers}")
    return out
