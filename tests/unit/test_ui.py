"""`hoplab ui`'s server without a lab: its routes on a fake backend and control service, the
CLI's own checks and sentences for bad input, the loopback-and-same-origin guard, the live
status watch, and the topology layout on every shipped topology."""

from __future__ import annotations

import json
import subprocess
import warnings

import pytest

with warnings.catch_warnings():  # Starlette's note that its test client will move to another httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from hoplab import cli, spec
from hoplab.backends.base import Backend, NodeStatus
from hoplab.paths import TOPOLOGY_DIR
from hoplab.trace.assemble import assemble
from hoplab.ui.api import UiContext
from hoplab.ui.app import build_app
from hoplab.ui.guard import loopback_hosts, refusal
from hoplab.ui.topo import graph_json, layout
from hoplab.ui.watch import LabWatch
from hoplab.v1 import control_pb2 as pb
from hoplab.visit import Visit
from test_trace_story import TRACE, page_load

PORT = 8350
HOSTS = loopback_hosts(PORT)
BASE = f"http://127.0.0.1:{PORT}"
SOCKETS = {"listeners": [{"address": "0.0.0.0", "port": 443, "backlog": 511, "accept_queue": 0,
                          "owners": [{"pid": 7, "command": "nginx"}]}], "connections": []}


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, topology):
        self.health = {n: "healthy" for n in topology.nodes}
        self.ran: list[tuple[str, list[str]]] = []

    def status(self, topology, addresses=True):
        return [NodeStatus(n, node.service, "running" if self.health[n] != "exited" else "exited", self.health[n],
                           {"home": "192.168.50.100/24"} if addresses and node.service == "client" else {})
                for n, node in topology.nodes.items()]

    def run(self, topology, node, argv, timeout=60, input=None):
        self.ran.append((node, argv))
        return subprocess.CompletedProcess(argv, 0, json.dumps(SOCKETS), "")

    def logs(self, topology, node, lines=20):
        return [f"{node}: started"]

    up = down = exec = stop_node = start_node = clean = lambda *a, **k: None


class FakeControl:
    def __init__(self, trace):
        self.trace_ = trace

    def traces(self):
        return [pb.TraceSummary(trace_id=TRACE, url="https://www.example.test/", status=200, hops=10)]

    def trace(self, trace_id):
        return self.trace_

    def close(self):
        pass


@pytest.fixture
def topology():
    return spec.load(TOPOLOGY_DIR / "lab.yaml")


@pytest.fixture
def trace():
    return assemble(TRACE, "https://www.example.test/", "c1", page_load(), {"client"})


@pytest.fixture
def ctx(topology, trace):
    backend = FakeBackend(topology)
    watch = LabWatch(backend, topology, lambda: [{"id": "f1", "fault": "packet-loss", "node": "router", "iface": "home",
                                                  "params": {}, "symptom": "loss", "started": 1, "deadline": 2}])
    watch.poll_once()
    visits = []

    def visit(backend, topology, url, node, renew=False):
        visits.append((url, node, renew))
        return Visit(url=url, node=node, trace_id=TRACE, ok=True, status=200), trace

    context = UiContext(topology=topology, backend=backend, backend_name="docker", watch=watch,
                        control=lambda: FakeControl(trace), visit=visit)
    context.visits = visits
    return context


@pytest.fixture
def client(ctx):
    with TestClient(build_app(ctx, HOSTS), base_url=BASE) as c:
        yield c


def cli_error(*argv: str, capsys) -> str:
    """What `hoplab ARGV...` prints on stderr (no lab is reached: the checks come first)."""
    code = cli.main([*argv, "--backend", "docker"])
    assert code == cli.EXIT_BAD_INPUT
    return capsys.readouterr().err.strip()


# ------------------------------------------------------------ pages and reads

