"""The drills on the break-and-fix page: start (a hidden fault, bounded like any fault), hint,
check, give up -- `hoplab drill`'s verbs on the same `hoplab.drill.Drills`, with the CLI's
checks and sentences (`hoplab drill: ...`). The running drill's fault is kept out of the
page's fault list: the symptom is all a student is told."""

from __future__ import annotations

import threading

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hoplab import cli
from hoplab.drill import (DEFAULT_DURATION_S, DRILLS, DrillError, Drills, DrillState, available, describe_fault,
                          elapsed, fill, fix_commands, roles)
from hoplab.ui.api import Refused, UiContext, handled, json_body

BUSY = "another drill action is still running; wait for it"


def hidden(faults: list[dict], drills: Drills) -> list[dict]:
    """`faults` without a drill's own: tagged in the journal from the instant it is injected,
    before the drill's state is saved (else the page's watcher could show it for a poll)."""
    faults = [f for f in faults if f.get("owner") != "drill"]
    try:
        state = drills.load()
    except (OSError, ValueError, TypeError):
        return faults
    if state is None or state.state != "active":
        return faults
    return [f for f in faults if f["id"] != state.entry]


def drill_view(drills: Drills, state: DrillState | None) -> dict | None:
    if state is None:
        return None
    drill = DRILLS.get(state.drill)
    if drill is None:
        return None
    values = drills.values(state.client)
    return {"drill": drill.name, "difficulty": drill.difficulty, "client": state.client, "state": state.state,
            "symptom": fill(drill.symptom, values), "started": state.started, "deadline": state.deadline,
            "hints": [fill(h, values) for h in drill.hints[:state.hints_shown]], "hints_left":
            len(drill.hints) - state.hints_shown, "checks": state.checks}


def catalogue(topology, client: str) -> list[dict]:
    values = roles(topology, client)
    return [{"name": d.name, "difficulty": d.difficulty, "symptom": fill(d.symptom, values)}
            for d in DRILLS.values() if available(d, values)]


def routes_for(ctx: UiContext):
    lock = threading.Lock()

    def locked(action):
        """Run a drill action in a worker thread, one at a time; DrillError is the CLI's exit 2."""
        def run():
            if not lock.acquire(blocking=False):
                raise Refused(409, BUSY)
            try:
                return action()
            except DrillError as exc:
                raise cli.UsageError(str(exc)) from None
            finally:
                lock.release()

        return run_in_threadpool(run)

    async def listed(request: Request) -> Response:
        first = cli.client_node(ctx.topology, None) if ctx.topology.nodes_of("client") else None
        drills = await run_in_threadpool(lambda: catalogue(ctx.topology, first) if first else [])
        return JSONResponse({"drills": drills, "current": drill_view(ctx.drills, ctx.drills.load()),
                             "default_duration": DEFAULT_DURATION_S})

    @handled("drill")
    async def start(request: Request) -> Response:
        body = await json_body(request, {"drill": str, "duration": (int, float), "from": str})
        client = cli.client_node(ctx.topology, body["from"])

        def act():  # an unknown or missing name: Drills.start's own sentence, as the CLI prints it
            state, _ = ctx.drills.start(body["drill"] or "", client, float(body["duration"] or DEFAULT_DURATION_S))
            return state

        state = await locked(act)
        ctx.watch.poll_once()
        return JSONResponse(drill_view(ctx.drills, state))

    @handled("drill")
    async def hint(request: Request) -> Response:
        await json_body(request, {})
        return JSONResponse({"hints": await locked(ctx.drills.hint)})

    @handled("drill")
    async def check(request: Request) -> Response:
        await json_body(request, {})
        state, outcomes = await locked(ctx.drills.check)
        ctx.watch.poll_once()
        if state.state == "expired":
            said = "time is up: the fault was reverted at its deadline (or by chaos halt)"
        elif state.state == "solved":
            said = f"solved in {elapsed(state)} with {state.hints_shown} hint(s)"
        else:
            said = "still broken"
        return JSONResponse({"state": state.state, "said": said,
                             "outcomes": [{"what": o.check.what, "ok": o.ok, "reason": o.reason} for o in outcomes]})

    @handled("drill")
    async def give_up(request: Request) -> Response:
        await json_body(request, {})
        state, drill, values = await locked(ctx.drills.give_up)
        ctx.watch.poll_once()
        return JSONResponse({"state": state.state, "fault": describe_fault(drill, values),
                             "fix": fill(drill.fix, values), "commands": fix_commands(drill, values)})

    return [("/api/drills", listed, ["GET"]), ("/api/drills/start", start, ["POST"]),
            ("/api/drills/hint", hint, ["POST"]), ("/api/drills/check", check, ["POST"]),
            ("/api/drills/give-up", give_up, ["POST"])]
