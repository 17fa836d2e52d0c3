"""`hoplab load`: Locust, headless, inside the lab: on client nodes, through the lab DNS, the
NAT and the CDN edge, like real users. The run is bounded by its time; its reports come back
to `reports/<timestamp>-<lab>/` (Locust's CSV and HTML, and summary.json), and SLO thresholds
decide the exit status. A 429 (the edge's rate limit) is throttling, counted apart from failures:
loadtests/throttle.py (installed for a user's locustfile too) reports it in a row of type
THROTTLED, and the summary gives each endpoint and the total its `throttled` count and share."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hoplab import userfile
from hoplab.backends.base import Backend, BackendError
from hoplab.control.capture import MAX_SECONDS
from hoplab.load_traces import SAMPLES_FILE, TRACED, SampledCapture, parse_samples, report
from hoplab.paths import PROJECT_ROOT
from hoplab.progress import Progress
from hoplab.spec import Topology

LOADTESTS = PROJECT_ROOT / "loadtests"
REPORTS = PROJECT_ROOT / "reports"


def new_report_dir(lab: str) -> Path:
    """reports/<timestamp>-<lab>/, never one another run (of this lab or another) already has."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{lab}"
    for n in range(1000):
        folder = REPORTS / (stem if n == 0 else f"{stem}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free report folder for {stem}")
DEFAULT_SLO = LOADTESTS / "slo.yaml"
SLO_SCHEMA = LOADTESTS / "slo.schema.json"
REMOTE = "/run/hoplab/load"
FILES = ("locustfile.py", "shapes.py", "throttle.py", "sampling.py")
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"  # in a client node: trusts the lab CA
USER_MODULE = "user_locustfile"  # a user's locustfile, as the entry locustfile imports it
# The entry Locust runs for a user's locustfile: the user's classes, and the shape --shape names
# (shapes.py), so a user's run has everything the project's has.
USER_ENTRY = f"""# Written by hoplab load: your locustfile ({USER_MODULE}.py) plus the shape --shape names.
import os

from locust.clients import HttpSession

# HttpUser's sessions trust the system's bundle, which holds the lab CA (Locust's default is
# certifi's); a user's own `self.client.verify = ...` still wins.
_session_init = HttpSession.__init__


def _trusting_the_lab(self, *args, **kwargs):
    _session_init(self, *args, **kwargs)
    self.verify = "{SYSTEM_CA}"


HttpSession.__init__ = _trusting_the_lab

import sampling  # noqa: E402  (--trace-sample: one request in N carries a sampled traceparent)
import throttle  # noqa: E402  (a 429 is throttling, counted apart: for your users too)
from shapes import SHAPES, open_model  # noqa: E402
throttle.install()
sampling.install()
from {USER_MODULE} import *  # noqa: E402,F401,F403  (your User classes)

_shape = SHAPES.get(os.environ.get("HOPLAB_SHAPE", ""))
if _shape is not None:
    Shape = _shape
open_model(globals())
"""
THROTTLED = "THROTTLED"  # the request type of a 429's row (loadtests/throttle.py)
KEY_LOG = "tls-keys.log"  # SSLKEYLOGFILE of the users on the master node (NSS key log format)
REPORT_FILES = ("run_stats.csv", "run_failures.csv", "run_stats_history.csv", "report.html", KEY_LOG)
SHAPE_NAMES = ("steady", "step", "spike", "open")  # loadtests/shapes.py's SHAPES (a unit test keeps them equal)
OPEN_SHAPE = "open"
TIMESPAN = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
HEALTHY_WAIT_S = 120
GRACE_S = 90  # past the run's own time bound, before the run is given up
TRACED_RUN_MAX_S = MAX_SECONDS - GRACE_S  # --trace-sample: one capture covers the run and its grace


