"""The load page's runs: one bounded Locust run at a time (`hoplab.load.run_load`, as `hoplab
load` runs it), watched live. While Locust runs, a thread reads the last aggregated row of its
`--csv-full-history` file in the node once a second (requests/s, p50, p95, failures, users);
each new sample bumps a version the page's server-sent events wait on. At the end: the
summary, the SLO verdict and the run's report folder, whose files the UI serves."""

from __future__ import annotations

import csv
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hoplab.backends.base import Backend, BackendError
from hoplab.load import REMOTE, REPORT_FILES, LoadOptions, LoadResult, run_load
from hoplab.progress import Progress
from hoplab.spec import Topology

POLL_S = 1.0  # Locust writes its history once a second
SERIES_MAX = 600  # points kept for the page's chart (ten minutes at one a second)
SAID_MAX = 40
SERVED_FILES = (*REPORT_FILES, "summary.json", "samples.html", "samples.json")  # samples: --trace-sample
SAMPLE_TRACE = re.compile(r"[0-9a-f]{32}\.(?:html|json)")  # a sampled request's trace: traces/<id>.html|json
HISTORY = f"{REMOTE}/out/run_stats_history.csv"
# Run in the client node by its own Python (Locust's): the header and the last complete
# "Aggregated" row of the history file, read from its tail, as JSON; nothing when there is none.
HISTORY_SCRIPT = """
import csv, json, os, sys
try:
    with open(sys.argv[1], "rb") as f:
        header = f.readline()
        start = max(f.seek(0, os.SEEK_END) - 16384, len(header))
        f.seek(start)
        lines = f.read().decode(errors="replace").split("\\n")[:-1]  # the last one may be partial
except OSError:
    sys.exit(0)
rows = [line for line in lines[1 if start > len(header) else 0:] if ",Aggregated," in line]
if header and rows:
    print(json.dumps(dict(zip(next(csv.reader([header.decode()])), next(csv.reader([rows[-1]]))))))
"""


def live_numbers(row: dict) -> dict | None:
    """One history row as the page shows it; None when it is not one."""
    def number(column: str) -> float:
        value = row.get(column, "")
        return float(value) if value not in ("", "N/A") else 0.0

    try:
        return {"t": int(row["Timestamp"]), "users": int(number("User Count")), "rps": number("Requests/s"),
                "fails_per_s": number("Failures/s"), "p50_ms": number("50%"), "p95_ms": number("95%"),
                "requests": int(number("Total Request Count")), "failures": int(number("Total Failure Count"))}
    except (KeyError, ValueError):
        return None


def sample_history(backend: Backend, topology: Topology, node: str) -> dict | None:
    """The latest aggregated numbers of the run in `node`, or None (no history yet)."""
    result = backend.run(topology, node, ["python3", "-c", HISTORY_SCRIPT, HISTORY], timeout=10)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    try:
        return live_numbers(json.loads(result.stdout.strip().splitlines()[-1]))
    except (ValueError, AttributeError):
        return None


def whole_history(path: Path, sampled: list[dict]) -> list[dict]:
    """The run's every aggregated second from its history file, once the run is over: the
    chart's curve is then whole, whatever seconds the live samples missed on a busy machine."""
    try:
        with path.open(newline="") as handle:
            rows = [live_numbers(row) for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]
    except OSError:
        return sampled
    series = list({row["t"]: row for row in rows if row is not None}.values())
    return series[-SERIES_MAX:] if len(series) >= len(sampled) else sampled


class RunProgress(Progress):
    """run_load's progress lines, kept for the page."""

    def __init__(self, said: Callable[[str], None]):
        super().__init__(quiet=True)
        self.said = said

    def say(self, message: str) -> None:
        self.said(f"[{self.elapsed:5.1f}s] {message}")


