"""Builds the UI's Starlette app and serves it on 127.0.0.1 with uvicorn."""

from __future__ import annotations

import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hoplab.backends.base import Backend
from hoplab.spec import Topology
from hoplab.ui.api import UiContext, active_faults, routes_for
from hoplab.ui.chaos import routes_for as chaos_routes
from hoplab.ui.diagnose import routes_for as diagnose_routes
from hoplab.ui.drills import routes_for as drill_routes
from hoplab.ui.load import routes_for as load_routes
from hoplab.ui.guard import OriginGuard, loopback_hosts
from hoplab.ui.watch import LabWatch

STATIC = Path(__file__).parent / "static"
HOST = "127.0.0.1"  # loopback only, whatever the caller asks


def build_app(ctx: UiContext, hosts: set[str]) -> OriginGuard:
    async def index(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    api = [*routes_for(ctx), *chaos_routes(ctx), *load_routes(ctx), *drill_routes(ctx), *diagnose_routes(ctx)]
    routes = [Route("/", index), *(Route(path, endpoint, methods=methods) for path, endpoint, methods in api),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        ctx.watch.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    return OriginGuard(app, hosts)


def context(backend: Backend, backend_name: str, topology: Topology) -> UiContext:
    """The UI's view of a lab on a backend: the library the CLI uses, started watching."""
    from hoplab.chaos.journal import Chaos
    from hoplab.control.client import ControlClient
    from hoplab.diagnose import diagnose
    from hoplab.drill import Drills
    from hoplab.ui.drills import hidden
    from hoplab.ui.load import LoadRunner
    from hoplab.visit import traced_visit

    chaos = Chaos(backend, topology)
    drills = Drills(backend, topology)
    watch = LabWatch(backend, topology, lambda: hidden(active_faults(chaos), drills))
    return UiContext(topology=topology, backend=backend, backend_name=backend_name, watch=watch,
                     control=lambda: ControlClient.of(backend, topology), visit=traced_visit, chaos=chaos,
                     load=LoadRunner(backend, topology), drills=drills, diagnose=diagnose)


def serve(backend: Backend, backend_name: str, topology: Topology, port: int, announce) -> None:
    """Serve until interrupted. `announce(url)` is called once the socket listens."""
    import uvicorn

    ctx = context(backend, backend_name, topology)
    ctx.watch.start()
    config = uvicorn.Config(build_app(ctx, loopback_hosts(port)), host=HOST, port=port, log_level="warning",
                            timeout_graceful_shutdown=1, lifespan="on")
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets)
        if server.started:
            announce(f"http://{HOST}:{port}/")

    server.startup = startup
    try:
        server.run()
    finally:
        ctx.watch.stop()
    if not server.started:
        from hoplab.backends.base import BackendError

        raise BackendError(f"could not listen on {HOST}:{port} (in use?)")
