"""`hoplab load --trace-sample N`: Locust's requests carry a sampled traceparent one in N
(loadtests/sampling.py, on Locust's real HTTP client against a server on loopback); one
request's trace is cut from connections many requests share; its time is split by tier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hoplab import cli
from hoplab.backends.base import BackendError
from hoplab.load_traces import Sample, parse_samples, report, text_lines
from hoplab.trace.assemble import assemble_request, exchange
from hoplab.trace.breakdown import CLIENT_SIDE, QUEUEING, breakdown
from hoplab.v1 import control_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
TRACE, OTHER = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"

CLIENT = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from locust.clients import HttpSession
from locust.event import Events
import sampling

seen = []

class Answers(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.headers.get("traceparent"))
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
threading.Thread(target=server.serve_forever, daemon=True).start()
sampling.install()
client = HttpSession(f"http://127.0.0.1:{server.server_address[1]}", Events().request, user=None)
for n in range(7):
    client.get("/missing" if n == 3 else f"/{n}", name=f"page {n}", headers={"x-mine": "kept"})
server.shutdown()
print(json.dumps(seen))
"""


def sampled_run(tmp_path, every: str) -> tuple[list, list]:
    samples = tmp_path / "samples.jsonl"
    result = subprocess.run([sys.executable, "-c", CLIENT], capture_output=True, text=True, timeout=60,
                            cwd=ROOT / "loadtests",
                            env={"HOPLAB_TRACE_SAMPLE": every, "HOPLAB_SAMPLES": str(samples), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in samples.read_text().splitlines()] if samples.exists() else []
    return json.loads(result.stdout), lines


def test_one_request_in_n_carries_a_sampled_traceparent_and_is_written_down(tmp_path):
    headers, lines = sampled_run(tmp_path, "3")
    assert [h is not None for h in headers] == [True, False, False, True, False, False, True]
    assert [line["trace_id"] for line in lines] == [h.split("-")[1] for h in headers if h]
    assert all(h.endswith("-01") for h in headers if h)  # sampled (W3C flags)
    assert [(line["name"], line["status"], line["method"]) for line in lines] == [
        ("page 0", 200, "GET"), ("page 3", 404, "GET"), ("page 6", 200, "GET")]
    assert all(0 < line["start_ns"] < line["end_ns"] for line in lines)
    assert lines[0]["url"].endswith("/0")


def test_without_a_sample_rate_nothing_is_sampled(tmp_path):
    headers, lines = sampled_run(tmp_path, "")
    assert headers == [None] * 7 and lines == []


def test_a_sample_line_that_is_not_one_is_an_error():
    good = json.dumps({"trace_id": TRACE, "method": "GET", "name": "/", "url": "https://www.example.test/",
                       "status": 200, "start_ns": 1, "end_ns": 2})
    assert parse_samples(good + "\n\n", "client")[0].ms == 1e-6
    with pytest.raises(BackendError, match=r"client:samples.jsonl line 2: not a sample"):
        parse_samples(good + "\n{\"trace_id\": 1}\n", "client")


@pytest.mark.parametrize("args, said", [
    (["--trace-sample", "0"], "--trace-sample: 0 is outside 1..1000000"),
    (["--trace-sample", "10", "--run-time", "9m"], "--trace-sample: a traced run lasts at most"),
])
def test_bad_sample_rates_exit_2(capsys, monkeypatch, args, said):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/hoplab-unit-tests.sock")
    assert cli.main(["load", "--backend", "docker", "--topology", str(ROOT / "topology" / "lab.yaml"), *args]) == 2
    assert said in capsys.readouterr().err


# ------------------------------------------------------------ one request of many

EDGE, LB, WEB = "172.31.50.80:5000", "172.31.50.10:80", "172.31.50.11:8080"


def rec(node, direction, ts, src, dst, seq, payload="", flags="PSH,ACK", **keys):
    return pb.Record(node=node, iface="origin", direction=direction, ts_ns=ts, src=src, dst=dst, proto="tcp",
                     tcp_flags=flags, tcp_seq=seq, payload_hash=payload, keys=keys)


def keep_alive(node: str, direction_out: bool) -> list[pb.Record]:
    """The edge's one upstream connection to the balancer, carrying three requests in turn;
    the second is the traced one, its body in a second segment."""
    ask, answer = ("out", "in") if direction_out else ("in", "out")
    tp = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    return [
        rec(node, ask, 100, EDGE, LB, 1, "a1", traceparent=f"00-{OTHER}-00f067aa0ba902b7-01"),
        rec(node, answer, 110, LB, EDGE, 9, "a2"),
        rec(node, ask, 111, EDGE, LB, 2, "", "ACK"),
        rec(node, ask, 200, EDGE, LB, 3, "b1", **tp),
        rec(node, ask, 201, EDGE, LB, 4, "b-body"),  # the POST's body: no header, still the request
        rec(node, answer, 230, LB, EDGE, 10, "b2"),
        rec(node, answer, 231, LB, EDGE, 11, "b3"),
        rec(node, ask, 232, EDGE, LB, 5, "", "ACK"),
        rec(node, ask, 300, EDGE, LB, 6, "c1", traceparent=f"00-{OTHER}-00f067aa0ba902b8-01"),
        rec(node, answer, 310, LB, EDGE, 12, "c2"),
    ]


def test_an_exchange_is_the_traced_request_and_its_answer_on_a_shared_connection():
    cut = exchange(keep_alive("lb", False), TRACE)
    assert [r.payload_hash or r.tcp_flags for r in cut] == ["b1", "b-body", "b2", "b3", "ACK"]


def test_a_samples_trace_is_its_slice_of_each_connection_and_the_same_packets_elsewhere():
    client, wan, edge_tls = "192.168.50.190:40000", "198.51.100.1:40000", "198.51.100.80:443"
    tls = [  # one user's keep-alive TLS connection: an earlier request, then the traced one
        ("client", "home", "out", 50, client, edge_tls, 70, "t0"),
        ("cache", "internet", "in", 52, wan, edge_tls, 70, "t0"),
        ("client", "home", "out", 190, client, edge_tls, 71, "t1"),
        ("router", "home", "in", 191, client, edge_tls, 71, "t1"),
        ("router", "internet", "out", 192, wan, edge_tls, 71, "t1"),
        ("cache", "internet", "in", 193, wan, edge_tls, 71, "t1"),
        ("cache", "internet", "out", 240, edge_tls, wan, 80, "t2"),
        ("router", "internet", "in", 241, edge_tls, wan, 80, "t2"),
        ("router", "home", "out", 242, edge_tls, client, 80, "t2"),
        ("client", "home", "in", 243, edge_tls, client, 80, "t2"),
    ]
    records = [pb.Record(node=n, iface=i, direction=d, ts_ns=ts, src=s, dst=t, proto="tcp", tcp_flags="PSH,ACK",
                         tcp_seq=seq, payload_hash=h, summary="TLS application data")
               for n, i, d, ts, s, t, seq, h in tls]
    records += keep_alive("cache", True) + keep_alive("lb", False)
    logs = {"cache": [pb.LogLine(src=wan, dst=edge_tls, traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")]}
    trace = assemble_request(TRACE, "", "c1", records, (180, 250), {"client"}, logs=logs)
    seen = [(h.record.node, h.record.payload_hash) for h in trace.hops if h.record.payload_hash]
    assert ("client", "t0") not in seen and ("cache", "t0") not in seen  # the user's earlier request
    assert [p for n, p in seen if n in ("client", "router")] == ["t1", "t1", "t1", "t2", "t2", "t2"]
    assert sorted(p for n, p in seen if n == "lb") == ["b-body", "b1", "b2", "b3"]
    assert not {"a1", "c1", "a2", "c2"} & {p for _, p in seen}  # the other requests on the shared connection
    assert [s.name for s in trace.stages] == ["request", "server work", "response"]  # no SYN: a reused connection


def test_a_samples_slice_does_not_depend_on_the_order_records_came_in():
    """The collector gets a node's arrivals in its own agent's batches and its departures made
    out of its peers' arrivals, in theirs: a connection's records come out of time order."""
    records = keep_alive("lb", False)
    departures_first = [r for r in records if r.direction == "out"] + [r for r in records if r.direction == "in"]
    hops = assemble_request(TRACE, "", "c1", departures_first, (150, 260), {"client"}).hops
    assert [h.record.payload_hash or h.record.tcp_flags for h in hops] == ["b1", "b-body", "b2", "b3", "ACK"]


def hop(node, direction, ms, src, dst, payload="x"):
    return pb.Hop(record=pb.Record(node=node, direction=direction, ts_ns=ms * 10**6, src=src, dst=dst, proto="tcp",
                                   tcp_flags="PSH,ACK", payload_hash=f"{payload}{ms}"))


def test_a_requests_time_splits_by_tier_and_adds_up_to_the_clients():
    wan, edge, lb_out, web, db_in = "198.51.100.1:1", "198.51.100.80:443", "172.31.50.10:2", "172.31.50.11:8080", \
        "172.31.50.20:5432"
    web_out = "172.31.50.11:3"
    hops = [hop("cache", "in", 10, wan, edge), hop("cache", "out", 15, "172.31.50.80:4", "172.31.50.10:80"),
            hop("lb", "in", 20, "172.31.50.80:4", "172.31.50.10:80"), hop("lb", "out", 25, lb_out, web),
            hop("web1", "in", 30, lb_out, web), hop("web1", "out", 35, web_out, db_in),
            hop("db", "in", 40, web_out, db_in), hop("db", "out", 50, db_in, web_out),
            hop("db", "in", 60, web_out, db_in), hop("db", "out", 70, db_in, web_out),
            hop("web1", "out", 80, web, lb_out), hop("lb", "out", 90, "172.31.50.10:80", "172.31.50.80:4"),
            hop("cache", "out", 100, edge, wan)]
    tiers = {"cache": "edge", "lb": "balancer", "web1": "replica", "db": "database"}
    split = breakdown(pb.Trace(hops=hops), tiers, 0, 120 * 10**6)
    assert {t["tier"]: t["ms"] for t in split["tiers"]} == pytest.approx(
        {CLIENT_SIDE: 30, "edge": 20, QUEUEING: 5, "balancer": 15, "replica": 30, "database": 20})
    assert sum(t["ms"] for t in split["tiers"]) == pytest.approx(split["total_ms"])
    assert [n["node"] for n in split["nodes"]] == ["cache", "lb", "web1", "db"]


def test_the_report_lists_the_slowest_with_their_split_and_trace(tmp_path):
    slow = Sample(TRACE, "GET", "GET /order", "https://www.example.test/order", 200, 0, 120_000_000, "client",
                  breakdown={"total_ms": 120.0, "tiers": [{"tier": "replica", "ms": 100.0, "share": 0.83},
                                                          {"tier": "edge", "ms": 20.0, "share": 0.17}]},
                  trace=f"traces/{TRACE}.html")
    fast = Sample(OTHER, "GET", "GET /", "https://www.example.test/", 200, 5, 2_000_000, "client")
    section = report([fast, slow], 10, [slow], tmp_path)
    assert section["sampled"] == 2 and section["traced"] == 1 and section["incomplete"] == 0
    assert json.loads((tmp_path / "samples.json").read_text())["samples"][1]["trace_id"] == OTHER  # in time order
    page = (tmp_path / "samples.html").read_text()
    assert f"href='traces/{TRACE}.html'" in page and "replica 100.0" in page
    assert "replica 100.0, edge 20.0" in "\n".join(text_lines(section))