class LoadRunner:
    """One run at a time. `start` returns at once; the run ends by itself at its time bound
    (Locust's `-t`, and run_load's own timeout past it)."""

    def __init__(self, backend: Backend, topology: Topology, run: Callable = run_load,
                 sample: Callable[[str], dict | None] | None = None, poll_s: float = POLL_S):
        self.backend, self.topology, self.run, self.poll_s = backend, topology, run, poll_s
        self.sample = sample or (lambda node: sample_history(backend, topology, node))
        self.version = 0
        self.current: dict | None = None
        self.reports: dict[str, Path] = {}  # run id -> its report folder
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._done = threading.Event()

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict:
        with self._lock:
            return {"version": self.version, "run": json.loads(json.dumps(self.current))}

    def _update(self, **changes) -> None:
        with self._changed:
            self.current.update(changes)
            self.version += 1
            self._changed.notify_all()

    def _say(self, line: str) -> None:
        with self._changed:
            self.current["said"] = [*self.current["said"], line][-SAID_MAX:]
            self.version += 1
            self._changed.notify_all()

    @property
    def running(self) -> bool:
        with self._lock:
            return self.current is not None and self.current["state"] in ("starting", "running")

    # ------------------------------------------------------------ a run

    def start(self, options: LoadOptions, master: str) -> dict | None:
        """The new run's view, or None when one is already running."""
        with self._changed:
            if self.current is not None and self.current["state"] in ("starting", "running"):
                return None
            now = time.time()
            self.current = {"id": secrets.token_hex(6), "state": "starting", "node": master, "started": now,
                            "deadline": now + options.seconds,
                            "options": {"users": options.users, "rate": options.rate, "seconds": options.seconds,
                                        "shape": options.shape, "workers": options.workers,
                                        "no_cache": options.no_cache, "arrival_rate": options.arrival_rate,
                                        "trace_sample": options.trace_sample},
                            "live": None, "series": [], "said": [], "summary": None, "slo": None,
                            "report": None, "error": ""}
            self.version += 1
            self._changed.notify_all()
            view = json.loads(json.dumps(self.current))
        self._done.clear()
        threading.Thread(target=self._run, args=(options,), name="hoplab-ui-load", daemon=True).start()
        threading.Thread(target=self._watch, args=(view["id"], master, now), name="hoplab-ui-load-watch",
                         daemon=True).start()
        return view

    def _run(self, options: LoadOptions) -> None:
        run_id = self.current["id"]
        try:
            result: LoadResult = self.run(self.backend, self.topology, options, RunProgress(self._say))
        except (BackendError, OSError, RuntimeError) as exc:
            self._update(state="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 -- the page must hear of it, whatever it was
            self._update(state="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self.reports[run_id] = result.report_dir
            total = result.summary.get("total") or {}
            with self._lock:
                series = self.current["series"]
            self._update(series=whole_history(result.report_dir / "run_stats_history.csv", series),
                         state="done", summary={"total": total, "endpoints": result.summary.get("endpoints", [])},
                         slo={"met": not result.breaches, "breaches": list(result.breaches)},
                         report={"folder": result.report_dir.name,
                                 "files": sorted(n for n in SERVED_FILES if (result.report_dir / n).is_file())})
        finally:
            self._done.set()

    def _watch(self, run_id: str, node: str, started: float) -> None:
        while not self._done.wait(self.poll_s):
            try:
                numbers = self.sample(node)
            except Exception:  # noqa: BLE001 -- a missed sample is not the run's failure
                numbers = None
            if numbers is None or numbers["t"] < int(started) - 1:  # nothing yet, or the last run's file
                continue
            with self._changed:
                run = self.current
                if run is None or run["id"] != run_id or (run["series"] and run["series"][-1]["t"] == numbers["t"]):
                    continue
                run["live"] = numbers
                run["series"] = [*run["series"], numbers][-SERIES_MAX:]
                if run["state"] == "starting":
                    run["state"] = "running"
                self.version += 1
                self._changed.notify_all()

    def wait_done(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def report_file(self, run_id: str, name: str) -> Path | None:
        """A file of a run this server started, by its name in SERVED_FILES, or a sampled
        request's trace (`traces/<id>.html|json`, which samples.html links to); else None."""
        folder = self.reports.get(run_id)
        trace = name.removeprefix("traces/")
        if folder is None or (name not in SERVED_FILES and not (trace != name and SAMPLE_TRACE.fullmatch(trace))):
            return None
        path = folder / name
        return path if path.is_file() else None


# ------------------------------------------------------------ the routes

REFUSED_WHILE_RUNNING = "a load run is already running; it stops by itself at its time bound"


def routes_for(ctx):
    """The load page's routes, bound to a UiContext whose `load` is a LoadRunner."""
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response

    from hoplab import cli
    from hoplab.load import DEFAULT_SLO, SHAPE_NAMES
    from hoplab.ui.api import Refused, event_stream, handled, json_body

    defaults = LoadOptions()
    clients = [n.name for n in ctx.topology.nodes_of("client")]

    async def state(request: Request) -> Response:
        return JSONResponse({**ctx.load.snapshot(), "shapes": list(SHAPE_NAMES), "clients": clients,
                             "defaults": {"users": defaults.users, "rate": defaults.rate, "time": defaults.seconds}})

    async def events(request: Request) -> Response:
        return event_stream(ctx.load.snapshot, "load")

    @handled("load")
    async def start(request: Request) -> Response:
        body = await json_body(request, {"users": int, "rate": (int, float), "time": int, "shape": str,
                                         "workers": int, "from": str, "no_cache": bool,
                                         "arrival_rate": (int, float), "trace_sample": int})
        users = defaults.users if body["users"] is None else body["users"]
        rate = float(defaults.rate if body["rate"] is None else body["rate"])  # as argparse's type=float
        seconds = defaults.seconds if body["time"] is None else body["time"]
        workers = body["workers"] or 0
        arrival_rate = float(body["arrival_rate"] or 0)
        cli.check_load(ctx.topology, users=users, rate=rate, seconds=seconds, shape=body["shape"], workers=workers,
                       node=body["from"], arrival_rate=arrival_rate, trace_sample=body["trace_sample"])
        options = LoadOptions(users=users, rate=rate, seconds=seconds, shape=body["shape"], workers=workers,
                              node=body["from"], slo=DEFAULT_SLO, no_cache=bool(body["no_cache"]),
                              arrival_rate=arrival_rate, trace_sample=body["trace_sample"] or 0)
        view = ctx.load.start(options, body["from"] or clients[0])
        if view is None:
            raise Refused(409, REFUSED_WHILE_RUNNING)
        return JSONResponse(view)

    async def report(request: Request) -> Response:
        path = ctx.load.report_file(request.path_params["run"], request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "no such report file"}, status_code=404)
        # Locust's report runs its own scripts: in a sandbox (an origin of its own), so it can
        # never call this server's API as the page.
        return FileResponse(path, headers={"Content-Security-Policy": "sandbox allow-scripts",
                                           "Cache-Control": "no-store"})

    return [("/api/load", state, ["GET"]), ("/api/load/events", events, ["GET"]),
            ("/api/load/start", start, ["POST"]), ("/api/load/runs/{run}/{name:path}", report, ["GET"])]