def test_the_page_and_its_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    for asset in ("app.js", "api.js", "graph.js", "lab.js", "visit.js", "layers.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert "http" not in page.text.replace("http://www.w3.org", "").split("<body>")[0]  # nothing from elsewhere


def test_the_lab_is_every_node_and_network_of_the_topology(client, topology):
    lab = client.get("/api/lab").json()
    assert {n["name"] for n in lab["graph"]["nodes"]} == set(topology.nodes)
    assert {n["name"] for n in lab["graph"]["networks"]} == set(topology.networks)
    assert lab["backend"] == "docker" and lab["graph"]["clients"] == ["client"]
    status = lab["status"]
    assert all(s["health"] == "healthy" for s in status["nodes"].values())
    assert status["faults"][0]["node"] == "router"


def test_a_node_shows_its_sockets_logs_and_faults(client, ctx):
    detail = client.get("/api/nodes/router").json()
    assert detail["service"] == "router" and detail["logs"] == ["router: started"]
    assert detail["listeners"][0] == {"address": "0.0.0.0", "port": 443, "backlog": 511, "accept_queue": 0,
                                      "processes": ["nginx"]}
    assert [f["fault"] for f in detail["faults"]] == ["packet-loss"]
    node, argv = ctx.backend.ran[-1]
    assert node == "router" and argv[0] == "python3"  # an argv, no shell


def test_an_unknown_node_gets_the_clis_sentence(client, capsys):
    response = client.get("/api/nodes/nope")
    assert response.status_code == 400
    expected = cli_error("stop", "nope", capsys=capsys).removeprefix("hoplab stop: ")
    assert response.json()["error"] == f"hoplab ui: {expected}"


def test_a_trace_is_its_json_form_plus_the_sequence_rows(client, trace):
    from hoplab.trace import render

    view = client.get(f"/api/traces/{TRACE}").json()
    assert view["trace"] == json.loads(json.dumps(render.to_json(trace)))
    pairs = view["messages"]
    assert len(pairs) == len(render._messages(trace))
    for sender, receiver in pairs:
        assert receiver is None or trace.hops[sender].record.summary == trace.hops[receiver].record.summary
    nat = [h for h in view["trace"]["hops"] if "translated" in h and "forwarded" in h]
    assert nat and {h["node"] for h in nat} == {"router"}


def test_a_trace_downloads_as_json_and_pcapng(client, trace):
    from hoplab.trace import render

    as_json = client.get(f"/api/traces/{TRACE}?format=json")
    assert "attachment" in as_json.headers["content-disposition"]
    assert json.loads(as_json.text) == json.loads(json.dumps(render.to_json(trace)))
    pcap = client.get(f"/api/traces/{TRACE}?format=pcapng")
    assert pcap.content == render.to_pcapng(trace) and pcap.content[:4] == b"\x0a\x0d\x0d\x0a"


def test_past_traces_are_listed(client):
    assert client.get("/api/traces").json()["traces"][0]["trace_id"] == TRACE


@pytest.mark.parametrize("bad", ["nothex", "0" * 31, "g" * 32])
def test_a_bad_trace_id_gets_the_clis_sentence(client, bad, capsys):
    response = client.get(f"/api/traces/{bad}")
    assert response.status_code == 400
    assert response.json()["error"] == cli_error("trace", "show", bad, capsys=capsys)


def test_a_bad_download_format_is_refused(client):
    assert client.get(f"/api/traces/{TRACE}?format=exe").status_code == 400


# ------------------------------------------------------------ visits

def test_a_visit_returns_its_trace(client, ctx):
    response = client.post("/api/visits", json={"url": "https://www.example.test/", "renew": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["visit"]["status"] == 200 and body["trace"]["trace_id"] == TRACE and body["messages"]
    assert ctx.visits == [("https://www.example.test/", "client", True)]


@pytest.mark.parametrize("url", ["ftp://www.example.test/", "www.example.test", "https://a b/", "http://x/\n"])
def test_a_bad_url_gets_the_clis_sentence(client, ctx, url, capsys):
    response = client.post("/api/visits", json={"url": url})
    assert response.status_code == 400
    assert response.json()["error"] == cli_error("visit", url, capsys=capsys)
    assert ctx.visits == []


def test_a_visit_from_an_unknown_node_gets_the_clis_sentence(client, capsys):
    response = client.post("/api/visits", json={"url": "https://www.example.test/", "from": "nope"})
    assert response.status_code == 400
    assert response.json()["error"] == cli_error("visit", "https://www.example.test/", "--from", "nope", capsys=capsys)


@pytest.mark.parametrize("body", ['{"url": 5}', "[1]", "not json", '{"url": "https://x/", "shell": "rm"}',
                                  '{"url": "https://x/", "renew": "yes"}'])
def test_a_malformed_visit_is_refused(client, ctx, body):
    response = client.post("/api/visits", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"].startswith("hoplab visit: ")
    assert ctx.visits == []


def test_one_visit_at_a_time(client, ctx):
    ctx.visiting.acquire()
    try:
        assert client.post("/api/visits", json={"url": "https://www.example.test/"}).status_code == 409
    finally:
        ctx.visiting.release()


def test_an_oversized_body_is_refused(client):
    assert client.post("/api/visits", content=b"x" * 20000).status_code == 413


# ------------------------------------------------------------ the guard

def test_a_cross_origin_post_is_refused(client, ctx):
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://127.0.0.1:9999"}, {"Sec-Fetch-Site": "same-site"}):
        response = client.post("/api/visits", json={"url": "https://www.example.test/"}, headers=headers)
        assert response.status_code == 403, headers
    assert ctx.visits == []


def test_the_pages_own_origin_may_post(client, ctx):
    headers = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/visits", json={"url": "https://www.example.test/"}, headers=headers).status_code == 200


def test_another_host_name_is_refused_even_for_reads(ctx):
    with TestClient(build_app(ctx, HOSTS), base_url="http://rebound.example:8350") as other:
        assert other.get("/api/lab").status_code == 421


def test_refusal_rules():
    assert refusal("GET", {"host": f"localhost:{PORT}"}, HOSTS) is None
    assert refusal("GET", {"host": "127.0.0.1:1"}, HOSTS)[0] == 421
    assert refusal("POST", {"host": f"127.0.0.1:{PORT}", "sec-fetch-site": "none"}, HOSTS) is None
    assert refusal("DELETE", {"host": f"127.0.0.1:{PORT}", "origin": "null"}, HOSTS)[0] == 403


def test_the_server_binds_loopback_only():
    from hoplab.ui import app

    assert app.HOST == "127.0.0.1"


@pytest.mark.parametrize("port", ["80", "70000", "0"])
def test_a_bad_port_gets_exit_2(port, capsys):
    assert cli_error("ui", "--port", port, capsys=capsys) == f"hoplab ui: --port: {port} is outside 1024..65535"


# ------------------------------------------------------------ the watch and the layout

def test_the_watch_bumps_its_version_only_on_a_change(topology):
    backend = FakeBackend(topology)
    faults: list[dict] = []
    watch = LabWatch(backend, topology, lambda: faults)
    assert watch.poll_once() and watch.version == 1
    assert not watch.poll_once() and watch.version == 1
    backend.health["web2"] = "exited"
    assert watch.poll_once() and watch.snapshot["nodes"]["web2"]["state"] == "exited"
    faults.append({"node": "dns"})
    assert watch.poll_once() and watch.wait(2, timeout=0.1)["version"] == 3


def test_the_watch_reports_a_backend_that_fails(topology):
    class Broken(FakeBackend):
        def status(self, topology, addresses=True):
            raise RuntimeError("engine gone")

    watch = LabWatch(Broken(topology), topology, lambda: [])
    watch.poll_once()
    assert watch.snapshot["error"] == "status: engine gone" and watch.snapshot["nodes"] == {}


@pytest.mark.parametrize("path", sorted(TOPOLOGY_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_topology_lays_out_without_overlaps(path):
    topology = spec.load(path)
    positions, width, height = layout(topology)
    assert set(positions) == set(topology.nodes) | {f"net:{n}" for n in topology.networks}
    assert len(set(positions.values())) == len(positions)
    assert all(0 < x < width and 0 < y < height for x, y in positions.values())
    graph = graph_json(topology)
    assert len(graph["links"]) == sum(len(n.interfaces) for n in topology.nodes.values())


# ------------------------------------------------------------ break and fix

@pytest.fixture
def chaos_client(ctx, tmp_path, monkeypatch):
    from hoplab.chaos.journal import Chaos
    from hoplab.ui.api import active_faults

    chaos = Chaos(ctx.backend, ctx.topology, state_root=tmp_path)
    monkeypatch.setattr(chaos, "start_reaper", lambda: chaos.reaped.append(True), raising=False)
    chaos.reaped = []
    ctx.chaos = chaos
    ctx.watch.faults = lambda: active_faults(chaos)
    with TestClient(build_app(ctx, HOSTS), base_url=BASE) as c:
        yield c, chaos


def test_the_catalogue_is_the_clis(chaos_client):
    from hoplab.chaos.faults import CATALOGUE

    client, _ = chaos_client
    assert [f["name"] for f in client.get("/api/chaos").json()["faults"]] == list(CATALOGUE)
    loss = next(f for f in client.get("/api/chaos").json()["faults"] if f["name"] == "packet-loss")
    assert loss["params"] == {"percent": "30"} and loss["kinds"]["percent"].startswith("a percentage")


def test_a_fault_injected_and_halted(chaos_client, ctx):
    client, chaos = chaos_client
    response = client.post("/api/chaos/inject", json={"fault": "packet-loss", "target": "client:home",
                                                      "duration": 30, "params": ["percent=20"]})
    assert response.status_code == 200, response.text
    entry = response.json()
    assert [e.id for e in chaos.active()] == [entry["id"]] and chaos.reaped == [True]
    assert chaos.active()[0].params == {"percent": 20}
    assert [f["id"] for f in ctx.watch.snapshot["faults"]] == [entry["id"]]  # the page sees it at once
    halted = client.post("/api/chaos/halt", json={}).json()
    assert [e["id"] for e in halted["reverted"]] == [entry["id"]] and chaos.active() == []


@pytest.mark.parametrize("body, message", [
    ({"fault": "nope", "target": "client"}, "FAULT: unknown fault 'nope'"),
    ({"fault": "packet-loss", "target": "client:home", "params": ["percent"]}, "--param: expected KEY=VALUE"),
    ({"fault": "packet-loss", "target": "client:home", "params": ["percent=lots"]}, "--param percent: 'lots'"),
    ({"fault": "packet-loss", "target": "client:home", "params": ["speed=1"]}, "--param: packet-loss takes percent"),
    ({"fault": "packet-loss", "target": "client:home", "duration": 99999}, "--duration: 99999.0 is outside"),
    ({"fault": "dns-slow", "target": "client"}, "--target: dns-slow needs a dns node"),
])
def test_a_bad_fault_gets_the_clis_sentence(chaos_client, body, message):
    client, chaos = chaos_client
    response = client.post("/api/chaos/inject", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"hoplab chaos: {message}"), response.json()
    assert chaos.active() == [] and chaos.reaped == []


# ------------------------------------------------------------ load

def _load_result(folder, breaches=()):
    from hoplab.load import LoadResult

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.html").write_text("<html>locust</html>")
    total = {"name": "Aggregated", "requests": 9, "failures": 0, "rps": 2.0, "p50_ms": 10.0, "p95_ms": 20.0,
             "p99_ms": 30.0}
    return LoadResult(folder, {"total": total, "endpoints": []}, list(breaches))


@pytest.fixture
def load_client(ctx, tmp_path):
    """The load routes on a runner whose Locust is a fake: it runs until `release` is set."""
    import threading

    from hoplab.ui.load import LoadRunner

    release, runs = threading.Event(), []
    samples = iter([{"t": 10**10 + i, "users": 2, "rps": 1.5 + i, "fails_per_s": 0.0, "p50_ms": 12.0, "p95_ms": 30.0,
                     "requests": 3 * i, "failures": 0} for i in range(1000)])

    def run(backend, topology, options, progress):
        runs.append(options)
        progress.say("locust on client")
        assert release.wait(10)
        return _load_result(tmp_path / "reports" / "run1")

    ctx.load = LoadRunner(ctx.backend, ctx.topology, run=run, sample=lambda node: next(samples), poll_s=0.02)
    ctx.load.release, ctx.load.runs = release, runs
    with TestClient(build_app(ctx, HOSTS), base_url=BASE) as c:
        yield c, ctx.load
    release.set()


def test_a_load_run_is_watched_live_then_gives_its_verdict_and_report(load_client):
    import time

    client, runner = load_client
    started = client.post("/api/load/start", json={"users": 2, "rate": 2, "time": 5})
    assert started.status_code == 200, started.text
    run = started.json()
    assert run["options"]["users"] == 2 and run["node"] == "client"
    options = runner.runs[0] if runner.runs else None
    deadline = time.monotonic() + 5
    while len(client.get("/api/load").json()["run"]["series"]) < 3:
        assert time.monotonic() < deadline, "no live samples"
        time.sleep(0.02)
    live = client.get("/api/load").json()["run"]
    assert live["state"] == "running" and live["live"]["rps"] >= 1.5 and live["said"][0].endswith("locust on client")
    again = client.post("/api/load/start", json={"users": 2, "rate": 2, "time": 5})
    assert again.status_code == 409 and again.json()["error"].startswith("hoplab load: a load run is already running")
    runner.release.set()
    assert runner.wait_done(5)
    done = client.get("/api/load").json()["run"]
    assert done["state"] == "done" and done["slo"] == {"met": True, "breaches": []}
    assert done["report"]["files"] == ["report.html"]
    options = runner.runs[0]
    assert (options.users, options.rate, options.seconds, options.shape) == (2, 2.0, 5, None)
    report = client.get(f"/api/load/runs/{done['id']}/report.html")
    assert report.status_code == 200 and "locust" in report.text
    assert report.headers["content-security-policy"] == "sandbox allow-scripts"  # its scripts cannot act as the page
    for bad in (f"/api/load/runs/{done['id']}/summary.json", f"/api/load/runs/{done['id']}/etc-passwd",
                "/api/load/runs/nope/report.html"):
        assert client.get(bad).status_code == 404, bad


@pytest.mark.parametrize("body, argv", [
    ({"users": 0}, ["--users", "0"]), ({"users": 6000}, ["--users", "6000"]), ({"rate": 0}, ["--rate", "0"]),
    ({"rate": 1001.5}, ["--rate", "1001.5"]), ({"time": 0}, ["--time", "0"]), ({"time": 99999}, ["--time", "99999"]),
    ({"workers": 17}, ["--workers", "17"]), ({"shape": "tsunami"}, ["--shape", "tsunami"]),
    ({"from": "db"}, ["--from", "db"]), ({"shape": "open"}, ["--shape", "open"]),
    ({"arrival_rate": 5}, ["--arrival-rate", "5"]), ({"shape": "open", "arrival_rate": 20000},
                                                     ["--shape", "open", "--arrival-rate", "20000"]),
    ({"trace_sample": 0}, ["--trace-sample", "0"]),
])
def test_a_bad_load_parameter_gets_the_clis_sentence(load_client, body, argv, capsys):
    client, runner = load_client
    response = client.post("/api/load/start", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == cli_error("load", *argv, capsys=capsys)
    assert runner.runs == [] and client.get("/api/load").json()["run"] is None


@pytest.mark.parametrize("body", [{"users": True}, {"users": 2.5}, {"rate": "5"}, {"slo": "/etc/passwd"}])
def test_a_malformed_load_is_refused(load_client, body):
    client, runner = load_client
    response = client.post("/api/load/start", json=body)
    assert response.status_code == 400 and response.json()["error"].startswith("hoplab load: ")
    assert runner.runs == []


def test_a_traced_run_serves_its_samples_and_their_traces_and_nothing_else(ctx, tmp_path):
    from hoplab.ui.load import LoadRunner

    trace_id, runs = "4bf92f3577b34da6a3ce929d0e0e4736", []

    def run(backend, topology, options, progress):
        runs.append(options)
        result = _load_result(tmp_path / "reports" / "run2")
        (result.report_dir / "samples.html").write_text(f"<a href='traces/{trace_id}.html'>trace</a>")
        (result.report_dir / "traces").mkdir()
        (result.report_dir / "traces" / f"{trace_id}.html").write_text("<html>the trace</html>")
        return result

    ctx.load = LoadRunner(ctx.backend, ctx.topology, run=run, sample=lambda node: None, poll_s=0.01)
    with TestClient(build_app(ctx, HOSTS), base_url=BASE) as client:
        started = client.post("/api/load/start", json={"users": 2, "rate": 2, "time": 5, "trace_sample": 4})
        assert started.status_code == 200 and started.json()["options"]["trace_sample"] == 4, started.text
        assert ctx.load.wait_done(5) and runs[0].trace_sample == 4
        done = client.get("/api/load").json()["run"]
        assert done["report"]["files"] == ["report.html", "samples.html"]
        base = f"/api/load/runs/{done['id']}"
        assert "traces/" in client.get(f"{base}/samples.html").text
        page = client.get(f"{base}/traces/{trace_id}.html")  # where samples.html's link leads
        assert page.status_code == 200 and "the trace" in page.text
        for bad in (f"{base}/traces/..%2Freport.html", f"{base}/traces/%2E%2E/%2E%2E/summary.json", f"{base}/traces/{trace_id}.txt", f"{base}/traces/x.html",
                    f"{base}/traces/{trace_id}.json"):
            assert client.get(bad).status_code == 404, bad


def test_a_failed_run_says_why(ctx):
    from hoplab.backends.base import BackendError
    from hoplab.load import LoadOptions
    from hoplab.ui.load import LoadRunner

    def run(*args):
        raise BackendError("the lab is not healthy (web2); load needs a healthy lab")

    runner = LoadRunner(ctx.backend, ctx.topology, run=run, sample=lambda node: None, poll_s=0.01)
    assert runner.start(LoadOptions(users=1, rate=1, seconds=1), "client") is not None
    assert runner.wait_done(5)
    run_view = runner.snapshot()["run"]
    assert run_view["state"] == "failed" and "not healthy" in run_view["error"]
    assert runner.start(LoadOptions(users=1, rate=1, seconds=1), "client") is not None  # the next may start


def test_the_history_script_reads_the_last_aggregated_row(tmp_path):
    import sys

    from hoplab.ui.load import HISTORY_SCRIPT, live_numbers

    header = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,"
              "100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
              "Total Min Response Time,Total Max Response Time,Total Average Content Size\n")
    rows = "".join(f"{100 + i},2,GET,GET /,1.0,0.0,5,5,5,5,5,5,5,5,5,5,5,{i},0,5,5.0,1,9,100\n"
                   f"{100 + i},2,,Aggregated,{i}.5,0.0,{i},6,7,8,9,{10 + i},11,12,13,14,15,{2 * i},1,5,5.0,1,9,100\n"
                   for i in range(400))
    history = tmp_path / "run_stats_history.csv"
    history.write_text(header + rows + "499,2,,Aggreg")  # a row still being written
    out = subprocess.run([sys.executable, "-c", HISTORY_SCRIPT, str(history)], capture_output=True, text=True)
    assert live_numbers(json.loads(out.stdout)) == {"t": 499, "users": 2, "rps": 399.5, "fails_per_s": 0.0,
                                                    "p50_ms": 399.0, "p95_ms": 409.0, "requests": 798, "failures": 1}
    missing = subprocess.run([sys.executable, "-c", HISTORY_SCRIPT, str(tmp_path / "none")], capture_output=True,
                             text=True)
    assert missing.returncode == 0 and missing.stdout == ""
    assert live_numbers({"Timestamp": "x"}) is None


# ------------------------------------------------------------ drills

@pytest.fixture
def drill_client(chaos_client, ctx, tmp_path, monkeypatch):
    from hoplab.drill import Drills
    from hoplab.ui.api import active_faults
    from hoplab.ui.drills import hidden

    client, chaos = chaos_client
    drills = Drills(ctx.backend, ctx.topology, state_root=tmp_path)
    monkeypatch.setattr(drills.chaos, "start_reaper", lambda: None)
    ctx.drills = drills
    ctx.watch.faults = lambda: hidden(active_faults(chaos), drills)
    return client, drills


def test_a_drill_started_hinted_and_given_up(drill_client, ctx):
    client, drills = drill_client
    listed = client.get("/api/drills").json()
    assert "https-refused" in [d["name"] for d in listed["drills"]] and listed["current"] is None
    started = client.post("/api/drills/start", json={"drill": "https-refused", "duration": 60})
    assert started.status_code == 200, started.text
    view = started.json()
    assert view["state"] == "active" and "connection refused" in view["symptom"] and "port-block" not in json.dumps(view)
    assert ctx.watch.snapshot["faults"] == []  # the drill's fault is hidden from the page
    assert drills.chaos.active()[0].fault == "port-block"
    assert client.post("/api/drills/hint", json={}).json()["hints"][0].startswith("Does the name resolve")
    assert len(client.post("/api/drills/hint", json={}).json()["hints"]) == 2
    assert client.get("/api/drills").json()["current"]["hints_left"] == 1
    checked = client.post("/api/drills/check", json={}).json()
    assert checked["state"] == "active" and checked["said"] == "still broken" and checked["outcomes"]
    given = client.post("/api/drills/give-up", json={}).json()
    assert given["state"] == "given-up" and "port-block" in given["fault"]
    assert any("iptables -D INPUT 1" in c and c.startswith("hoplab exec cache -- sh -c") for c in given["commands"])
    assert drills.chaos.active() == []


def test_a_drills_fault_is_hidden_before_the_drill_state_is_saved(drill_client, ctx, monkeypatch):
    client, drills = drill_client
    seen = []
    monkeypatch.setattr(drills, "save", lambda state: seen.append(ctx.watch.faults()))  # the watcher polls here
    assert client.post("/api/drills/start", json={"drill": "https-refused", "duration": 60}).status_code == 200
    assert seen == [[]] and drills.chaos.active()[0].owner == "drill"
    other = drills.chaos.inject("port-block", "web1", 60, {"port": "8000"})
    assert [f["id"] for f in ctx.watch.faults()] == [other.id]  # a fault of the user's stays listed


@pytest.mark.parametrize("path, body, argv", [
    ("start", {"drill": "nope"}, ["start", "nope"]),
    ("start", {"drill": "https-refused", "from": "db"}, ["start", "https-refused", "--from", "db"]),
    ("hint", {}, ["hint"]), ("check", {}, ["check"]), ("give-up", {}, ["give-up"]),
])
def test_a_bad_drill_request_gets_the_clis_sentence(drill_client, path, body, argv, capsys, monkeypatch, tmp_path):
    import hoplab.drill

    client, drills = drill_client
    monkeypatch.setattr(hoplab.drill.Drills.__init__, "__defaults__", (tmp_path,))  # the CLI's state: none either
    response = client.post(f"/api/drills/{path}", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == cli_error("drill", *argv, capsys=capsys)


# ------------------------------------------------------------ diagnose

def _report(topology, broken_hop: str, checker: str | None = None):
    from hoplab.diagnose import Outcome, Report, walk

    outcomes = []
    for check in walk(topology, "client"):
        ok = check.hop != broken_hop or (checker is not None and check.node != checker)
        outcomes.append(Outcome(check, ok, "" if ok else f"{broken_hop} is broken", "out", 0.1))
        if not ok:
            break
    return Report("client", outcomes)


def test_diagnose_names_the_broken_hop_and_the_links_to_mark(client, ctx):
    cache = next(n.name for n in ctx.topology.nodes_of("cache"))
    lb = ctx.topology.nodes_of("lb")[0].name
    seen = []

    def diagnose(backend, topology, node):
        seen.append(node)
        return _report(topology, "lb", checker=cache)

    ctx.diagnose = diagnose
    report = client.post("/api/diagnose", json={}).json()
    assert seen == ["client"] and report["broken_hop"] == "lb" and report["broken_node"] == lb
    shared = {i.network for i in ctx.topology.nodes[cache].interfaces} & {i.network for i in ctx.topology.nodes[lb].interfaces}
    assert shared and set(report["broken_links"]) == {f"{n}|{net}" for net in shared for n in (cache, lb)}
    assert "first broken hop: lb" in report["text"]
    ctx.diagnose = lambda backend, topology, node: _report(topology, "dns")
    assert client.post("/api/diagnose", json={"from": "client"}).json()["broken_node"] == ctx.topology.domain.server


def test_diagnose_from_a_non_client_gets_the_clis_sentence(client, ctx, capsys):
    ctx.diagnose = lambda *a: pytest.fail("diagnose ran")
    response = client.post("/api/diagnose", json={"from": "db"})
    assert response.status_code == 400
    assert response.json()["error"] == cli_error("diagnose", "--from", "db", capsys=capsys)


def test_one_diagnosis_at_a_time(client, ctx):
    ctx.diagnose = lambda *a: pytest.fail("diagnose ran")
    ctx.diagnosing.acquire()
    try:
        assert client.post("/api/diagnose", json={}).status_code == 409
    finally:
        ctx.diagnosing.release()


def test_every_hop_names_the_node_it_is():
    from hoplab.diagnose import walk

    topology = spec.load(TOPOLOGY_DIR / "lab.yaml")
    subjects = {c.hop: c.subject or c.node for c in walk(topology, "client")}
    assert subjects["dns"] == topology.domain.server and subjects["nat"] == "router"
    assert subjects["edge"] == subjects["cache"] == "cache" and subjects["lb"] == "lb"
    assert subjects["lease"] == topology.networks["home"].dhcp.server
    assert all(s in topology.nodes for s in subjects.values())


def test_a_hops_links_are_the_way_from_its_checker_to_it(topology):
    from hoplab.ui.diagnose import hop_links

    assert hop_links(topology, "client", "cache") == ["client|home", "router|home", "router|internet", "cache|internet"]
    assert hop_links(topology, "client", "client") == [] and hop_links(topology, "client", "nope") == []


def test_a_finished_runs_chart_holds_every_second_of_its_history(tmp_path):
    from hoplab.ui.load import whole_history

    header = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,"
              "100%,Total Request Count,Total Failure Count\n")
    rows = "".join(f"{100 + i},2,GET,GET /,1.0,0.0,5,5,5,5,5,5,5,5,5,5,5,{i},0\n"
                   f"{100 + i},2,,Aggregated,{i}.5,0.0,{i},6,7,8,9,{10 + i},11,12,13,14,15,{2 * i},0\n"
                   for i in range(5))
    history = tmp_path / "run_stats_history.csv"
    history.write_text(header + rows)
    sampled = [{"t": 102, "rps": 2.5}]  # the live watcher caught one second of five
    assert [row["t"] for row in whole_history(history, sampled)] == [100, 101, 102, 103, 104]
    assert whole_history(tmp_path / "none.csv", sampled) == sampled
