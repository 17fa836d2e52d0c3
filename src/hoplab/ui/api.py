"""The UI's routes. Each handler checks its input with the CLI's own functions (a bad value
gets 400 and the sentence `hoplab VERB: ...` the CLI prints), then calls the library the CLI
calls; blocking calls run in worker threads. State-changing routes are POST (and so pass
`guard.OriginGuard`'s same-origin check)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from hoplab import bounded, cli
from hoplab.backends.base import Backend, BackendError
from hoplab.spec import Topology
from hoplab.trace import render
from hoplab.ui.topo import graph_json
from hoplab.ui.watch import LabWatch

LOG_LINES = 30
MAX_BODY_BYTES = 16 * 1024  # a form's worth: nothing the page sends is larger
SSE_HEARTBEAT_S = 15.0
SSE_TICK_S = 0.2
SOCKETS_TIMEOUT_S = 10
# Run in a node by its own Python: the kernel's socket table there (hoplab.control.sockets is
# standard library only, in every image and on the netns nodes' path).
SOCKETS_SCRIPT = "import json; from hoplab.control import sockets; print(json.dumps(sockets.snapshot()))"


@dataclass
class UiContext:
    topology: Topology
    backend: Backend
    backend_name: str
    watch: LabWatch
    control: Callable  # () -> a ControlClient (traces(), trace(id), close())
    visit: Callable  # traced_visit(backend, topology, url, node, renew=...) -> (Visit, pb.Trace)
    chaos: object = None  # hoplab.chaos.journal.Chaos: inject, halt, active
    load: object = None  # hoplab.ui.load.LoadRunner: one bounded Locust run at a time
    drills: object = None  # hoplab.drill.Drills: start, hint, check, give_up
    diagnose: Callable | None = None  # hoplab.diagnose.diagnose(backend, topology, client) -> Report
    visiting: threading.Lock = field(default_factory=threading.Lock)
    diagnosing: threading.Lock = field(default_factory=threading.Lock)


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def handled(verb: str):
    """The CLI's refusals as HTTP: UsageError 400 (`hoplab VERB: ...`, as the CLI prints it),
    BackendError 502 (the lab could not do it), Refused its own status."""

    def wrap(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except cli.UsageError as exc:
                return error(400, f"hoplab {verb}: {exc}")
            except BackendError as exc:
                return error(502, f"hoplab {verb}: {exc}")
            except subprocess.TimeoutExpired as exc:  # a command past its time limit (hoplab.bounded)
                return error(502, f"hoplab {verb}: {bounded.explain(exc)}")
            except Refused as exc:
                return error(exc.status, f"hoplab {verb}: {exc}")

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


async def json_body(request: Request, fields: dict[str, type]) -> dict:
    """The request's JSON object, with each field of the expected type (absent: None)."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise Refused(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise Refused(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body is not a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise Refused(400, f"unknown field(s): {', '.join(unknown)}")
    for name, kind in fields.items():
        value = body.get(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            expected = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            raise Refused(400, f"{name}: expected {expected}, got {type(value).__name__}")
    return {name: body.get(name) for name in fields}


def routes_for(ctx: UiContext):
    """(path, endpoint, methods) of every API route, bound to `ctx`."""

    async def lab(request: Request) -> Response:
        return JSONResponse({"graph": graph_json(ctx.topology), "backend": ctx.backend_name,
                             "status": ctx.watch.snapshot})

    async def status(request: Request) -> Response:
        return JSONResponse(ctx.watch.snapshot)

    async def events(request: Request) -> Response:
        return event_stream(lambda: ctx.watch.snapshot, "status")

    @handled("ui")
    async def node(request: Request) -> Response:
        name = cli.check_node(ctx.topology, request.path_params["node"])
        return JSONResponse(await run_in_threadpool(node_detail, ctx, name))

    @handled("visit")
    async def visits(request: Request) -> Response:
        body = await json_body(request, {"url": str, "from": str, "renew": bool})
        node = cli.visit_client(ctx.topology, body["from"])
        url = cli.check_url(body["url"] or "")
        if not ctx.visiting.acquire(blocking=False):
            raise Refused(409, "a visit is already running; wait for its trace")
        try:
            result, trace = await run_in_threadpool(ctx.visit, ctx.backend, ctx.topology, url, node,
                                                    renew=bool(body["renew"]))
        finally:
            ctx.visiting.release()
        return JSONResponse({"visit": result.to_json(), **trace_view(trace)})

    @handled("trace")
    async def traces(request: Request) -> Response:
        def listed():
            control = ctx.control()
            try:
                return [{"trace_id": t.trace_id, "url": t.url, "status": t.status, "hops": t.hops,
                         "started_ns": t.started_ns} for t in control.traces()]
            finally:
                control.close()

        return JSONResponse({"traces": await run_in_threadpool(listed)})

    @handled("trace")
    async def trace(request: Request) -> Response:
        trace_id = cli.check_trace_id(request.path_params["trace_id"])
        fmt = request.query_params.get("format", "view")
        if fmt not in ("view", "json", "pcapng"):
            raise cli.UsageError(f"--format: {fmt!r} is not one of view, json, pcapng")
        found = await run_in_threadpool(fetch_trace, ctx, trace_id)
        if fmt == "view":
            return JSONResponse(trace_view(found))
        disposition = {"Content-Disposition": f'attachment; filename="trace-{trace_id}.{fmt}"'}
        if fmt == "json":
            return Response(json.dumps(render.to_json(found), indent=2) + "\n", media_type="application/json",
                            headers=disposition)
        return Response(render.to_pcapng(found), media_type="application/vnd.tcpdump.pcap", headers=disposition)

    return [("/api/lab", lab, ["GET"]), ("/api/status", status, ["GET"]), ("/api/events", events, ["GET"]),
            ("/api/nodes/{node}", node, ["GET"]), ("/api/visits", visits, ["POST"]),
            ("/api/traces", traces, ["GET"]), ("/api/traces/{trace_id}", trace, ["GET"])]


def event_stream(snapshot: Callable[[], dict], event: str) -> StreamingResponse:
    """Server-sent events: `snapshot()` as an `event` each time its "version" changes (polled
    every SSE_TICK_S, no lab call: the snapshot is kept current elsewhere), a comment now and
    then to keep the connection open."""

    async def stream():
        seen, quiet = -1, 0.0
        while True:
            current = snapshot()
            if current["version"] != seen:
                seen, quiet = current["version"], 0.0
                yield f"event: {event}\ndata: {json.dumps(current)}\n\n"
            elif quiet >= SSE_HEARTBEAT_S:
                quiet = 0.0
                yield ": still here\n\n"
            await asyncio.sleep(SSE_TICK_S)
            quiet += SSE_TICK_S

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def trace_view(trace) -> dict:
    """What the visit page draws: the trace's JSON form (render.to_json, as `trace show -f json`),
    the sequence diagram's rows (render.message_pairs, as the HTML form) and the gaps' lines."""
    return {"trace": render.to_json(trace), "messages": render.message_pairs(trace), "notes": render.gaps_text(trace)}


def fetch_trace(ctx: UiContext, trace_id: str):
    control = ctx.control()
    try:
        return control.trace(trace_id)
    finally:
        control.close()


def node_detail(ctx: UiContext, name: str) -> dict:
    """What a click on a node shows: its service and addresses, listening sockets (the kernel's
    table in the node), its last log lines and the faults active on it."""
    node = ctx.topology.nodes[name]
    live = ctx.watch.snapshot["nodes"].get(name, {})
    out = {"node": name, "service": node.service, "state": live.get("state", "unknown"),
           "health": live.get("health", "unknown"), "addresses": live.get("addresses", {}),
           "interfaces": [{"network": i.network, "address": str(i.address) if i.address else "DHCP"}
                          for i in node.interfaces],
           "faults": [f for f in ctx.watch.snapshot["faults"] if f["node"] == name]}
    try:
        result = ctx.backend.run(ctx.topology, name, ["python3", "-c", SOCKETS_SCRIPT], timeout=SOCKETS_TIMEOUT_S)
        if result.returncode == 0:
            view = json.loads(result.stdout)
            out["listeners"] = [{"address": l["address"], "port": l["port"], "backlog": l["backlog"],
                                 "accept_queue": l["accept_queue"],
                                 "processes": sorted({o["command"] for o in l["owners"]})}
                                for l in view["listeners"]]
            out["connections"] = len(view["connections"])
        else:
            out["sockets_error"] = (result.stderr.strip() or result.stdout.strip())[-300:] or "no socket table"
    except (BackendError, ValueError, KeyError, OSError) as exc:
        out["sockets_error"] = str(exc)
    try:
        out["logs"] = ctx.backend.logs(ctx.topology, name, LOG_LINES)
    except (BackendError, OSError) as exc:
        out["logs"], out["logs_error"] = [], str(exc)
    return out


def active_faults(chaos) -> list[dict]:
    """The chaos journal's active faults, for the page (deadline in epoch seconds); a fault
    past its deadline is reverted first, as every lab verb of the CLI does."""
    active = chaos.active()
    if any(e.deadline <= time.time() for e in active):
        chaos.revert_expired()
        active = chaos.active()
    return [{"id": e.id, "fault": e.fault, "node": e.node, "iface": e.iface, "params": e.params,
             "symptom": e.symptom, "started": e.started, "deadline": e.deadline, "owner": e.owner} for e in active]
