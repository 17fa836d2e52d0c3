"""The break-and-fix routes: the fault catalogue, inject (bounded: the journal, its undo and
the detached reaper, as `hoplab chaos inject --detach` does) and halt. Faults are checked by
`Chaos.inject` itself and `--param` by the CLI's `parse_params`: the same sentences as the CLI."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hoplab import cli
from hoplab.ui.api import Refused, UiContext, handled, json_body

DEFAULT_DURATION_S = 60.0


def catalogue() -> list[dict]:
    from hoplab.chaos.faults import CATALOGUE

    return [{"name": f.name, "family": f.family, "description": f.description,
             "params": {k: str(p.default) for k, p in f.params.items()},
             "kinds": {k: p.describe() for k, p in f.params.items()},
             "target": "NODE:IFACE" if f.needs_iface else (f"a {f.service} node" if f.service else "NODE"),
             "service": f.service or ""} for f in CATALOGUE.values()]


def routes_for(ctx: UiContext):
    async def faults(request: Request) -> Response:
        return JSONResponse({"faults": catalogue(), "active": ctx.watch.snapshot["faults"]})

    @handled("chaos")
    async def inject(request: Request) -> Response:
        from hoplab.chaos.faults import FaultError

        body = await json_body(request, {"fault": str, "target": str, "duration": (int, float), "params": list})
        if isinstance(body["duration"], bool) or body["fault"] is None or body["target"] is None:
            raise Refused(400, "fault, target (and a numeric duration) are needed")
        items = body["params"] or []
        if not all(isinstance(item, str) for item in items):
            raise Refused(400, "params: expected a list of KEY=VALUE strings")
        params = cli.parse_params(items)
        duration = float(body["duration"] if body["duration"] is not None else DEFAULT_DURATION_S)

        def act():
            try:
                entry = ctx.chaos.inject(body["fault"], body["target"], duration, params)
            except FaultError as exc:
                raise cli.UsageError(str(exc)) from None
            ctx.chaos.start_reaper()  # the deadline holds whatever happens to this server
            return entry

        entry = await run_in_threadpool(act)
        ctx.watch.poll_once()
        return JSONResponse({"id": entry.id, "fault": entry.fault, "node": entry.node, "iface": entry.iface,
                             "symptom": entry.symptom, "deadline": entry.deadline})

    @handled("chaos")
    async def halt(request: Request) -> Response:
        await json_body(request, {})
        reverted = await run_in_threadpool(ctx.chaos.halt)
        ctx.watch.poll_once()
        return JSONResponse({"reverted": [{"id": e.id, "fault": e.fault, "node": e.node} for e in reverted]})

    return [("/api/chaos", faults, ["GET"]), ("/api/chaos/inject", inject, ["POST"]),
            ("/api/chaos/halt", halt, ["POST"])]
