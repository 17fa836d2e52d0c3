"""`diagnose` on the break-and-fix page: the CLI's walk of the page load from a client
(`hoplab.diagnose.diagnose`, one at a time), its report as `diagnose --json` gives it, plus
what the page needs to mark the first broken hop on the graph: the node the hop is, and the
links from the node that checked it to that node."""

from __future__ import annotations

from collections import deque

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hoplab import cli
from hoplab.spec import Topology
from hoplab.ui.api import Refused, UiContext, handled, json_body
from hoplab.ui.topo import link_id

BUSY = "a diagnosis is already running; wait for its report"


def hop_links(topology: Topology, checker: str, subject: str) -> list[str]:
    """The links a hop crosses, from the node that checked it to the node it is: the shortest
    way over the data networks (node, network, node, ...), both ends of each link; [] when they
    are one node or not joined at all."""
    if checker == subject or checker not in topology.nodes or subject not in topology.nodes:
        return []
    came_from: dict[str, tuple[str, str] | None] = {checker: None}  # node -> (previous node, network)
    queue = deque([checker])
    while queue and subject not in came_from:
        node = queue.popleft()
        for network in (i.network for i in topology.nodes[node].interfaces):
            for peer in topology.nodes.values():
                if peer.name not in came_from and any(i.network == network for i in peer.interfaces):
                    came_from[peer.name] = (node, network)
                    queue.append(peer.name)
    if subject not in came_from:
        return []
    links, node = [], subject
    while came_from[node] is not None:
        previous, network = came_from[node]
        links[:0] = [link_id(previous, network), link_id(node, network)]
        node = previous
    return links


def routes_for(ctx: UiContext):
    @handled("diagnose")
    async def run(request: Request) -> Response:
        body = await json_body(request, {"from": str})
        client = cli.client_node(ctx.topology, body["from"])
        if not ctx.diagnosing.acquire(blocking=False):
            raise Refused(409, BUSY)
        try:
            report = await run_in_threadpool(ctx.diagnose, ctx.backend, ctx.topology, client)
        finally:
            ctx.diagnosing.release()
        out = report.to_json()
        broken = report.broken
        out["broken_links"] = hop_links(ctx.topology, broken.check.node, out["broken_node"]) if broken else []
        out["text"] = report.render()
        return JSONResponse(out)

    return [("/api/diagnose", run, ["POST"])]