def parse_timespan(text: str) -> int:
    """Seconds from Locust's run-time syntax: 90, 30s, 5m, 1h30m, 1h2m3s. ValueError otherwise."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    match = TIMESPAN.fullmatch(text) if text.isascii() else None
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a time span (90, 30s, 5m, 1h30m)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def load_model(options: "LoadOptions") -> dict:
    """Which load model ran, as the report says it: closed (each user waits for its answer
    before asking again) or open (arrivals at a constant rate, whatever the answers' pace)."""
    if options.shape == OPEN_SHAPE:
        return {"model": "open", "arrival_rate": options.arrival_rate, "users": options.users,
                "said": f"open: {options.arrival_rate:g} tasks/s arriving from a pool of {options.users} users"}
    return {"model": "closed", "users": options.users,
            "said": f"closed: {options.users} users, each waiting for its answer before the next request"}


@dataclass
class LoadOptions:
    users: int = 10
    rate: float = 5
    seconds: int = 30
    shape: str | None = None
    workers: int = 0
    node: str | None = None
    slo: Path = DEFAULT_SLO
    no_cache: bool = False  # bust the edge's cache on every cacheable request
    locustfile: Path | None = None  # a user's locustfile (its User classes set `host`) instead of loadtests/
    host: str | None = None  # --host for Locust (default for the project's locustfile: https://www.<domain>)
    arrival_rate: float = 0  # tasks/s under the open shape
    trace_sample: int = 0  # trace about one request in N end to end (0: none)


@dataclass
class LoadResult:
    report_dir: Path
    summary: dict
    breaches: list[str] = field(default_factory=list)


def wait_healthy(backend: Backend, topology: Topology, progress: Progress) -> None:
    deadline = time.monotonic() + HEALTHY_WAIT_S
    while True:
        sick = [s.node for s in backend.status(topology) if (s.state, s.health) != ("running", "healthy")]
        if not sick:
            return
        if time.monotonic() > deadline:
            raise BackendError(f"the lab is not healthy ({', '.join(sick)}); load needs a healthy lab")
        progress.say(f"waiting for {', '.join(sick)} to be healthy")
        time.sleep(2)


def summarize(stats_csv: str) -> dict:
    """Per endpoint and in total, from Locust's stats CSV: requests (every one made, throttled
    ones included), failures (never a throttled one), throttled (429s) and the share of each,
    requests/s, and p50/p95/p99 -- an endpoint's of its answers that were not throttled, the
    total's Locust's own over every answer."""
    rows = list(csv.DictReader(io.StringIO(stats_csv)))
    throttled = {row["Name"]: row for row in rows if row["Type"] == THROTTLED}
    answered = {row["Name"]: row for row in rows if row["Type"] != THROTTLED}

    def number(row: dict | None, column: str) -> float:
        value = (row or {}).get(column, "N/A")
        return float(value) if value not in ("", "N/A") else 0.0

    def entry(name: str, row: dict | None, refused: int, rps: float) -> dict:
        requests, failures = int(number(row, "Request Count")) + refused, int(number(row, "Failure Count"))
        return {
            "method": (row or {}).get("Type", ""), "name": name, "requests": requests, "failures": failures,
            "failure_ratio": failures / requests if requests else 0.0, "throttled": refused,
            "throttled_ratio": refused / requests if requests else 0.0, "rps": rps,
            "p50_ms": number(row, "50%"), "p95_ms": number(row, "95%"), "p99_ms": number(row, "99%"),
        }

    endpoints = [entry(name, answered.get(name), int(number(throttled.get(name), "Request Count")),
                       number(answered.get(name), "Requests/s") + number(throttled.get(name), "Requests/s"))
                 for name in dict.fromkeys([*answered, *throttled]) if name != "Aggregated"]
    total, aggregate = None, answered.get("Aggregated")
    if aggregate is not None:
        refused = sum(e["throttled"] for e in endpoints)
        # Locust's aggregate counts the throttled rows too: its answers alone are the rest
        answers = {**aggregate, "Request Count": str(int(number(aggregate, "Request Count")) - refused)}
        total = entry("Aggregated", answers, refused, number(aggregate, "Requests/s"))
    return {"total": total, "endpoints": endpoints}


class SloError(userfile.FileError):
    kind = "SLO file"


def read_slo(slo_file: Path) -> dict:
    """The thresholds, checked against loadtests/slo.schema.json (a misspelt key is an error)."""
    return userfile.load(slo_file, SLO_SCHEMA, SloError)


def check_slo(summary: dict, slo_file: Path) -> list[str]:
    slo = read_slo(slo_file)
    total = summary["total"]
    if total is None or total["requests"] == 0:
        return ["no request was made"]
    breaches = []
    if "max_failure_ratio" in slo and total["failure_ratio"] > float(slo["max_failure_ratio"]):
        breaches.append(f"failure ratio {total['failure_ratio']:.4f} > {slo['max_failure_ratio']} ({slo_file.name})")
    if "max_p95_ms" in slo and total["p95_ms"] > float(slo["max_p95_ms"]):
        breaches.append(f"p95 {total['p95_ms']:.0f} ms > {slo['max_p95_ms']} ms ({slo_file.name})")
    if "max_throttled_ratio" in slo and total["throttled_ratio"] > float(slo["max_throttled_ratio"]):
        breaches.append(f"throttled ratio {total['throttled_ratio']:.4f} > {slo['max_throttled_ratio']} "
                        f"({slo_file.name})")
    return breaches


def _put(backend: Backend, topology: Topology, node: str, locustfile: Path | None = None) -> None:
    files = {name: (LOADTESTS / name).read_text() for name in FILES}
    if locustfile is not None:
        files.update({f"{USER_MODULE}.py": locustfile.read_text(), "locustfile.py": USER_ENTRY})
    for name, text in files.items():
        result = backend.run(topology, node, ["sh", "-c", f"mkdir -p {REMOTE}/out && cat > {REMOTE}/{name}"],
                             input=text)
        if result.returncode != 0:
            raise BackendError(f"{node}: could not copy {name}: {result.stderr.strip()}")


def run_load(backend: Backend, topology: Topology, options: LoadOptions, progress: Progress) -> LoadResult:
    read_slo(options.slo)  # a bad SLO file is refused before any load, not found after it
    clients = [n.name for n in topology.nodes_of("client")]
    master = options.node or clients[0]
    wait_healthy(backend, topology, progress)
    for node in {master, *clients[:max(options.workers, 0)]}:
        backend.run(topology, node, ["rm", "-rf", REMOTE])
        _put(backend, topology, node, options.locustfile)
    env = ["env", f"HOPLAB_DOMAIN={topology.domain.name}",
           f"HOPLAB_USERS={options.users}", f"HOPLAB_RATE={options.rate}", f"HOPLAB_TIME={options.seconds}",
           f"HOPLAB_SHAPE={options.shape or ''}", f"HOPLAB_ARRIVAL_RATE={options.arrival_rate:g}",
           f"HOPLAB_CACHE_BUST={'1' if options.no_cache else ''}",
           f"HOPLAB_TRACE_SAMPLE={options.trace_sample}", f"HOPLAB_SAMPLES={REMOTE}/out/{SAMPLES_FILE}",
           # the TLS session keys of the run, as browsers log them: a capture of it can be read
           f"SSLKEYLOGFILE={REMOTE}/out/{KEY_LOG}",
           # the system's bundle, which trusts the lab CA (Locust's requests would use certifi's):
           # a user's locustfile reaches the lab's HTTPS sites with no set-up of its own
           f"REQUESTS_CA_BUNDLE={SYSTEM_CA}"]
    # A user's locustfile names its own host (its User classes' `host`, HOPLAB_DOMAIN in the
    # environment), which --host would override: only when asked.
    host = options.host or (None if options.locustfile else f"https://www.{topology.domain.name}")
    argv = [*env, "locust", "-f", f"{REMOTE}/locustfile.py", "--headless", *(["--host", host] if host else []),
            "--csv", f"{REMOTE}/out/run", "--csv-full-history", "--html", f"{REMOTE}/out/report.html",
            "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
            "-u", str(options.users), "-r", str(options.rate), "-t", f"{options.seconds}s"]
    workers: list[threading.Thread] = []
    locust_nodes = [clients[i % len(clients)] for i in range(options.workers)]
    if options.workers:
        master_ip = next(a.split("/")[0] for s in backend.status(topology) if s.node == master
                         for iface, a in s.addresses.items() if iface != "mgmt")
        argv += ["--master", "--expect-workers", str(options.workers), "--expect-workers-max-wait", "30"]
        for node in locust_nodes:
            worker = [*env, "locust", "-f", f"{REMOTE}/locustfile.py", "--worker", "--master-host", master_ip,
                      "--loglevel", "WARNING"]
            thread = threading.Thread(target=backend.run, args=(topology, node, worker, options.seconds + GRACE_S),
                                      daemon=True)
            thread.start()
            workers.append(thread)
    progress.say(f"locust on {master}: {load_model(options)['said']}, {options.rate:g} users/s spawned, "
                 f"{options.seconds} s"
                 + (f", shape {options.shape}" if options.shape else "")
                 + (f", {options.workers} workers" if options.workers else "")
                 + (f", about 1 request in {options.trace_sample} traced" if options.trace_sample else ""))
    sampler = SampledCapture(backend, topology, options.seconds + GRACE_S) if options.trace_sample else None
    report_dir = None
    try:
        result = backend.run(topology, master, argv, timeout=options.seconds + GRACE_S)
        for thread in workers:
            thread.join(timeout=30)
        report_dir = new_report_dir(topology.name)
        for name in REPORT_FILES:
            fetched = backend.run(topology, master, ["cat", f"{REMOTE}/out/{name}"])
            if fetched.returncode == 0:
                (report_dir / name).write_text(fetched.stdout)
    finally:
        if sampler is not None:  # the capture ends with the run, whatever became of it
            key_log = report_dir / KEY_LOG if report_dir is not None else None
            sampler.stop(key_log.read_text() if key_log is not None and key_log.exists() else "")
    stats = report_dir / "run_stats.csv"
    if not stats.exists():
        if sampler is not None:
            sampler.close()
        raise BackendError(f"locust produced no statistics (exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")
    summary = summarize(stats.read_text())
    summary["options"] = {"users": options.users, "rate": options.rate, "seconds": options.seconds,
                          "shape": options.shape, "workers": options.workers, "node": master,
                          "no_cache": options.no_cache,
                          "locustfile": str(options.locustfile or LOADTESTS / "locustfile.py"), "host": host,
                          "arrival_rate": options.arrival_rate, "trace_sample": options.trace_sample}
    summary["model"] = load_model(options)
    if sampler is not None:
        summary["samples"] = trace_samples(backend, topology, sampler, options.trace_sample,
                                           sorted({master, *locust_nodes}), report_dir, progress)
    breaches = check_slo(summary, options.slo)
    summary["slo"] = {"file": str(options.slo), "breaches": breaches, "met": not breaches}
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return LoadResult(report_dir, summary, breaches)


def trace_samples(backend: Backend, topology: Topology, sampler: SampledCapture, every: int, nodes: list[str],
                  report_dir: Path, progress: Progress) -> dict:
    """The run's samples from each node that ran Locust; the slowest TRACED traced, with where
    their time went (hoplab.load_traces)."""
    samples = []
    for node in nodes:
        fetched = backend.run(topology, node, ["cat", f"{REMOTE}/out/{SAMPLES_FILE}"])
        if fetched.returncode == 0:
            samples += parse_samples(fetched.stdout, node)
    slowest = sorted(samples, key=lambda s: s.ms, reverse=True)[:TRACED]
    for index, sample in enumerate(slowest, 1):
        progress.say(f"tracing sampled request {index}/{len(slowest)}: {sample.name} ({sample.ms:.0f} ms)")
        sampler.trace(sample, report_dir / "traces")
    sampler.close()
    return report(samples, every, slowest, report_dir)
