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
